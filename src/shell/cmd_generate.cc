// llmasos run and llmasos chat.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include "shell/commands.h"
#include "model/chat/conversation.h"
#include "util/mapped_file.h"

namespace llmasos::shell {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) { g_interrupted = 1; }

struct GenerateFlags {
  LoadOptions load;
  GenerateOptions gen;
  std::string prompt;
  std::string system;
  std::string chat_template;
  bool raw = false;
  bool verbose = false;
};

void AddGenerateFlags(CLI::App& cmd, GenerateFlags* f) {
  AddLoadFlags(cmd, &f->load);
  AddSamplingFlags(cmd, &f->gen);
  cmd.add_option("--system", f->system, "system message (default: the template's own, if any)");
  cmd.add_option("--chat-template", f->chat_template,
                 "use this template instead of the model's: chatml, llama3, llama2, zephyr, gemma");
  cmd.add_flag("-v,--verbose", f->verbose, "print timings to stderr");
}

void PrintStats(const GenerateResult& r) {
  std::fprintf(stderr,
               "\n[prompt: %zu tokens (%zu cached) in %.2f s, %.1f t/s | generated: %zu tokens "
               "in %.2f s, %.1f t/s | finish: %s]\n",
               r.prompt_tokens, r.reused_tokens, r.prompt_seconds,
               r.prompt_seconds > 0 ? (r.prompt_tokens - r.reused_tokens) / r.prompt_seconds : 0.0,
               r.tokens.size(), r.generate_seconds,
               r.generate_seconds > 0 ? r.tokens.size() / r.generate_seconds : 0.0,
               r.finish_reason.c_str());
}

// Generates, streaming text to stdout; Ctrl-C stops the generation, not the program.
StatusOr<GenerateResult> StreamToStdout(Session& session, const std::vector<TokenId>& prompt,
                                        const GenerateOptions& options) {
  g_interrupted = 0;
  auto previous = std::signal(SIGINT, OnInterrupt);
  auto result = Generate(session, prompt, options, [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return g_interrupted == 0;
  });
  std::signal(SIGINT, previous);
  return result;
}

int RunMain(GenerateFlags& f) {
  if (f.prompt.empty() && !isatty(STDIN_FILENO)) {
    f.prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  if (f.prompt.empty()) return ReportError(InvalidArgumentError("no prompt: pass -p PROMPT or pipe text on stdin"));
  f.load.with_context = false;  // generation runs on the session's one-process engine
  std::unique_ptr<Session> session = LoadSessionOrReport(f.load);
  if (!session) return 1;
  std::vector<TokenId> prompt;
  GenerateOptions gen = f.gen;
  if (f.raw) {
    prompt = session->tokenizer().Encode(f.prompt, /*add_special=*/true, /*parse_special=*/false);
  } else {
    auto tmpl = chat::ChatTemplateFor(session->tokenizer(), f.chat_template);
    if (!tmpl.ok()) {
      return ReportError(tmpl.status().Annotate(session->model_label() + " (use --raw for a plain completion)"));
    }
    std::vector<chat::Message> messages;
    if (!f.system.empty()) messages.push_back({"system", f.system});
    messages.push_back({"user", f.prompt});
    auto ids = chat::EncodeConversation(session->tokenizer(), *tmpl, messages, true);
    if (!ids.ok()) return ReportError(ids.status().Annotate(session->model_label()));
    prompt = std::move(ids).value();
    for (std::string& s : tmpl->EndOfTurnStrings()) gen.stop.push_back(std::move(s));
  }
  auto result = StreamToStdout(*session, prompt, gen);
  if (!result.ok()) return ReportError(result.status());
  std::fputc('\n', stdout);
  std::fflush(stdout);  // the answer is whole now, though the exit may wait (WaitForPackedBlob)
  if (f.verbose) PrintStats(*result);
  return 0;
}

const char kChatHelp[] =
    "Commands: /clear (forget the conversation), /system TEXT (set the system message),\n"
    "          /exit or /bye (leave). Ctrl-C stops a reply; Ctrl-D leaves.\n";

int ChatMain(GenerateFlags& f) {
  f.load.with_context = false;  // generation runs on the session's one-process engine
  std::unique_ptr<Session> session = LoadSessionOrReport(f.load);
  if (!session) return 1;
  auto tmpl = chat::ChatTemplateFor(session->tokenizer(), f.chat_template);
  if (!tmpl.ok()) return ReportError(tmpl.status().Annotate(session->model_label()));
  GenerateOptions gen = f.gen;
  for (std::string& s : tmpl->EndOfTurnStrings()) gen.stop.push_back(std::move(s));
  const bool interactive = isatty(STDIN_FILENO);
  std::vector<chat::Message> history;
  auto reset = [&] {
    history.clear();
    if (!f.system.empty()) history.push_back({"system", f.system});
  };
  reset();
  if (interactive) {
    std::fprintf(stderr, "llmasos chat: %s (%s template). /help for commands.\n",
                 session->model_label().c_str(), std::string(tmpl->name()).c_str());
  }
  std::string line;
  for (;;) {
    if (interactive) {
      std::fputs(">>> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/exit" || line == "/bye") break;
    if (line == "/help") {
      std::fputs(kChatHelp, stdout);
      continue;
    }
    if (line == "/clear") {
      reset();
      std::fputs("(conversation cleared)\n", stdout);
      continue;
    }
    if (line.rfind("/system ", 0) == 0) {
      f.system = line.substr(8);
      reset();
      std::fputs("(system message set; conversation cleared)\n", stdout);
      continue;
    }
    history.push_back({"user", line});
    auto ids = chat::EncodeConversation(session->tokenizer(), *tmpl, history, true);
    if (!ids.ok()) {
      history.pop_back();
      ReportError(ids.status());
      continue;
    }
    auto result = StreamToStdout(*session, *ids, gen);
    std::fputc('\n', stdout);
    if (!result.ok()) {
      history.pop_back();
      ReportError(result.status().Annotate("the conversation no longer fits; /clear starts afresh"));
      continue;
    }
    if (f.verbose) PrintStats(*result);
    history.push_back({"assistant", result->text});
  }
  return 0;
}

}  // namespace

void AddRunCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("run", "generate an answer to one prompt, streamed");
  AddGenerateFlags(*cmd, flags.get());
  cmd->add_option("-p,--prompt", flags->prompt, "the prompt (default: read stdin)");
  cmd->add_flag("--raw", flags->raw, "complete the prompt as plain text, without the chat template");
  cmd->callback([flags, exit_code] { *exit_code = RunMain(*flags); });
}

void AddChatCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("chat", "interactive chat with history and the model's template");
  AddGenerateFlags(*cmd, flags.get());
  cmd->callback([flags, exit_code] { *exit_code = ChatMain(*flags); });
}

}  // namespace llmasos::shell
