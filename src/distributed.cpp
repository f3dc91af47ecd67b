// The default process group: TCPStore rendezvous on MASTER_ADDR:MASTER_PORT, then ProcessGroupGloo.
// Every collective waits with the group's timeout and turns a failure into one line naming the rank.
#define USE_C10D_GLOO 1  // Debian's LibTorch is built with Gloo; the header hides the class without it
#include "distributed.h"

#include <glog/logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <memory>

#include "errors.h"

namespace bs::dist {

namespace {

struct Group {
  int rank = 0, world = 1;
  double timeout_s = 300;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  int64_t bytes = 0;
};

// Never destroyed: a process group's destructor joins worker threads, which must not hang an exit that
// follows a lost peer (main() leaves with _Exit when distributed).
Group& group() {
  static Group* g = new Group;
  return *g;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

int env_int(const char* name, int fallback) {
  const std::string v = env(name);
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    const int x = std::stoi(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {}
  throw UserError(std::string("environment variable ") + name + "='" + v + "' is not an integer");
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* op) {
  try {
    work->wait(std::chrono::milliseconds(static_cast<int64_t>(group().timeout_s * 1000)));
  } catch (const std::exception& e) {
    throw UserError(std::string(op) + " failed (a rank died or did not answer within " + param("dist_timeout") + " " +
                    std::to_string(static_cast<int64_t>(group().timeout_s)) + " s): " + torch_error_line(e));
  }
}

// The one-tensor list a collective takes; counts its payload in bytes_communicated().
std::vector<torch::Tensor> payload(const torch::Tensor& t, const char* op) {
  TORCH_CHECK(t.is_contiguous(), op, " needs a contiguous tensor");
  group().bytes += t.numel() * static_cast<int64_t>(t.element_size());
  return {t};
}

void reduce(torch::Tensor& t, c10d::ReduceOp op, const char* name) {
  if (!active()) return;
  auto ts = payload(t, name);
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  wait(group().pg->allreduce(ts, o), name);
}

}  // namespace

void init_from_env(const DistOptions& o) {
  Group& g = group();
  if (g.pg) return;
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl")
    throw UserError(param("dist_backend") + " '" + o.backend + "': expected auto, gloo or nccl");
  if (!(o.timeout_s > 0)) throw UserError(param("dist_timeout") + " must be positive");
  const int world = env_int("WORLD_SIZE", 1);
  if (world < 1) throw UserError("environment variable WORLD_SIZE must be >= 1");
  if (world == 1) return;
  const int rank = env_int("RANK", -1);
  if (rank < 0 || rank >= world)
    throw UserError("environment variable RANK must be set to 0.." + std::to_string(world - 1) +
                    " when WORLD_SIZE=" + std::to_string(world));
  if (o.backend == "nccl")
    throw UserError(param("dist_backend") + " nccl: this LibTorch has no NCCL (Debian's is CPU-only); use gloo");
  const std::string addr = env("MASTER_ADDR").empty() ? "127.0.0.1" : env("MASTER_ADDR");
  const int port = env_int("MASTER_PORT", 29500);
  if (port <= 0 || port > 65535) throw UserError("environment variable MASTER_PORT must be a port number");
  // c10d logs its own view of a failure through glog; ours is the one line main() prints.
  if (env("BLOCKSHARP_C10D_LOG").empty()) FLAGS_minloglevel = google::GLOG_FATAL;
  g.rank = rank;
  g.world = world;
  g.timeout_s = o.timeout_s;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  } catch (const std::exception& e) {
    throw UserError("rendezvous at MASTER_ADDR:MASTER_PORT " + addr + ":" + std::to_string(port) + " failed within " +
                    param("dist_timeout") + " " + std::to_string(static_cast<int64_t>(o.timeout_s)) +
                    " s (a rank never joined, or the port is taken): " + torch_error_line(e));
  }
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string ifname = env("GLOO_SOCKET_IFNAME");
    const bool loopback = addr == "localhost" || addr.rfind("127.", 0) == 0;
    opts->devices.push_back(!ifname.empty() ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                            : loopback      ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                            : c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 2;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("blocksharp", store);
    g.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, opts);
  } catch (const std::exception& e) {
    throw UserError("Gloo process group setup with the ranks at MASTER_ADDR:MASTER_PORT " + addr + ":" +
                    std::to_string(port) + " failed within " + param("dist_timeout") + " " +
                    std::to_string(static_cast<int64_t>(o.timeout_s)) +
                    " s (a rank never joined or cannot be reached): " + torch_error_line(e));
  }
  if (rank != 0 && !std::freopen("/dev/null", "w", stdout)) throw UserError("cannot silence stdout");
}

bool active() { return static_cast<bool>(group().pg); }
int rank() { return group().rank; }
int world_size() { return group().world; }
bool is_main() { return group().rank == 0; }

void all_reduce_sum_(torch::Tensor& t) { reduce(t, c10d::ReduceOp::SUM, "all-reduce"); }

void all_reduce_mean_(torch::Tensor& t) {
  if (!active()) return;
  reduce(t, c10d::ReduceOp::SUM, "all-reduce");
  t.div_(static_cast<double>(world_size()));
}

void all_reduce_max_(torch::Tensor& t) { reduce(t, c10d::ReduceOp::MAX, "all-reduce (max)"); }

void broadcast_(torch::Tensor& t, int root) {
  if (!active()) return;
  auto ts = payload(t, "broadcast");
  c10d::BroadcastOptions o;
  o.rootRank = root;
  wait(group().pg->broadcast(ts, o), "broadcast");
}

double all_reduce_mean(double v) {
  if (!active()) return v;
  auto t = torch::full({1}, v, torch::kFloat64);
  all_reduce_mean_(t);
  return t.item<double>();
}

void all_reduce_mean_buckets_(std::vector<torch::Tensor>& ts, int64_t bucket_bytes) {
  if (!active()) return;
  // Buckets of one dtype, in order; every bucket's all-reduce is started before any is waited on.
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  int64_t fill = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (!ts[i].defined()) continue;
    const int64_t bytes = ts[i].numel() * static_cast<int64_t>(ts[i].element_size());
    if (buckets.empty() || fill + bytes > bucket_bytes ||
        ts[buckets.back().members.front()].scalar_type() != ts[i].scalar_type()) {
      buckets.emplace_back();
      fill = 0;
    }
    buckets.back().members.push_back(i);
    fill += bytes;
  }
  for (auto& b : buckets) {
    std::vector<torch::Tensor> parts;
    for (size_t i : b.members) parts.push_back(ts[i].reshape({-1}));
    b.flat = torch::cat(parts);
    auto one = payload(b.flat, "gradient all-reduce");
    b.work = group().pg->allreduce(one);
  }
  for (auto& b : buckets) {
    wait(b.work, "gradient all-reduce");
    b.flat.div_(static_cast<double>(world_size()));
    int64_t off = 0;
    for (size_t i : b.members) {
      ts[i].copy_(b.flat.narrow(0, off, ts[i].numel()).view_as(ts[i]));
      off += ts[i].numel();
    }
  }
}

