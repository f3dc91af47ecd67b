// blocksharp: Hessian and sharpness diagnostics that become optimizer configs. The only place that
// catches errors: one line on stderr, non-zero exit.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"
#include "errors.h"
#include "session.h"

int main(int argc, char** argv) {
  CLI::App app{"blocksharp " BLOCKSHARP_VERSION ": Hessian and sharpness diagnostics of neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", BLOCKSHARP_VERSION);
  bs::register_profile(app);
  bs::register_structure(app);
  bs::register_train(app);
  bs::register_config(app);
  bs::register_bench(app);
  for (int i = 0; i < argc; ++i) bs::command_line() += (i ? " " : "") + std::string(argv[i]);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const bs::UserError& e) {
    std::fprintf(stderr, "blocksharp: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blocksharp: error: %s\n", bs::torch_error_line(e).c_str());
    return 1;
  }
  return 0;
}
