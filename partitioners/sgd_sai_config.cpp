// SGD-SaI config.
#include "sgd_sai_config.h"

#include <cmath>

#include "errors.h"

namespace bs {

json sgd_sai_config(const ParamTable& table, const ModelInfo& info, const std::vector<double>& gsnr, int64_t batches,
                    int64_t batch_size, double eps) {
  json j = config_header("sgd_sai", info);
  json pl = json::array();
  for (size_t i = 0; i < table.size(); ++i)
    pl.push_back({{"name", table.at(i).name}, {"shape", table.at(i).shape}, {"gsnr", gsnr[i]}, {"lr_scale", gsnr[i]}});
  j["params"] = pl;
  j["evidence"] = {{"formula", "gsnr = ||g||_2 / (std_unbiased(g) + eps), std NaN -> 0; step size = lr * gsnr"},
                   {"eps", eps},
                   {"batches", batches},
                   {"rows", batches == 1 ? "[0, B) of the training data, as the official first step"
                                         : "mean of per-batch g-SNR over batches 0..N-1"},
                   {"batch_size", batch_size}};
  return j;
}

static std::vector<double> sgd_sai_from_json_unguarded(const json& j, const ParamTable& table,
                                                       const std::string& path) {
  check_params(j, table, path, /*require_all=*/true);
  std::vector<double> g(table.size(), NAN);
  for (const auto& item : j.at("params")) {
    const size_t i = table.index_of(item.at("name").get<std::string>());
    const json& v = require_key(item, "gsnr", "config '" + path + "': params entry '" + table.at(i).name + "'");
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
      throw UserError("config '" + path + "': params entry '" + table.at(i).name +
                      "' key \"gsnr\" must be a finite number >= 0");
    g[i] = v.get<double>();
  }
  return g;
}

std::vector<double> sgd_sai_from_json(const json& j, const ParamTable& table, const std::string& path) {
  return with_config_errors(path, [&] { return sgd_sai_from_json_unguarded(j, table, path); });
}

}  // namespace bs
