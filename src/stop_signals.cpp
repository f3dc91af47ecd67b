// The signal-waiting thread behind stop_signals.h. Outside a Scope a signal ends the process exactly
// as the default action would (the waiting thread restores SIG_DFL, unblocks it and raises it).
#include "stop_signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace bs::stop_signals {

namespace {

enum Mode : int { kDefault = 0, kRecord = 1, kRecordOnce = 2 };
std::atomic<int> g_mode{kDefault};
std::atomic<int> g_pending{0};
std::atomic<bool> g_recorded_one{false};
std::atomic<bool> g_started{false};
sigset_t g_original_mask;

sigset_t stop_set() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

[[noreturn]] void end_by(int sig) {
  signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  raise(sig);        // delivered to this thread at once: the default action ends the process
  _exit(128 + sig);  // not reached
}

void wait_loop() {
  pthread_setname_np(pthread_self(), "bs-signals");
  const sigset_t set = stop_set();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    const int mode = g_mode.load();
    if (mode == kRecord || (mode == kRecordOnce && !g_recorded_one.exchange(true))) {
      g_pending.store(sig);
      continue;
    }
    end_by(sig);
  }
}

}  // namespace

void start() {
  if (g_started.exchange(true)) return;
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, &g_original_mask);
  std::thread(wait_loop).detach();
}

Scope::Scope(bool second_ends_process) {
  g_pending.store(0);
  g_recorded_one.store(false);
  g_mode.store(second_ends_process ? kRecordOnce : kRecord);
}
Scope::~Scope() { g_mode.store(kDefault); }
int Scope::pending() const { return g_pending.load(); }
int Scope::take() { return g_pending.exchange(0); }

void restore_mask() {
  if (g_started.load()) pthread_sigmask(SIG_SETMASK, &g_original_mask, nullptr);
}

}  // namespace bs::stop_signals
