// `blocksharp config show FILE` summarizes a config; `config check FILE --model ...` validates it
// against a model (names, shapes, block sizes), exactly as an optimizer would on load; `config rules`
// prints the name -> block-kind table.
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
}

}  // namespace bs
