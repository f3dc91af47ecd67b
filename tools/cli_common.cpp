// Common options.
#include "cli_common.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "dtype_words.h"
#include "errors.h"
#include "models/model_zoo.h"

namespace bs {

void add_common_options(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--model", o.model, "built-in model (" + preset_list() + ") or path to a TorchScript .pt")
      ->capture_default_str();
  cmd->add_option("--set", o.sets,
                  "override a preset size: key=value (n_layer, dim, n_heads, n_kv_heads, vocab, "
                  "seq_len, tied, ffn, hidden); repeatable");
  cmd->add_option("--data", o.data,
                  "built-in data (brown, pydocs, mnist, fashion-mnist) or an .h5 file with "
                  "/inputs and /targets")
      ->capture_default_str();
  cmd->add_option("--val-data", o.val_data,
                  ".h5 --data: validation rows from this .h5 file's /inputs and /targets "
                  "(instead of the data file's own /val_inputs and /val_targets)");
  cmd->add_option("--tokenizer", o.tokenizer, "text corpora: byte or gpt2")->capture_default_str();
  add_enum_option(cmd, "--loss", o.loss, loss_words(), "loss");
  cmd->add_option("--batch-size", o.batch_size, "examples per batch")->capture_default_str();
  cmd->add_option("--seq-len", o.seq_len, "tokens per sequence (default: the model's)");
  cmd->add_option("--seed", o.seed, "seed for initialisation, batches and probes")->capture_default_str();
  add_enum_option(cmd, "--dtype", o.dtype, dtype_words(), "dtype");
  add_enum_option(cmd, "--device", o.device, {{"cpu", Device::Cpu}, {"cuda", Device::Cuda}}, "device");
  cmd->add_option("--threads", o.threads, "intra-op threads (0: LibTorch default)")->capture_default_str();
  cmd->add_option("--out", o.out, "output folder")->capture_default_str();
  cmd->add_option("--params", o.params_file, "start from parameters saved by name in an .h5 file (final_params.h5)");
  cmd->add_flag("--shuffle", o.shuffle, ".h5 data: seeded per-epoch shuffling instead of rows in order");
  cmd->add_option("--dist-backend", o.dist.backend,
                  "with WORLD_SIZE > 1 (torchrun or `blocksharp launch`): auto, gloo or nccl")
      ->capture_default_str();
  cmd->add_option("--dist-timeout", o.dist.timeout_s, "seconds to wait for a rank (rendezvous and every collective)")
      ->capture_default_str();
  cmd->add_option("--dim", o.dim, "TorchScript attention models: model width");
  cmd->add_option("--n-heads", o.n_heads, "TorchScript attention models: attention heads");
  cmd->add_option("--n-kv-heads", o.n_kv_heads, "TorchScript attention models: key/value heads");
}

std::string self_path(const std::string& who) {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw UserError(who + ": cannot find this executable's path");
  return std::string(buf, static_cast<size_t>(n));
}

void require_counts(std::initializer_list<std::pair<const char*, int64_t>> counts) {
  for (const auto& [flag, v] : counts)
    if (v < 1) throw UserError(std::string(flag) + " must be >= 1, got " + std::to_string(v));
}

void require_non_negative(const char* flag, int64_t v, const char* zero_means) {
  if (v >= 0) return;
  throw UserError(std::string(flag) + " must be >= 0" + (zero_means ? std::string(" (0: ") + zero_means + ")" : "") +
                  ", got " + std::to_string(v));
}

void require_within_context(int64_t seq_len, int64_t context, const std::string& model, const std::string& hint) {
  if (seq_len <= context) return;
  throw UserError("--seq-len " + std::to_string(seq_len) + " exceeds the context of " + model + " (" +
                  std::to_string(context) + ")" + hint);
}

void require_positive(const std::string& flag, double v, const std::string& what) {
  if (std::isfinite(v) && v > 0) return;
  char got[32];
  std::snprintf(got, sizeof got, "%g", v);
  throw UserError(flag + " must be " + what + ", got " + got);
}

}  // namespace bs
