// Interop checker run by test_torchscript_gradients.py: loads a TorchScript model and .h5 data the
// way the CLI does (float64), computes the loss and every parameter's gradient on batch 0 and compares
// them with PyTorch's values saved in ref.h5 (oracle: PyTorch autograd). Exit 0 when all agree to 1e-10.
#include <cmath>
#include <cstdio>

#include "h5io.h"
#include "session.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: check_gradients MODEL.pt DATA.h5 REF.h5 LOSS BATCH\n");
    return 2;
  }
  bs::CommonOptions o;
  o.model = argv[1];
  o.data = argv[2];
  o.loss = bs::loss_kind_from_string(argv[4]);
  o.batch_size = std::atoll(argv[5]);
  o.dtype = torch::kFloat64;
  bs::Session s = bs::open_session(o);
  auto loss = bs::batch_loss(*s.net, s.train_batch(0), s.loss, o.data);
  auto params = s.net->parameters();
  auto grads = torch::autograd::grad({loss}, params);
  int bad = 0;
  const double ref_loss = bs::read_h5_dataset(argv[3], "loss", "ref").item<double>();
  const double loss_err = std::abs(loss.item<double>() - ref_loss) / std::abs(ref_loss);
  std::printf("loss %.17g ref %.17g rel %.3g\n", loss.item<double>(), ref_loss, loss_err);
  if (!(loss_err <= 1e-10)) ++bad;
  auto named = s.net->named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    auto ref = bs::read_h5_dataset(argv[3], "grad/" + named[i].first, "ref");
    const double err = (grads[i] - ref).norm().item<double>() / std::max(ref.norm().item<double>(), 1e-300);
    std::printf("grad %-28s rel %.3g\n", named[i].first.c_str(), err);
    if (!(err <= 1e-10)) ++bad;
  }
  return bad == 0 ? 0 : 1;
}
