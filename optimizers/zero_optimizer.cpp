// ZeRO-1 wrapper: subset inputs -> inner optimizer; after its step one broadcast per owner rank (its
// tensors packed flat); state_dict gathers every rank's shard so checkpoints hold the full state.
#include "zero_optimizer.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "distributed.h"
#include "errors.h"
#include "registry.h"

namespace bs {

std::vector<int> zero1_owners(const std::vector<int64_t>& numel, int world) {
  std::vector<size_t> order(numel.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return numel[a] > numel[b]; });
  std::vector<int64_t> load(static_cast<size_t>(world), 0);
  std::vector<int> owner(numel.size(), 0);
  for (size_t i : order) {
    const int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = r;
    load[static_cast<size_t>(r)] += numel[i];
  }
  return owner;
}

namespace {

class Zero1 : public Optimizer {
 public:
  Zero1(std::string name, const OptimizerInputs& in, const OptimizerOptions& o)
      : m_name(std::move(name)), m_params(in.params) {
    std::vector<int64_t> numel;
    for (const auto& p : in.params) numel.push_back(p.numel());
    const std::vector<int> owner = zero1_owners(numel, dist::world_size());
    m_owned_by.resize(static_cast<size_t>(dist::world_size()));
    for (size_t i = 0; i < in.params.size(); ++i) m_owned_by[static_cast<size_t>(owner[i])].push_back(i);
    OptimizerInputs mine = in;
    mine.names.clear();
    mine.params.clear();
    mine.partition.params.clear();
    mine.gsnr.clear();
    mine.index.clear();
    for (size_t i : mine_indices()) {
      mine.names.push_back(in.names[i]);
      mine.params.push_back(in.params[i]);
      if (!in.partition.params.empty()) mine.partition.params.push_back(in.partition.params[i]);
      if (!in.gsnr.empty()) mine.gsnr.push_back(in.gsnr[i]);
      mine.index.push_back(in.model_index(i));
    }
    if (!mine.params.empty()) m_inner = make_optimizer(m_name, mine, o);
  }

  std::string name() const override { return m_name; }  // same state keys as unsharded: checkpoints interchange

  void set_lrs(const std::vector<double>& lrs) override {
    if (!m_inner) return;
    std::vector<double> mine;
    for (size_t i : mine_indices()) mine.push_back(lrs.at(i));
    m_inner->set_lrs(mine);
  }

  void step() override {
    if (m_inner) m_inner->step();
    torch::NoGradGuard g;
    for (int r = 0; r < dist::world_size(); ++r) {
      const auto& owned = m_owned_by[static_cast<size_t>(r)];
      if (owned.empty()) continue;
      std::vector<torch::Tensor> flat_parts;
      for (size_t i : owned) flat_parts.push_back(m_params[i].detach().reshape({-1}));
      auto flat = torch::cat(flat_parts);
      dist::broadcast_(flat, r);
      if (r == dist::rank()) continue;
      int64_t off = 0;
      for (size_t i : owned) {
        m_params[i].detach().copy_(flat.narrow(0, off, m_params[i].numel()).view_as(m_params[i]));
        off += m_params[i].numel();
      }
    }
  }

  StateDict state_dict() const override {
    const StateDict all = dist::all_gather_named(m_inner ? m_inner->state_dict() : StateDict{});
    StateDict out;
    std::set<std::string> seen;  // "step" comes from every rank; keep one
    for (const auto& [key, t] : all)
      if (seen.insert(key).second) out.emplace_back(key, t);
    return out;
  }

  void load_state_dict(const StateLookup& get) override {
    if (m_inner) m_inner->load_state_dict(get);
  }

  int64_t state_bytes() const override { return m_inner ? m_inner->state_bytes() : 0; }

 private:
  std::string m_name;
  std::vector<torch::Tensor> m_params;
  const std::vector<size_t>& mine_indices() const { return m_owned_by[static_cast<size_t>(dist::rank())]; }

  std::vector<std::vector<size_t>> m_owned_by;  // per rank, its tensors in model order
  std::unique_ptr<Optimizer> m_inner;
};

}  // namespace

std::unique_ptr<Optimizer> make_zero1(const std::string& name, const OptimizerInputs& in, const OptimizerOptions& o) {
  // Unknown names and bad hyperparameters fail here on every rank, also on one that owns no tensor.
  const OptimizerEntry& entry = find_optimizer(name);
  if (!entry.couples_tensors.empty())
    throw UserError(param("zero1") + ": " + param("optimizer") + " " + name + " couples all tensors in one update (" +
                    entry.couples_tensors + "), so its state cannot be sharded by tensor");
  validate(o);
  return std::make_unique<Zero1>(name, in, o);
}

}  // namespace bs
