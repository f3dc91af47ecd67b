// libFuzzer harness: the HDF5 readers on arbitrary bytes: the .h5 data reader (/inputs, /targets,
// /val_*; batches and the token-id check), --params and a checkpoint for --resume (AdamW state).
#include "checkpoint.h"
#include "data.h"
#include "errors.h"
#include "fuzz_common.h"
#include "h5io.h"
#include "optimizer.h"
#include "session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bs::Network& net = bs::fuzz::tiny_model();
  static std::unique_ptr<bs::Optimizer> opt = [&] {
    bs::OptimizerInputs in;
    for (const auto& [name, t] : net.named_parameters()) {
      in.names.push_back(name);
      in.params.push_back(t);
    }
    return bs::make_optimizer("adamw", in, bs::default_options("adamw"));
  }();
  const std::string path = bs::fuzz::input_file(data, size, ".h5");
  try {
    bs::DataOptions d;
    d.name = path;
    d.batch_size = 2;
    auto src = bs::make_data(d);
    src->input_id_range();
    src->train_batch(0);
    if (src->n_val_batches() > 0) src->val_batch(0);
  } catch (const bs::UserError&) {}
  try {
    bs::load_params(net, path);
  } catch (const bs::UserError&) {}
  try {
    bs::load_checkpoint(path, net, *opt, 100);
  } catch (const bs::UserError&) {}
  return 0;
}
