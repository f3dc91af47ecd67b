// SIGINT and SIGTERM, kept off the threads that compute. A signal handler runs on the stack of the
// thread the kernel picks, below that thread's stack pointer; oneDNN's JIT GEMM kernels run with the
// stack pointer inside a heap buffer, so a handler frame (AVX-512 and AMX register state, ~20 KB)
// landing there overwrote the heap: 1 SIGTERM in ~40 during `train`'s first steps aborted with
// "corrupted size vs. prev_size" (issue #15; upstream oneDNN issue #4845, fixed in oneDNN 3.11 by PR
// #4855; Debian's LibTorch 1.13 links an older libdnnl). start() blocks both signals before any other thread
// exists (every later thread inherits the mask) and one thread, "bs-signals", takes them with
// sigwait: no signal is ever delivered asynchronously to a thread that runs a kernel.
#pragma once

namespace bs::stop_signals {

// First thing in main. Without it (a test, the Python module) nothing changes: Scope records
// nothing and the signals keep whatever disposition the host process gave them.
void start();

// While a Scope lives, SIGINT / SIGTERM are recorded for its owner to act on (a step boundary, a
// launcher forwarding them) instead of ending the process. With second_ends_process, a signal
// arriving after one was recorded ends the process at once, as if nothing had caught it.
class Scope {
 public:
  explicit Scope(bool second_ends_process);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  int pending() const;  // the signal recorded and not yet taken, or 0
  int take();           // the same, and forget it
};

// For a forked child about to exec: the signal mask the process started with.
void restore_mask();

}  // namespace bs::stop_signals
