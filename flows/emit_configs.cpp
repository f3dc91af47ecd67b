// Config emission. Measured Adam-mini evidence: for each kind with matrices (QK, VO, FFN, Emb, Head) the
// first such tensor's Hessian is scored against the candidate partitions (structure.h).
#include "emit_configs.h"

#include <cmath>
#include <cstdio>

#include "adam_mini_partition.h"
#include "errors.h"
#include "sgd_sai_config.h"
#include "structure.h"

namespace bs {

namespace {

// Tensor i's Hessian block scored against `cands`: exactly from the dense block when it has at most
// structure_max_dense entries, else by the randomized estimate. Returns which ("dense", "randomized").
const char* score_block(HvpOperator& H, size_t i, const EmitOptions& o, uint64_t seed, std::vector<Candidate>& cands) {
  const int64_t n = H.table().at(i).numel;
  if (n <= o.structure_max_dense) {
    score_dense(dense_matrix(H.block_op({i}), n), cands);
    return "dense";
  }
  score_randomized(H.block_op({i}), n, o.structure_probes, seed, cands);
  return "randomized";
}

std::map<BlockKind, KindEvidence> structure_evidence(Run& s, const EmitOptions& o) {
  HvpOperator H(*s.net, {s.train_batch(0)}, s.loss, s.data_name);
  const ParamTable& t = H.table();
  const ModelInfo& info = s.net->info();
  std::map<BlockKind, KindEvidence> out;
  for (BlockKind kind : {BlockKind::QK, BlockKind::VO, BlockKind::FFN, BlockKind::Emb, BlockKind::Head}) {
    for (size_t i = 0; i < t.size(); ++i) {
      const auto& e = t.at(i);
      if (e.kind != kind || e.shape.size() != 2) continue;
      const bool attention = kind == BlockKind::QK || kind == BlockKind::VO;
      auto cands = candidate_partitions(e.shape, attention && info.n_heads > 0 ? info.dim / info.n_heads : 0);
      KindEvidence ev;
      ev.sampled_param = e.name;
      ev.threshold = o.structure_threshold;
      ev.method = score_block(H, i, o, s.seed, cands);
      for (const auto& c : cands) {
        ev.candidates.push_back(c.name);
        ev.n_blocks.push_back(c.n_blocks);
        ev.fractions.push_back(c.fraction);
      }
      // Adam-mini blocks are contiguous row ranges: per-column is scored but never chosen.
      std::vector<Candidate> usable;
      for (const auto& c : cands)
        if (c.name != "per-column") usable.push_back(c);
      ev.recommended = recommend(usable, o.structure_threshold).name;
      out[kind] = ev;
      break;
    }
  }
  return out;
}

Candidate candidate(const std::string& name, const torch::Tensor& ids) {
  Candidate c;
  c.name = name;
  const auto flat = ids.reshape({-1}).contiguous();
  c.block_of.assign(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  c.n_blocks = flat.numel() ? flat.max().item<int64_t>() + 1 : 0;
  return c;
}

// --adam-mini slices: the first fused q/k/v weight's Hessian block scored against cuts of it: whole, one
// block per slice, the sliced partition (q/k per head, v per output unit), per output unit, per element.
json slice_evidence(Run& s, const EmitOptions& o, const Partition& part) {
  HvpOperator H(*s.net, {s.train_batch(0)}, s.loss, s.data_name);
  const ParamTable& t = H.table();
  for (size_t i = 0; i < t.size(); ++i) {
    const auto& e = t.at(i);
    if (e.slices.empty()) continue;
    const ParamBlock& sliced = part.params[i];
    const torch::Tensor ids = block_ids(sliced);
    auto per_slice = ids.clone();  // block id -> its slice's index
    int64_t base = 0, r = 0;
    for (const auto& reg : sliced.regions) {
      per_slice.masked_fill_((ids >= base) & (ids < base + reg.count), r++);
      base += reg.count;
    }
    std::vector<Candidate> cands = {candidate("whole", torch::zeros_like(ids)), candidate("per-slice", per_slice),
                                    candidate("sliced", ids),
                                    candidate("per-output-unit", block_ids(make_sliced_block(e, 1))),
                                    candidate("per-element", torch::arange(e.numel).view(e.shape))};
    const std::string method = score_block(H, i, o, s.seed, cands);
    json names = json::array(), blocks = json::array(), fractions = json::array();
    for (const auto& c : cands) {
      names.push_back(c.name);
      blocks.push_back(c.n_blocks);
      fractions.push_back(c.fraction);
    }
    return {{"sampled_param", e.name},
            {"method", method},
            {"candidates", names},
            {"n_blocks", blocks},
            {"diagonal_mass_fraction", fractions},
            {"used", "sliced"},
            {"note",
             "fused q/k/v weights cut per slice: q and k per head, v per output unit, as the official rules "
             "cut separate q_proj/k_proj/v_proj; every other tensor as the official v1.1.1 rules"}};
  }
  return {{"note", "no fused q/k/v weight in this model: the partition equals the official v1.1.1 rules"}};
}

}  // namespace

const char* to_string(AdamMiniMode m) {
  return m == AdamMiniMode::Measured ? "measured" : m == AdamMiniMode::Slices ? "slices" : "rules";
}

void validate(const EmitOptions& o) {
  if (!(o.structure_threshold > 0 && o.structure_threshold <= 1))
    throw UserError(param("structure_threshold") + " must be in (0, 1]");
  if (o.gsnr_batches < 1) throw UserError(param("gsnr_batches") + " must be at least 1");
  blockwise_lr_config(ParamTable(), ModelInfo(), {}, o.lr_policy, parse_group_patterns(o.group_patterns));
}

void validate(const EmitOptions& o, Run& s) {
  if (o.adam_mini == AdamMiniMode::Slices) adam_mini_slices(ParamTable(s.net->named_parameters()), s.net->info());
}

void emit_configs(Run& s, const Profile& p, const EmitOptions& o, const std::string& dir, OutputSet& set) {
  const ParamTable table(s.net->named_parameters());
  const ModelInfo& info = s.net->info();
  json evidence = json::object();
  Partition part;
  if (o.adam_mini == AdamMiniMode::Measured) {
    part = adam_mini_measured(table, info, structure_evidence(s, o), evidence);
    for (auto& [kind, ev] : evidence.items())
      for (const auto& sw : ev["switched"])
        std::printf("adam-mini: %s (%s) measured as %s, the official rules use %s (evidence in adam_mini.json)\n",
                    sw["name"].get<std::string>().c_str(), kind.c_str(), sw["to"].get<std::string>().c_str(),
                    sw["from"].get<std::string>().c_str());
  } else if (o.adam_mini == AdamMiniMode::Slices) {
    part = adam_mini_slices(table, info);
    evidence = slice_evidence(s, o, part);
  } else {
    part = adam_mini_rules(table, info);
    evidence = {
        {"note", "official Adam-mini v1.1.1 name rules; measure the structure (Adam-mini mode measured) for evidence"}};
  }
  const json am = adam_mini_to_json(part, info, to_string(o.adam_mini), evidence);

  std::vector<double> traces, trace_se;  // per measured block: fused q/k/v slices join their own groups
  for (const auto& b : p.blocks) traces.push_back(b.trace), trace_se.push_back(b.trace_stderr);
  const bool sliced = table.blocks().size() != table.size();  // g-SNR is per tensor: recomputed below
  const json bw =
      blockwise_lr_config(table, info, traces, o.lr_policy, parse_group_patterns(o.group_patterns), trace_se);
  if (o.lr_policy.kind != LrPolicyKind::Paper && !bw["policy"]["unresolved_groups"].empty()) {
    std::string list;  // one warning: which groups, their sharpness and its standard error
    for (const auto& g : bw["groups"])
      if (!g["sharpness_resolved"].get<bool>()) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s%s (%.3g +- %.2g)", list.empty() ? "" : ", ",
                      g["group"].get<std::string>().c_str(),
                      g["avg_sharpness"].is_number() ? g["avg_sharpness"].get<double>() : NAN,
                      g["avg_sharpness_stderr"].is_number() ? g["avg_sharpness_stderr"].get<double>() : NAN);
        list += buf;
      }
    warn(param("lr_policy") + " " + bw["policy"]["name"].get<std::string>() + ": sharpness not resolved above 0 for " +
         list + "; " +
         (bw["policy"]["derived_groups"].empty() ? "fewer than two groups are resolved, so every group keeps"
                                                 : "they keep") +
         " the paper multipliers (an indefinite Hessian, as at initialisation: profile a trained checkpoint, or "
         "use more " +
         param("probes") + ")");
  }

