// Adam-mini partition rules and (de)serialization.
#include "adam_mini_partition.h"

#include <algorithm>

#include "errors.h"

namespace bs {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool contains_any(const std::string& s, std::initializer_list<const char*> set) {
  for (const char* n : set)
    if (s.find(n) != std::string::npos) return true;
  return false;
}

}  // namespace

int64_t head_numel(const ModelInfo& info) { return info.n_heads > 0 ? info.dim * info.dim / info.n_heads : 0; }

Partition adam_mini_rules(const ParamTable& table, const ModelInfo& info) {
  Partition p;
  for (const auto& e : table.entries()) {
    const std::string n = lower(e.name);
    Granularity g;
    if (contains_any(n, {"bias"})) {
      g = Granularity::PerElement;
    } else if (contains_any(n, {"k_proj", "q_proj", "wq", "wk", "query", "key"})) {
      if (head_numel(info) <= 0)
        throw UserError("Adam-mini needs the attention sizes for '" + e.name + "': give " + param("dim") + " and " +
                        param("n_heads"));
      g = Granularity::PerHead;
    } else if (contains_any(n, {"embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value",
                                "o_proj", "wo", "attn.proj", "feed_forward", "linear", "mlp"})) {
      // The official code assumes a matrix here; a 1-D tensor would fail its slicing. We keep one block.
      g = e.shape.size() >= 2 ? Granularity::PerRow : Granularity::Whole;
    } else {
      g = Granularity::Whole;
    }
    ParamBlock b = make_block(e, g, head_numel(info));
    b.weight_decay = !contains_any(n, {"norm", "ln", "bias"});
    p.params.push_back(b);
  }
  return p;
}

Partition adam_mini_slices(const ParamTable& table, const ModelInfo& info) {
  Partition p = adam_mini_rules(table, info);
  for (size_t i = 0; i < table.size(); ++i) {
    if (table.at(i).slices.empty()) continue;
    if (info.n_heads <= 0 || info.dim % info.n_heads != 0)
      throw UserError(param("adam_mini") + " slices needs the attention sizes for '" + table.at(i).name + "': give " +
                      param("dim") + " and " + param("n_heads"));
    const bool wd = p.params[i].weight_decay;
    p.params[i] = make_sliced_block(table.at(i), info.dim / info.n_heads);
    p.params[i].weight_decay = wd;
  }
  return p;
}

Partition adam_mini_measured(const ParamTable& table, const ModelInfo& info,
                             const std::map<BlockKind, KindEvidence>& evidence, json& report) {
  Partition p = adam_mini_rules(table, info);
  report = json::object();
  for (const auto& [kind, ev] : evidence) {
    Granularity g = Granularity::Whole;
    if (ev.recommended == "per-head")
      g = Granularity::PerHead;
    else if (ev.recommended == "per-row")
      g = Granularity::PerRow;
    else if (ev.recommended == "per-element")
      g = Granularity::PerElement;
    std::string rules_g;            // the rules' granularity of the tensor the evidence was measured on
    json switched = json::array();  // tensors whose granularity the evidence changed: name, from, to
    for (size_t i = 0; i < table.size(); ++i) {
      if (table.at(i).kind != kind) continue;
      const std::string before = to_string(p.params[i].granularity);
      if (table.at(i).name == ev.sampled_param) rules_g = before;
      const bool heads_fit =
          g != Granularity::PerHead || (head_numel(info) > 0 && table.at(i).numel % head_numel(info) == 0);
      const bool rows_fit = g != Granularity::PerRow || table.at(i).shape.size() >= 2;
      if (heads_fit && rows_fit) {
        const bool wd = p.params[i].weight_decay;
        p.params[i] = make_block(table.at(i), g, head_numel(info));
        p.params[i].weight_decay = wd;
      }
      const std::string after = to_string(p.params[i].granularity);
      if (after != before) switched.push_back({{"name", table.at(i).name}, {"from", before}, {"to", after}});
    }
    const std::string used = to_string(g);
    report[to_string(kind)] = {{"sampled_param", ev.sampled_param},
                               {"method", ev.method},
                               {"candidates", ev.candidates},
                               {"n_blocks", ev.n_blocks},
                               {"diagonal_mass_fraction", ev.fractions},
                               {"threshold", ev.threshold},
                               {"recommended", ev.recommended},
                               {"used", used},
                               {"rules_granularity", rules_g},
                               {"switched", switched},
                               {"agrees_with_rules", switched.empty()}};
  }
  return p;
}