void check_identical(const std::vector<torch::Tensor>& ts, const Message& what) {
  if (!active()) return;
  // Per tensor: sum and sum of |x| in float64 (exact equality across ranks iff the bytes agree, in
  // practice); max over ranks of (s, -s) gives max and -min in one all-reduce.
  auto v = torch::empty({static_cast<int64_t>(4 * ts.size())}, torch::kFloat64);
  auto* p = v.data_ptr<double>();
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto d = ts[i].detach().to(torch::kFloat64);
    const double s = d.sum().item<double>(), a = d.abs().sum().item<double>();
    p[4 * i] = s;
    p[4 * i + 1] = -s;
    p[4 * i + 2] = a;
    p[4 * i + 3] = -a;
  }
  auto mine = v.clone();
  all_reduce_max_(v);
  for (size_t i = 0; i < ts.size(); ++i)
    if (p[4 * i] != -p[4 * i + 1] || p[4 * i + 2] != -p[4 * i + 3])
      throw UserError(what + " differ between ranks at tensor " + std::to_string(i) + " (sum on this rank " +
                      std::to_string(mine.data_ptr<double>()[4 * i]) + ")");
}

NamedTensors all_gather_named(const NamedTensors& mine) {
  if (!active()) return mine;
  NamedTensors out;
  for (int root = 0; root < world_size(); ++root) {
    // Each rank in turn broadcasts a manifest ("key\tdtype\tdims\n" lines), then its tensors.
    std::string manifest;
    if (root == rank())
      for (const auto& [key, t] : mine) {
        manifest += key + "\t" + std::to_string(static_cast<int>(t.scalar_type())) + "\t";
        for (int64_t d = 0; d < t.dim(); ++d) manifest += (d ? "," : "") + std::to_string(t.size(d));
        manifest += "\n";
      }
    auto len = torch::tensor({static_cast<int64_t>(manifest.size())}, torch::kInt64);
    broadcast_(len, root);
    auto bytes = torch::zeros({len.item<int64_t>()}, torch::kUInt8);
    if (root == rank()) std::memcpy(bytes.data_ptr<uint8_t>(), manifest.data(), manifest.size());
    if (bytes.numel() > 0) broadcast_(bytes, root);
    manifest.assign(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(bytes.numel()));
    std::istringstream lines(manifest);
    std::string line;
    size_t k = 0;
    while (std::getline(lines, line)) {
      std::istringstream f(line);
      std::string key, type, dims, d;
      std::getline(f, key, '\t');
      std::getline(f, type, '\t');
      std::getline(f, dims);
      std::vector<int64_t> shape;
      std::istringstream ds(dims);
      while (std::getline(ds, d, ',')) shape.push_back(std::stoll(d));
      torch::Tensor t = root == rank() ? mine[k].second.contiguous().clone()
                                       : torch::empty(shape, static_cast<torch::ScalarType>(std::stoi(type)));
      if (t.numel() > 0) broadcast_(t, root);
      out.emplace_back(key, t);
      ++k;
    }
  }
  return out;
}

int64_t bytes_communicated() { return group().bytes; }

Batch shard(const Batch& b, const Message& what) {
  if (!active()) return b;
  const int64_t rows = b.inputs.size(0), n = world_size();
  if (rows % n != 0)
    throw UserError(what + " " + std::to_string(rows) + " is not divisible by WORLD_SIZE " + std::to_string(n) +
                    " (each rank takes an equal share of every batch)");
  const int64_t per = rows / n;
  Batch out = b;
  out.inputs = b.inputs.narrow(0, per * rank(), per).contiguous();
  out.targets = b.targets.narrow(0, per * rank(), per).contiguous();
  return out;
}

}  // namespace bs::dist