  std::vector<double> g;
  if (o.gsnr_batches == 1 && !sliced)
    for (const auto& b : p.blocks) g.push_back(b.gsnr);
  else
    g = gsnr_over_batches(s.context(), o.gsnr_batches);
  const json sai = sgd_sai_config(table, info, g, o.gsnr_batches, s.batch_size, 1e-8);

  for (const auto& [name, j] : {std::pair<const char*, const json*>{"adam_mini.json", &am},
                                {"blockwise_lr.json", &bw},
                                {"sgd_sai.json", &sai}}) {
    json with_id = *j;
    with_id["set_id"] = set.id();  // the profile run these came from (DIR/manifest.json)
    set.write_text(dir + "/" + name, with_id.dump(2) + "\n");
  }
  std::printf("adam-mini state: %.4f of AdamW's; writing %s/adam_mini.json, blockwise_lr.json, sgd_sai.json\n",
              am["state"]["adam_mini_over_adamw"].get<double>(), dir.c_str());
}

void write_profile_set(const std::string& dir, Run& s, const Profile& p, const ProfileOptions& po,
                       const EmitOptions& o) {
  OutputSet set(dir, "profile");
  write_profile_h5(dir + "/profile.h5", p, s.context(), po, &set);
  emit_configs(s, p, o, dir, set);
  set.commit();
}

}  // namespace bs
