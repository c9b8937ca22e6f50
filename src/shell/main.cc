// llmasos: the shell of LLMasOS.
#include <CLI/CLI.hpp>

#include "shell/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"LLMasOS: runs language models the way an operating system runs programs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "llmasos 0.1.0");
  int exit_code = 0;
  llmasos::shell::AddRunCommand(app, &exit_code);
  llmasos::shell::AddChatCommand(app, &exit_code);
  llmasos::shell::AddBenchCommand(app, &exit_code);
  llmasos::shell::AddPerplexityCommand(app, &exit_code);
  llmasos::shell::AddInspectCommand(app, &exit_code);
  llmasos::shell::AddEvalCommand(app, &exit_code);
  llmasos::shell::AddQuantizeCommand(app, &exit_code);
  llmasos::shell::AddBatchedBenchCommand(app, &exit_code);
  llmasos::shell::AddBatchCommand(app, &exit_code);
  llmasos::shell::AddKernelBenchCommand(app, &exit_code);
  llmasos::shell::AddRegistryCommands(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
