// llmasos embed: the embedding of a text (or of token ids), through the kernel's engine.
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct EmbedFlags {
  LoadOptions load;
  std::string prompt;
  std::string tokens;
  std::string out;
};

int EmbedMain(EmbedFlags& f) {
  if (f.prompt.empty() == f.tokens.empty()) {
    return ReportError(InvalidArgumentError("give exactly one of -p TEXT and --tokens IDS"));
  }
  f.load.with_context = false;  // the engine has its own paged KV memory
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  std::vector<TokenId> ids;
  if (!f.tokens.empty()) {
    auto list = ParseIntList(f.tokens, "--tokens", 0, INT32_MAX);
    if (!list.ok()) return ReportError(list.status());
    ids.assign(list->begin(), list->end());
  } else {
    ids = s->tokenizer().Encode(f.prompt, /*add_special=*/true, /*parse_special=*/false);
  }
  auto result = Embed(*s, ids);
  if (!result.ok()) return ReportError(result.status());
  if (!f.out.empty()) {
    std::ofstream out(f.out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(result->embedding.data()),
              static_cast<std::streamsize>(result->embedding.size() * sizeof(float)));
    if (!out) return ReportError(IoError("cannot write '" + f.out + "'"));
  }
  nlohmann::json j = {{"num_tokens", ids.size()},
                      {"pooling", arch::PoolingName(result->pooling)},
                      {"dimensions", result->embedding.size()}};
  if (f.out.empty()) j["embedding"] = result->embedding;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

void AddEmbedCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<EmbedFlags>();
  CLI::App* cmd = app.add_subcommand("embed", "the embedding vector of a text (pooled as the model says, L2-normalised)");
  AddLoadFlags(*cmd, &flags->load);
  cmd->add_option("-p,--prompt", flags->prompt, "the text to embed");
  cmd->add_option("--tokens", flags->tokens, "comma-separated token ids to embed instead of a text");
  cmd->add_option("--out", flags->out, "write the vector here as float32 (stdout gets the rest as JSON)");
  cmd->callback([flags, exit_code] { *exit_code = EmbedMain(*flags); });
}

}  // namespace llmasos::shell
