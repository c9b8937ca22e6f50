// llmasos: the shell of LLMasOS.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "drivers/cpu/ops.h"
#include "shell/commands.h"

namespace {

std::string CommandList(const CLI::App& app) {
  std::string out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    out += (out.empty() ? "" : ", ") + sub->get_name();
  }
  return out;
}

// CLI11's messages name neither the command nor what was unknown in words a user expects;
// these do.
int ReportParseError(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  const std::string commands = CommandList(app);
  if (argc < 2) {
    std::fprintf(stderr, "llmasos: a command is required: one of %s (llmasos --help lists them)\n", commands.c_str());
    return 2;
  }
  const std::string first = argv[1];
  if (!first.starts_with("-") && app.get_subcommands([&](const CLI::App* s) { return s->get_name() == first; }).empty()) {
    std::fprintf(stderr, "llmasos: unknown command '%s' (commands: %s)\n", first.c_str(), commands.c_str());
    return 2;
  }
  if (const auto* extras = dynamic_cast<const CLI::ExtrasError*>(&e); extras != nullptr) {
    const std::string where = first.starts_with("-") ? "llmasos" : "llmasos " + first;
    std::string what = e.what();
    for (const char* prefix : {"The following arguments were not expected: ", "The following argument was not expected: "}) {
      if (what.starts_with(prefix)) what = what.substr(std::string_view(prefix).size());
    }
    std::fprintf(stderr, "%s: unknown option or argument: %s (see %s --help)\n", where.c_str(), what.c_str(),
                 where.c_str());
    return 2;
  }
  return app.exit(e);
}

}  // namespace

int main(int argc, char** argv) {
  if (const llmasos::Status simd = llmasos::cpu::SelectSimdTargetFromEnv(); !simd.ok()) {
    std::fprintf(stderr, "llmasos: %s\n", simd.message().c_str());
    return 2;
  }
  CLI::App app{"LLMasOS: runs language models the way an operating system runs programs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "llmasos 0.1.0");
  int exit_code = 0;
  llmasos::shell::AddRunCommand(app, &exit_code);
  llmasos::shell::AddChatCommand(app, &exit_code);
  llmasos::shell::AddServeCommand(app, &exit_code);
  llmasos::shell::AddEmbedCommand(app, &exit_code);
  llmasos::shell::AddBenchCommand(app, &exit_code);
  llmasos::shell::AddPerplexityCommand(app, &exit_code);
  llmasos::shell::AddInspectCommand(app, &exit_code);
  llmasos::shell::AddEvalCommand(app, &exit_code);
  llmasos::shell::AddQuantizeCommand(app, &exit_code);
  llmasos::shell::AddBatchedBenchCommand(app, &exit_code);
  llmasos::shell::AddBatchCommand(app, &exit_code);
  llmasos::shell::AddKernelBenchCommand(app, &exit_code);
  llmasos::shell::AddFinetuneCommand(app, &exit_code);
  llmasos::shell::AddMergeCommand(app, &exit_code);
  llmasos::shell::AddOsCommands(app, &exit_code);
  llmasos::shell::AddTopCommand(app, &exit_code);
  llmasos::shell::AddRegistryCommands(app, &exit_code);
  llmasos::shell::AddKeysCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return ReportParseError(app, e, argc, argv);
  }
  return exit_code;
}
