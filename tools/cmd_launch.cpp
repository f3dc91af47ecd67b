// `blocksharp launch -n N -- SUBCOMMAND ...`: torchrun's job for users without it. Starts N local ranks
// of this executable with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; when one rank
// fails the others are stopped (SIGTERM, then SIGKILL after a grace period) and its exit code returned.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "errors.h"
#include "stop_signals.h"

namespace bs {

namespace {

// A port the kernel reports free on addr (bind to port 0), for a default that parallel jobs don't share.
int free_port(const std::string& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  if (inet_pton(AF_INET, addr == "localhost" ? "127.0.0.1" : addr.c_str(), &a.sin_addr) != 1)
    a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  int port = 29500;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

struct LaunchOptions {
  int n = 2;
  std::string addr;
  int port = 0;
  double grace_s = 10;
  std::vector<std::string> command;
};

int launch(const LaunchOptions& o) {
  if (o.n < 1) throw UserError("launch -n must be at least 1");
  if (o.command.empty())
    throw UserError("launch: give the subcommand after --, e.g. launch -n 2 -- profile --model gpt2-tiny");
  // The commands that shard their batches over ranks; N copies of another (a benchmark timing itself
  // against N - 1 others, N identical config reports) would only mislead.
  const std::string& sub = o.command.front();
  if (sub != "profile" && sub != "structure" && sub != "train")
    throw UserError("launch: '" + sub + "' runs in one process (launch starts ranks of profile, structure or train)");
  const char* env_addr = std::getenv("MASTER_ADDR");
  const char* env_port = std::getenv("MASTER_PORT");
  const std::string addr = !o.addr.empty() ? o.addr : env_addr ? env_addr : "127.0.0.1";
  const int port = o.port > 0 ? o.port : env_port ? std::atoi(env_port) : free_port(addr);
  if (port <= 0 || port > 65535) throw UserError("launch: --master-port / MASTER_PORT must be a port number");
  std::vector<std::string> args{"/proc/self/exe"};
  args.insert(args.end(), o.command.begin(), o.command.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  for (int r = 0; r < o.n; ++r) {
    const pid_t pid = fork();
    if (pid < 0) throw UserError("launch: fork failed for rank " + std::to_string(r));
    if (pid == 0) {
      stop_signals::restore_mask();
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // a launcher killed outright takes its ranks with it
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.n).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.n).c_str(), 1);
      setenv("MASTER_ADDR", addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "blocksharp: error: launch: cannot start rank %d\n", r);
      _exit(127);
    }
    pids.push_back(pid);
  }
  stop_signals::Scope signals(/*second_ends_process=*/false);  // every SIGINT / SIGTERM is forwarded
  int result = 0;
  size_t running = pids.size();
  bool stopping = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (const int sig = signals.take()) {
      std::fprintf(stderr, "blocksharp: error: launch: got signal %d; stopping the ranks\n", sig);
      for (pid_t p : pids)
        if (p > 0) kill(p, sig);
      if (!stopping) result = 128 + sig;
      stopping = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1000));
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0) {  // poll: a signal to forward, or (stopping) the end of the grace period
      if (stopping && std::chrono::steady_clock::now() > deadline)
        for (pid_t p : pids)
          if (p > 0) kill(p, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) break;
    int rank = -1;
    for (size_t i = 0; i < pids.size(); ++i)
      if (pids[i] == pid) {
        rank = static_cast<int>(i);
        pids[i] = -1;
      }
    if (rank < 0) continue;
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && !stopping) {
      result = code;
      stopping = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1000));
      if (running > 0)
        std::fprintf(stderr, "blocksharp: error: launch: rank %d %s %d; stopping the other ranks\n", rank,
                     WIFEXITED(status) ? "exited with code" : "was killed by signal",
                     WIFEXITED(status) ? code : WTERMSIG(status));
      for (pid_t p : pids)
        if (p > 0) kill(p, SIGTERM);
    }
  }
  return result;
}

}  // namespace

void register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand("launch", "start N local data-parallel ranks of a subcommand (like torchrun)");
  auto o = std::make_shared<LaunchOptions>();
  cmd->add_option("-n,--nproc", o->n, "ranks to start")->capture_default_str();
  cmd->add_option("--master-addr", o->addr, "rendezvous address (default: MASTER_ADDR or 127.0.0.1)");
  cmd->add_option("--master-port", o->port, "rendezvous port (default: MASTER_PORT or a free port)");
  cmd->add_option("--grace", o->grace_s, "seconds the other ranks get to exit after one fails")->capture_default_str();
  cmd->add_option("command", o->command, "the subcommand and its options, after --")->required();
  cmd->callback([o] {
    const int code = launch(*o);
    if (code != 0) throw ExitCode{code};
  });
}

}  // namespace bs
