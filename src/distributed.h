// Data parallelism over PyTorch's c10d: one default process group (TCPStore rendezvous + Gloo), set up
// from torchrun's variables RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT. With WORLD_SIZE unset or 1
// every call is a no-op, so single-process code paths are the same code. Like torch.distributed's
// default group: diagnostics reduce their products and gradients here, and only rank 0 writes files.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "errors.h"
#include "data.h"

namespace bs::dist {

struct DistOptions {
  std::string backend = "auto";  // auto | gloo | nccl
  double timeout_s = 300;        // rendezvous and every collective; a dead or missing rank fails after this
};

// Joins the process group named by the environment (once; later calls are no-ops). Ranks other than 0
// send stdout to /dev/null, so reports and progress come from rank 0 alone. Throws UserError naming the
// variable or the rank that did not answer.
void init_from_env(const DistOptions& o);
bool active();  // WORLD_SIZE > 1 and joined
int rank();
int world_size();
bool is_main();  // rank 0 (or not distributed): the one that writes files and prints

// In-place collectives over the whole group (contiguous CPU tensors). A failure (peer died, timeout)
// becomes a UserError naming the operation (main() prefixes the rank).
void all_reduce_sum_(torch::Tensor& t);
void all_reduce_mean_(torch::Tensor& t);
void all_reduce_max_(torch::Tensor& t);
void broadcast_(torch::Tensor& t, int root);
double all_reduce_mean(double v);
// Gradient averaging as DDP does it: tensors packed into buckets of about bucket_bytes, one all-reduce
// per bucket, all buckets in flight at once. Undefined tensors are skipped (same on every rank).
void all_reduce_mean_buckets_(std::vector<torch::Tensor>& ts, int64_t bucket_bytes = 25 << 20);
// Throws UserError unless every rank holds bit-identical values (per-tensor sums compared by max/min).
void check_identical(const std::vector<torch::Tensor>& ts, const Message& what);

// Every rank's named tensors, on every rank, in rank order (ZeRO-1 checkpoints: state held in shards).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;
NamedTensors all_gather_named(const NamedTensors& mine);

// Payload bytes this rank handed to collectives so far (ring all-reduce sends about 2(N-1)/N of it).
int64_t bytes_communicated();

// This rank's rows of a global batch: contiguous equal shards, rows [r*B/N, (r+1)*B/N).
Batch shard(const Batch& b, const Message& what);

}  // namespace bs::dist
