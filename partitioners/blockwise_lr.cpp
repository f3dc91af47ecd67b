// Groups, measured sharpness and multipliers. The warmup stretch equals the multiplier, as the paper's
// code does (warmup_g = warmup * alpha_g).
#include "blockwise_lr.h"

#include <cmath>

#include "errors.h"

namespace bs {

double paper_multiplier(BlockKind g) {
  switch (g) {
    case BlockKind::Norm: return 1;
    case BlockKind::VO: return 4;
    case BlockKind::FFN: return 6;
    case BlockKind::QK: return 8;
    case BlockKind::Emb: return 10;
    default: return 1;
  }
}

std::vector<std::pair<BlockKind, std::string>> parse_group_patterns(const std::vector<std::string>& specs) {
  std::vector<std::pair<BlockKind, std::string>> out;
  for (const auto& s : specs) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
      throw UserError("--group-pattern '" + s + "': expected KIND=substring (e.g. QK=attn.c_attn)");
    out.emplace_back(block_kind_from_string(s.substr(0, eq)), s.substr(eq + 1));
  }
  return out;
}

BlockKind lr_group(const std::string& name, const std::vector<std::pair<BlockKind, std::string>>& patterns) {
  for (const auto& [kind, pat] : patterns)
    if (name.find(pat) != std::string::npos) return kind;
  std::string n = name;
  const auto pos = n.rfind("bias");
  if (pos != std::string::npos) n.replace(pos, 4, "weight");  // a bias belongs to its module's group
  const BlockKind k = infer_block_kind(n);
  return k == BlockKind::Bias ? BlockKind::Other : k;
}

json blockwise_lr_config(const ParamTable& table, const ModelInfo& info, const std::vector<double>& block_trace,
                         const LrPolicy& policy, const std::vector<std::pair<BlockKind, std::string>>& patterns) {
  if (policy.name != "paper" && policy.name != "inverse-sharpness")
    throw UserError("--lr-policy '" + policy.name + "': expected paper or inverse-sharpness");
  if (!(policy.exponent > 0) || !(policy.min_multiplier > 0) || !(policy.max_multiplier >= policy.min_multiplier))
    throw UserError("--lr-exponent must be > 0 and 0 < --lr-min-multiplier <= --lr-max-multiplier");
  std::map<BlockKind, std::vector<size_t>> groups;
  for (size_t i = 0; i < table.size(); ++i) groups[lr_group(table.at(i).name, patterns)].push_back(i);
  // A group's sharpness is that of its weight tensors: biases take their module's multiplier but stay out
  // of its average, since a bias element is shared by every token position and its curvature is orders of
  // magnitude above any weight element's (measured: it would make VO the sharpest group of GPT-2).
  std::map<BlockKind, double> sharp, sharp_all;
  double sharpest = 0;
  for (const auto& [g, idx] : groups) {
    double tr = 0, numel = 0, tr_all = 0, numel_all = 0;
    for (size_t i : idx) {
      tr_all += block_trace[i], numel_all += static_cast<double>(table.at(i).numel);
      if (table.at(i).kind != BlockKind::Bias) tr += block_trace[i], numel += static_cast<double>(table.at(i).numel);
    }
    sharp_all[g] = tr_all / numel_all;
    sharp[g] = numel > 0 ? tr / numel : sharp_all[g];
    if (std::isfinite(sharp[g])) sharpest = std::max(sharpest, sharp[g]);
  }
  json j = config_header("blockwise_lr", info);
  j["policy"] = {{"name", policy.name},
                 {"exponent", policy.exponent},
                 {"min_multiplier", policy.min_multiplier},
                 {"max_multiplier", policy.max_multiplier}};
  j["warmup_stretch_rule"] = "warmup_g = warmup * multiplier_g (Sharpness Disparity code)";
  json gl = json::array(), pl = json::array();
  for (const auto& [g, idx] : groups) {
    double m;
    if (policy.name == "paper") {
      m = paper_multiplier(g);
    } else {
      const double s = sharp[g];
      m = (std::isfinite(s) && s > 0 && sharpest > 0) ? std::pow(sharpest / s, policy.exponent) : policy.max_multiplier;
      m = std::clamp(m, policy.min_multiplier, policy.max_multiplier);
    }
    json names = json::array();
    for (size_t i : idx) {
      names.push_back(table.at(i).name);
      pl.push_back({{"name", table.at(i).name}, {"shape", table.at(i).shape}, {"group", to_string(g)}});
    }
    int64_t numel = 0;
    for (size_t i : idx) numel += table.at(i).numel;
    gl.push_back({{"group", to_string(g)},
                  {"multiplier", m},
                  {"warmup_stretch", m},
                  {"avg_sharpness", std::isfinite(sharp[g]) ? json(sharp[g]) : json()},
                  {"avg_sharpness_with_biases", std::isfinite(sharp_all[g]) ? json(sharp_all[g]) : json()},
                  {"paper_multiplier", paper_multiplier(g)},
                  {"numel", numel},
                  {"params", names}});
  }
  j["groups"] = gl;
  j["params"] = pl;
  j["evidence"] = {{"quantity", "average sharpness Tr(H_bb)/numel of each group's non-bias tensors (Hutchinson, "
                                "profile.h5 /blocks/trace)"},
                   {"sharpest_group_sharpness", sharpest}};
  return j;
}

BlockwiseLr blockwise_lr_from_json(const json& j, const ParamTable& table, const std::string& path) {
  check_params(j, table, path, /*require_all=*/true);
  const std::string where = "config '" + path + "'";
  const json& groups = require_key(j, "groups", where);
  if (!groups.is_array()) throw UserError(where + ": key \"groups\" must be an array");
  std::map<std::string, std::pair<double, double>> by_group;
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::string at = where + ": groups[" + std::to_string(i) + "]";
    const json& m = require_key(groups[i], "multiplier", at);
    const json& w = require_key(groups[i], "warmup_stretch", at);
    if (!m.is_number() || !(m.get<double>() > 0)) throw UserError(at + ".multiplier must be a positive number");
    if (!w.is_number() || !(w.get<double>() > 0)) throw UserError(at + ".warmup_stretch must be a positive number");
    by_group[require_key(groups[i], "group", at).get<std::string>()] = {m.get<double>(), w.get<double>()};
  }
  BlockwiseLr r;
  r.multiplier.assign(table.size(), 1.0);
  r.warmup_stretch.assign(table.size(), 1.0);
  for (const auto& item : j.at("params")) {
    const size_t i = table.index_of(item.at("name").get<std::string>());
    const std::string g = require_key(item, "group", where + ": params entry '" + table.at(i).name + "'").get<std::string>();
    auto it = by_group.find(g);
    if (it == by_group.end()) throw UserError(where + ": params entry '" + table.at(i).name + "' names unknown group '" + g + "'");
    r.multiplier[i] = it->second.first;
    r.warmup_stretch[i] = it->second.second;
  }
  return r;
}

}  // namespace bs
