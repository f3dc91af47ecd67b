// `blocksharp config show FILE` summarizes a config; `config check FILE --model ...` validates it
// against a model (names, shapes, block sizes), exactly as an optimizer would on load; `config rules`
// prints the name -> block-kind table; `config diff A B` prints how two configs of one kind differ.
#include <algorithm>
#include <cstdio>
#include <map>

#include "adam_mini_partition.h"
#include "blockwise_lr.h"
#include "cli_common.h"
#include "commands.h"
#include "errors.h"
#include "sgd_sai_config.h"

namespace bs {

namespace {

void show(const std::string& path) {
  const json j = read_config_file(path);
  const std::string kind = config_kind(j, path);
  const json& m = require_key(j, "model", "config '" + path + "'");
  std::printf("%s: %s config for model %s (%s), %zu parameters\n", path.c_str(), kind.c_str(),
              m.value("name", std::string("?")).c_str(), m.value("family", std::string("?")).c_str(),
              require_key(j, "params", path).size());
  if (kind == "adam_mini") {
    std::map<std::string, int> count;
    for (const auto& p : j["params"]) count[p.value("granularity", std::string("?"))]++;
    std::printf("mode %s; tensors by granularity:", j.value("mode", std::string("?")).c_str());
    for (const auto& [g, n] : count) std::printf(" %s %d", g.c_str(), n);
    std::printf("\nstate elements: %lld (AdamW %lld, ratio %.4f)\n",
                static_cast<long long>(j["state"].value("adam_mini_state_elements", int64_t{0})),
                static_cast<long long>(j["state"].value("adamw_state_elements", int64_t{0})),
                j["state"].value("adam_mini_over_adamw", 0.0));
  } else if (kind == "blockwise_lr") {
    std::printf("policy %s\n%-6s %10s %14s %10s\n", j["policy"].value("name", std::string("?")).c_str(), "group",
                "multiplier", "avg_sharpness", "numel");
    for (const auto& g : j["groups"])
      std::printf("%-6s %10.3f %14.5g %10lld\n", g.value("group", std::string("?")).c_str(), g.value("multiplier", 0.0),
                  g["avg_sharpness"].is_number() ? g["avg_sharpness"].get<double>() : NAN,
                  static_cast<long long>(g.value("numel", int64_t{0})));
  } else if (kind == "sgd_sai") {
    std::vector<double> g;
    for (const auto& p : j["params"]) g.push_back(p.value("gsnr", 0.0));
    std::sort(g.begin(), g.end());
    if (!g.empty())
      std::printf("g-SNR min %.4g  median %.4g  max %.4g (step size = lr * gsnr)\n", g.front(), g[g.size() / 2],
                  g.back());
  }
}

void check(const std::string& path, const CommonOptions& common) {
  const json j = read_config_file(path);
  const std::string kind = config_kind(j, path);
  Session s = open_session(common);
  const ParamTable table(s.net->named_parameters());
  if (kind == "adam_mini")
    adam_mini_from_json(j, table, path);
  else if (kind == "blockwise_lr")
    blockwise_lr_from_json(j, table, path);
  else if (kind == "sgd_sai")
    sgd_sai_from_json(j, table, path);
  else
    throw UserError("config '" + path + "': unknown config kind '" + kind + "'");
  std::printf("%s: valid %s config for %s\n", path.c_str(), kind.c_str(), common.model.c_str());
}

// The name -> kind table, in the order it is tried (first match wins).
void rules() {
  std::printf(
      "Block kinds from parameter names: the lower-cased name is tried against each rule in order;\n"
      "the first rule with a pattern inside the name decides (else Other). profile --group-pattern\n"
      "KIND=substring overrides the groups of blockwise_lr.json.\n\n");
  std::printf("%-4s %-6s %s\n", "rule", "kind", "patterns (any)  -- why");
  int i = 1;
  for (const auto& r : kind_rules()) {
    std::string pats;
    for (const auto& p : r.patterns) pats += (pats.empty() ? "" : ", ") + p;
    std::printf("%-4d %-6s %s  -- %s\n", i++, to_string(r.kind).c_str(), pats.c_str(), r.why.c_str());
  }
}

// config diff: a walk over both JSON documents. Arrays of objects that carry a "name" (params) or a
// "group" (groups) are matched by it, other arrays by position; provenance keys are not compared.
struct Differ {
  int count = 0;
  static std::string show_value(const json& v) {
    if (v.is_number_float()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
      return buf;
    }
    return v.dump();
  }
  void line(const char* sign, const std::string& path, const std::string& what) {
    ++count;
    std::printf("%s %s%s\n", sign, path.c_str(), what.c_str());
  }
  // The key that names every element of an array of objects once ("name", "label" or "group"), or null.
  static const char* key_of(const json& arr) {
    for (const char* k : {"name", "label", "group"}) {
      std::map<std::string, int> seen;
      bool all = !arr.empty();
      for (const auto& e : arr) all = all && e.is_object() && e.contains(k) && e[k].is_string() && !seen[e[k]]++;
      if (all) return k;
    }
    return nullptr;
  }
  static bool all_strings(const json& arr) {
    for (const auto& e : arr)
      if (!e.is_string()) return false;
    return true;
  }
  void walk(const std::string& path, const json& a, const json& b) {
    if (a.is_object() && b.is_object()) {
      for (const auto& [k, va] : a.items()) {
        if (path.empty() && (k == "blocksharp_version" || k == "command_line" || k == "set_id")) continue;
        const std::string p = path.empty() ? k : path + "." + k;
        if (!b.contains(k))
          line("-", p, ": " + show_value(va));
        else
          walk(p, va, b[k]);
      }
      for (const auto& [k, vb] : b.items())
        if (!a.contains(k) && !(path.empty() && (k == "blocksharp_version" || k == "command_line" || k == "set_id")))
          line("+", path.empty() ? k : path + "." + k, ": " + show_value(vb));
      return;
    }
    if (a.is_array() && b.is_array()) {
      const char* ka = key_of(a);
      if (ka && ka == key_of(b)) {
        std::map<std::string, const json*> in_b;
        for (const auto& e : b) in_b[e[ka].get<std::string>()] = &e;
        std::map<std::string, bool> seen;
        for (const auto& e : a) {
          const std::string id = e[ka].get<std::string>();
          seen[id] = true;
          const std::string p = path + "[" + id + "]";
          if (!in_b.count(id))
            line("-", p, "");
          else
            walk(p, e, *in_b[id]);
        }
        for (const auto& e : b)
          if (!seen.count(e[ka].get<std::string>())) line("+", path + "[" + e[ka].get<std::string>() + "]", "");
        return;
      }
      if (all_strings(a) && all_strings(b)) {  // a list of names: which left, which came
        for (const auto& e : a)
          if (std::find(b.begin(), b.end(), e) == b.end()) line("-", path, ": " + e.dump());
        for (const auto& e : b)
          if (std::find(a.begin(), a.end(), e) == a.end()) line("+", path, ": " + e.dump());
        return;
      }
      if (a.size() == b.size()) {
        for (size_t i = 0; i < a.size(); ++i) walk(path + "[" + std::to_string(i) + "]", a[i], b[i]);
        return;
      }
    }
    if (a == b) return;
    std::string what = ": " + show_value(a) + " -> " + show_value(b);
    if (a.is_number() && b.is_number() && a.get<double>() != 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " (x%.4g)", b.get<double>() / a.get<double>());
      what += buf;
    }
    line("~", path, what);
  }
};

void diff(const std::string& path_a, const std::string& path_b) {
  const json a = read_config_file(path_a), b = read_config_file(path_b);
  const std::string kind_a = config_kind(a, path_a), kind_b = config_kind(b, path_b);
  if (kind_a != kind_b)
    throw UserError("config diff: '" + path_a + "' is a " + kind_a + " config, '" + path_b + "' is " + kind_b +
                    "; compare two configs of one kind");
  Differ d;
  d.walk("", a, b);
  if (d.count == 0)
    std::printf("%s and %s: the same %s config (provenance aside)\n", path_a.c_str(), path_b.c_str(), kind_a.c_str());
  else
    std::printf("%d difference%s (- only in %s, + only in %s, ~ changed)\n", d.count, d.count == 1 ? "" : "s",
                path_a.c_str(), path_b.c_str());
}

}  // namespace

void register_config(CLI::App& app) {
  auto* cmd = app.add_subcommand("config", "inspect and validate adam_mini / blockwise_lr / sgd_sai configs");
  cmd->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto* sh = cmd->add_subcommand("show", "summarize a config file");
  sh->add_option("FILE", *file, "config file")->required();
  sh->callback([file] { show(*file); });
  auto* ck = cmd->add_subcommand("check", "validate a config against a model");
  auto common = std::make_shared<CommonOptions>();
  ck->add_option("FILE", *file, "config file")->required();
  add_common_options(ck, *common);
  ck->callback([file, common] { check(*file, *common); });
  cmd->add_subcommand("rules", "print the parameter-name -> block-kind rules, in the order they are tried")
      ->callback([] { rules(); });
  auto* df = cmd->add_subcommand("diff", "how two configs of one kind differ: groups, multipliers, granularities, ...");
  auto other = std::make_shared<std::string>();
  df->add_option("A", *file, "the first config")->required();
  df->add_option("B", *other, "the second config")->required();
  df->callback([file, other] { diff(*file, *other); });
}

}  // namespace bs
