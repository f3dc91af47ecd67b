// blocksharp: Hessian and sharpness diagnostics that become optimizer configs. The only place that
// catches errors: one line on stderr, non-zero exit.
#include <CLI/CLI.hpp>
#include <malloc.h>
#include <cstdio>
#include <cstdlib>

#include "commands.h"
#include "provenance.h"
#include "distributed.h"
#include "errors.h"
#include "gemm.h"
#include "huge_pages.h"
#include "large_blocks.h"
#include "out_dir.h"
#include "session.h"
#include "stop_signals.h"

int main(int argc, char** argv) {
  bs::stop_signals::start();  // before any thread exists: SIGINT / SIGTERM go to one waiting thread
  // LibTorch's CPU tensors come from malloc, and glibc gives blocks above its mmap threshold back to
  // the kernel when they are freed, so each large temporary page-faults anew: measured, ~8 % of a
  // Hessian-vector product and its run-to-run spread. Keep blocks up to 32 MB in the heap and trim
  // it only past 1 GB free (the resident size stays near the peak; work sizes repeat anyway).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"blocksharp " BLOCKSHARP_VERSION ": Hessian and sharpness diagnostics of neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", BLOCKSHARP_VERSION);
  app.footer(
      "Environment: BLOCKSHARP_GEMM=onednn|libtorch (who runs float32 matrix products), BLOCKSHARP_HUGE_PAGES=1|0\n"
      "(profile, structure, train and bench keep tensors on transparent huge pages where the kernel's mode is\n"
      "madvise: they start themselves with GLIBC_TUNABLES=glibc.malloc.hugetlb=1; 0: not),\n"
      "BLOCKSHARP_LARGE_BLOCKS=1|0 (freed tensors of 32 MB and more are kept for the next of their size; 0: not),\n"
      "BLOCKSHARP_MEMORY_BUDGET=bytes (the memory runs plan for; default: what the machine has free),\n"
      "BLOCKSHARP_MEMORY_RESERVE=bytes (profile, structure and train stop with an error when the machine has\n"
      "less free; default 2 % of its memory, at least 256 MiB).");
  bs::register_profile(app);
  bs::register_structure(app);
  bs::register_train(app);
  bs::register_config(app);
  bs::register_bench(app);
  bs::register_launch(app);
  std::string command_line;  // the provenance of every output this run writes
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);
  bs::set_invocation(command_line);
  bs::set_parameter_names(bs::flag_of);
  std::string error;
  try {
    bs::gemm::backend();       // a bad BLOCKSHARP_GEMM stops here, before any work
    bs::huge_pages::wanted();  // a bad BLOCKSHARP_HUGE_PAGES likewise (huge_pages_exec.cpp left it alone)
    // Blocks above the mmap threshold (glibc maps them anew whatever it is) are kept for reuse by size
    // (large_blocks.h), unless BLOCKSHARP_LARGE_BLOCKS=0; installed before any command allocates.
    if (bs::large_block_cache_wanted()) bs::install_large_block_cache();
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version (CLI11's CallFor* derive from it)
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // one line, like every other error
    std::fprintf(stderr, "blocksharp: error: %s (see --help)\n", e.what());
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  } catch (const bs::ExitCode& e) {
    return e.code;
  } catch (const bs::UserError& e) {
    error = bs::spelled(e.message);
  } catch (const std::bad_alloc&) {
    error = "out of memory (try a smaller --batch-size or --seq-len, or a smaller model)";
  } catch (const std::exception& e) {
    error = bs::torch_error_line(e);
  }
  if (error.empty()) {
    if (bs::dist::world_size() > 1) {
      std::fflush(nullptr);
      std::_Exit(0);  // the process group's worker threads are never joined (see distributed.cpp)
    }
    return 0;
  }
  if (bs::dist::world_size() > 1) {
    std::fprintf(stderr, "blocksharp: error: [rank %d of %d] %s\n", bs::dist::rank(), bs::dist::world_size(),
                 error.c_str());
    std::fflush(nullptr);
    std::_Exit(1);  // no static destructors: a process group that lost a peer must not hang the exit
  }
  std::fprintf(stderr, "blocksharp: error: %s\n", error.c_str());
  bs::remove_unused_out_dirs();  // a refused run leaves no empty --out
  // Outputs are already cleaned up by the unwinding; skip the libraries' exit handlers, which may
  // touch a file handle HDF5 could not close (a full disk) and crash after the one-line message.
  std::fflush(nullptr);
  std::_Exit(1);
}
