// Groups, measured sharpness and multipliers. The warmup stretch equals the multiplier, as the paper's
// code does (warmup_g = warmup * alpha_g).
#include "blockwise_lr.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "errors.h"

namespace bs {

double paper_multiplier(BlockKind g) {
  switch (g) {
    case BlockKind::Norm:
      return 1;
    case BlockKind::VO:
      return 4;
    case BlockKind::FFN:
      return 6;
    case BlockKind::QK:
      return 8;
    case BlockKind::Emb:
      return 10;
    default:
      return 1;
  }
}

std::vector<std::pair<BlockKind, std::string>> parse_group_patterns(const std::vector<std::string>& specs) {
  std::vector<std::pair<BlockKind, std::string>> out;
  for (const auto& s : specs) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
      throw UserError(param("group_pattern") + " '" + s + "': expected KIND=substring (e.g. QK=attn.c_attn)");
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

const char* to_string(LrPolicyKind k) { return k == LrPolicyKind::Paper ? "paper" : "inverse-sharpness"; }

json blockwise_lr_config(const ParamTable& table, const ModelInfo& info, const std::vector<double>& block_trace,
                         const LrPolicy& policy, const std::vector<std::pair<BlockKind, std::string>>& patterns,
                         const std::vector<double>& block_trace_stderr) {
  const bool paper = policy.kind == LrPolicyKind::Paper;
  if (!(policy.exponent > 0) || !(policy.min_multiplier > 0) || !(policy.max_multiplier >= policy.min_multiplier))
    throw UserError(param("lr_exponent") + " must be > 0 and 0 < " + param("lr_min_multiplier") +
                    " <= " + param("lr_max_multiplier"));
  // Groups of measured blocks: a whole tensor by its name, a fused tensor's slice by its own kind unless
  // a user pattern names the tensor.
  const auto& blocks = table.blocks();
  auto user_group = [&](const std::string& name) -> std::optional<BlockKind> {
    for (const auto& [kind, pat] : patterns)
      if (name.find(pat) != std::string::npos) return kind;
    return std::nullopt;
  };
  std::vector<BlockKind> group_of(blocks.size());
  std::map<BlockKind, std::vector<size_t>> groups;  // group -> blocks
  for (size_t b = 0; b < blocks.size(); ++b) {
    const auto& name = table.at(blocks[b].entry).name;
    group_of[b] = blocks[b].slice < 0 || user_group(name) ? lr_group(name, patterns) : blocks[b].kind;
    groups[group_of[b]].push_back(b);
  }
  // A group's sharpness is that of its weight blocks: biases take their module's multiplier but stay out
  // of its average, since a bias element is shared by every token position and its curvature is orders of
  // magnitude above any weight element's (measured: it would make VO the sharpest group of GPT-2).
  std::map<BlockKind, double> sharp, sharp_all, sharp_se;
  std::map<BlockKind, bool> resolved;
  double sharpest = 0;
  auto se_of = [&](size_t b) { return b < block_trace_stderr.size() ? block_trace_stderr[b] : 0.0; };
  for (const auto& [g, idx] : groups) {
    double tr = 0, numel = 0, var = 0, tr_all = 0, numel_all = 0, var_all = 0;
    for (size_t b : idx) {
      tr_all += block_trace[b], numel_all += static_cast<double>(blocks[b].numel), var_all += se_of(b) * se_of(b);
      if (blocks[b].kind != BlockKind::Bias)
        tr += block_trace[b], numel += static_cast<double>(blocks[b].numel), var += se_of(b) * se_of(b);
    }
    sharp_all[g] = tr_all / numel_all;
    sharp[g] = numel > 0 ? tr / numel : sharp_all[g];
    sharp_se[g] = numel > 0 ? std::sqrt(var) / numel : std::sqrt(var_all) / numel_all;
    resolved[g] = std::isfinite(sharp[g]) && sharp[g] > 0 && sharp[g] > sharp_se[g];
    if (resolved[g]) sharpest = std::max(sharpest, sharp[g]);
  }
  json j = config_header("blockwise_lr", info);
  j["policy"] = {{"name", to_string(policy.kind)},
                 {"exponent", policy.exponent},
                 {"min_multiplier", policy.min_multiplier},
                 {"max_multiplier", policy.max_multiplier}};
  j["warmup_stretch_rule"] = "warmup_g = warmup * multiplier_g (Sharpness Disparity code)";
  // Multipliers are ratios between groups: with fewer than two resolved groups there is none to take.
  int n_resolved = 0;
  for (const auto& [g, r] : resolved) n_resolved += r;
  std::map<BlockKind, double> mult;
  json unresolved = json::array(), derived = json::array();
  for (const auto& [g, idx] : groups) {
    double m = paper_multiplier(g);  // also where there is no measured sharpness to invert
    if (!paper && resolved[g] && n_resolved >= 2) {
      m = std::clamp(std::pow(sharpest / sharp[g], policy.exponent), policy.min_multiplier, policy.max_multiplier);
      derived.push_back(to_string(g));
    }
    if (!paper && !resolved[g]) unresolved.push_back(to_string(g));
    mult[g] = m;
  }
  if (!paper) {
    j["policy"]["derived_groups"] = derived;
    j["policy"]["unresolved_groups"] = unresolved;
  }
  // params[]: one entry per tensor, in table order, with its slices when they fall in different groups.
  json pl = json::array();
  std::map<BlockKind, json> names;
  std::map<BlockKind, int64_t> numel;
  for (size_t b = 0; b < blocks.size(); ++b) numel[group_of[b]] += blocks[b].numel;
  for (size_t b = 0; b < blocks.size();) {
    const size_t i = blocks[b].entry;
    const auto& e = table.at(i);
    json entry = {{"name", e.name}, {"shape", e.shape}, {"group", to_string(group_of[b])}};
    names[group_of[b]].push_back(e.name);
    json slices = json::array();
    bool differ = false;
    for (; b < blocks.size() && blocks[b].entry == i; ++b)
      if (blocks[b].slice >= 0) {
        const auto& sl = e.slices[static_cast<size_t>(blocks[b].slice)];
        slices.push_back({{"label", sl.label},
                          {"dim", sl.dim},
                          {"begin", sl.begin},
                          {"length", sl.length},
                          {"group", to_string(group_of[b])}});
        differ = differ || group_of[b] != block_kind_from_string(entry["group"].get<std::string>());
      }
    if (differ) entry["slices"] = slices;
    pl.push_back(entry);
  }
  json gl = json::array();
  for (const auto& [g, idx] : groups)
    gl.push_back({{"group", to_string(g)},
                  {"multiplier", mult[g]},
                  {"warmup_stretch", mult[g]},
                  {"avg_sharpness", std::isfinite(sharp[g]) ? json(sharp[g]) : json()},
                  {"avg_sharpness_with_biases", std::isfinite(sharp_all[g]) ? json(sharp_all[g]) : json()},
                  {"avg_sharpness_stderr", std::isfinite(sharp_se[g]) ? json(sharp_se[g]) : json()},
                  {"sharpness_resolved", resolved[g]},
                  {"paper_multiplier", paper_multiplier(g)},
                  {"numel", numel[g]},
                  {"params", names.count(g) ? names[g] : json::array()}});
  j["groups"] = gl;
  j["params"] = pl;
  j["evidence"] = {{"quantity",
                    "average sharpness Tr(H_bb)/numel of each group's non-bias blocks (Hutchinson, "
                    "profile.h5 /blocks/trace; a fused q/k/v weight's slices count in their own groups)"},
                   {"sharpest_group_sharpness", sharpest}};
  return j;
}

static BlockwiseLr blockwise_lr_from_json_unguarded(const json& j, const ParamTable& table, const std::string& path) {
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
    by_group[require_as<std::string>(groups[i], "group", at)] = {m.get<double>(), w.get<double>()};
  }
  BlockwiseLr r;
  r.multiplier.assign(table.size(), 1.0);
  r.warmup_stretch.assign(table.size(), 1.0);
  r.slices.assign(table.size(), {});
  r.group.assign(table.size(), "");
  for (const auto& item : j.at("params")) {
    const size_t i = table.index_of(item.at("name").get<std::string>());
    const std::string g = require_as<std::string>(item, "group", where + ": params entry '" + table.at(i).name + "'");
    auto it = by_group.find(g);
    if (it == by_group.end())
      throw UserError(where + ": params entry '" + table.at(i).name + "' names unknown group '" + g + "'");
    r.multiplier[i] = it->second.first;
    r.warmup_stretch[i] = it->second.second;
    r.group[i] = g;
    if (!item.contains("slices")) continue;
    const std::string at = where + ": params entry '" + table.at(i).name + "' key \"slices\"";
    const auto& e = table.at(i);
    if (!item["slices"].is_array()) throw UserError(at + " must be an array");
    for (const auto& sl : item["slices"]) {
      SliceLr x;
      try {
        x.dim = sl.at("dim").get<int64_t>();
        x.begin = sl.at("begin").get<int64_t>();
        x.length = sl.at("length").get<int64_t>();
      } catch (const json::exception&) {
        throw UserError(at + ": each slice needs integer \"dim\", \"begin\" and \"length\"");
      }
      if (x.dim < 0 || x.dim >= static_cast<int64_t>(e.shape.size()) || x.begin < 0 || x.length <= 0 ||
          x.begin + x.length > e.shape[static_cast<size_t>(x.dim)])
        throw UserError(at + ": a slice lies outside the parameter's shape");
      const std::string sg = sl.contains("group") && sl["group"].is_string() ? sl["group"].get<std::string>() : "";
      auto sit = by_group.find(sg);
      if (sit == by_group.end()) throw UserError(at + ": a slice names unknown group '" + sg + "'");
      x.multiplier = sit->second.first;
      x.warmup_stretch = sit->second.second;
      r.slices[i].push_back(x);
    }
    // The slices cut one dimension into consecutive ranges that cover it: every element has one rate.
    int64_t at_dim = 0;
    for (const auto& x : r.slices[i]) {
      if (x.dim != r.slices[i].front().dim || x.begin != at_dim)
        throw UserError(at + ": slices must be consecutive ranges of one dimension");
      at_dim += x.length;
    }
    if (!r.slices[i].empty() && at_dim != e.shape[static_cast<size_t>(r.slices[i].front().dim)])
      throw UserError(at + ": slices must cover the parameter's dimension " + std::to_string(r.slices[i].front().dim));
  }
  return r;
}

BlockwiseLr blockwise_lr_from_json(const json& j, const ParamTable& table, const std::string& path) {
  return with_config_errors(path, [&] { return blockwise_lr_from_json_unguarded(j, table, path); });
}

}  // namespace bs