json adam_mini_to_json(const Partition& p, const ModelInfo& info, const std::string& mode, const json& evidence) {
  json j = config_header("adam_mini", info);
  j["mode"] = mode;
  j["rules_version"] = "Adam-mini v1.1.1";
  j["head_numel"] = head_numel(info);
  int64_t params = 0;
  json list = json::array();
  for (const auto& b : p.params) {
    int64_t numel = 1;
    for (int64_t d : b.shape) numel *= d;
    params += numel;
    json item = {{"name", b.name},
                 {"shape", b.shape},
                 {"kind", to_string(b.kind)},
                 {"granularity", to_string(b.granularity)},
                 {"block_size", b.block_size},
                 {"n_blocks", b.n_blocks},
                 {"weight_decay", b.weight_decay}};
    if (!b.regions.empty()) {  // sliced: each slice's blocks (per head of head_dim output units, or per unit)
      json slices = json::array();
      for (const auto& r : b.regions) {
        const Slice& sl = r.slice;
        slices.push_back({{"label", sl.label},
                          {"kind", to_string(sl.kind)},
                          {"granularity", to_string(r.granularity)},
                          {"dim", sl.dim},
                          {"begin", sl.begin},
                          {"length", sl.length},
                          {"n_blocks", r.count},
                          {"block_numel", r.block_numel()}});
      }
      const BlockRegion& q = b.regions.front();  // q: head_dim output units per block
      item["head_dim"] = q.slice.kind == BlockKind::QK ? q.slice.length / q.count : 0;
      item["slices"] = slices;
    }
    list.push_back(item);
  }
  j["params"] = list;
  j["state"] = {
      {"parameters", params},
      {"adam_mini_state_elements", p.state_elements()},
      {"adamw_state_elements", 2 * params},
      {"adam_mini_over_adamw", static_cast<double>(p.state_elements()) / (2.0 * std::max<int64_t>(params, 1))},
      {"bytes_per_element", 4}};
  j["evidence"] = evidence;
  return j;
}

static Partition adam_mini_from_json_unguarded(const json& j, const ParamTable& table, const std::string& path) {
  check_params(j, table, path, /*require_all=*/true);
  Partition p;
  const json& list = j.at("params");
  std::vector<const json*> by_index(table.size(), nullptr);
  for (const auto& item : list) by_index[table.index_of(item.at("name").get<std::string>())] = &item;
  for (size_t i = 0; i < table.size(); ++i) {
    const json& item = *by_index[i];
    const std::string at = "config '" + path + "': params entry '" + table.at(i).name + "'";
    for (const char* key : {"name", "shape", "kind", "granularity", "block_size", "n_blocks"})
      require_key(item, key, at);
    ParamBlock b;
    try {
      const Granularity g =
          granularity_from_string(item.at("granularity").get<std::string>(), at + " key \"granularity\"");
      if (g == Granularity::Sliced) {  // rebuilt from the model's slices; the file's counts must agree
        if (table.at(i).slices.empty())
          throw UserError(at + ": granularity \"sliced\" for a tensor without q/k/v slices");
        b = make_sliced_block(table.at(i), require_key(item, "head_dim", at).get<int64_t>());
        if (item.contains("slices") && item["slices"].size() == b.regions.size())
          for (size_t r = 0; r < b.regions.size(); ++r)
            if (item["slices"][r].value("n_blocks", int64_t(-1)) != b.regions[r].count)
              throw UserError(at + ": slice " + b.regions[r].slice.label + " key \"n_blocks\" does not fit head_dim");
      } else {
        b = make_block(table.at(i), g, item.at("block_size").get<int64_t>());
      }
      b.kind = block_kind_from_string(item.at("kind").get<std::string>());
      b.weight_decay = item.value("weight_decay", true);
    } catch (const json::exception&) {
      throw UserError(at + ": keys \"granularity\", \"kind\" must be strings and \"block_size\" an integer");
    }
    if (b.block_size != require_as<int64_t>(item, "block_size", at) ||
        b.n_blocks != require_as<int64_t>(item, "n_blocks", at))
      throw UserError(at + ": key \"n_blocks\" / \"block_size\" do not fit the parameter's shape");
    p.params.push_back(b);
  }
  return p;
}

Partition adam_mini_from_json(const json& j, const ParamTable& table, const std::string& path) {
  return with_config_errors(path, [&] { return adam_mini_from_json_unguarded(j, table, path); });
}

}  // namespace bs
