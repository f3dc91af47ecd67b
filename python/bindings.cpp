// blocksharp._core: the C++ library under the Python package (python/blocksharp). The registry's
// optimizers step PyTorch's own tensors in place (no copies: the tensors are the Python parameters);
// the curvature flows (Hessian-vector products, profile, structure) run on a TorchScript file of the
// user's module with their batches held in memory. optim.py and curvature.py are thin Python shells.
#include <pybind11/stl.h>
#include <torch/extension.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "dtype_words.h"
#include "emit_configs.h"
#include "errors.h"
#include "optimizer_setup.h"
#include "output_set.h"
#include "profile.h"
#include "provenance.h"
#include "registry.h"
#include "out_dir.h"
#include "run.h"
#include "slice_lr.h"
#include "structure.h"

namespace py = pybind11;
using namespace bs;

namespace {

// Configs as (where, JSON text): empty text reads `where` as a file.
std::vector<ConfigSource> config_sources(const std::vector<std::pair<std::string, std::string>>& configs) {
  std::vector<ConfigSource> out;
  for (const auto& [where, text] : configs) {
    if (text.empty()) {
      out.push_back({where, std::nullopt});
      continue;
    }
    try {
      out.push_back({where, json::parse(text)});
    } catch (const json::exception& e) {
      throw UserError("config '" + where + "': not JSON (" + e.what() + ")");
    }
  }
  return out;
}

ModelInfo python_model(const std::string& name, int64_t dim, int64_t n_heads, int64_t n_kv_heads) {
  ModelInfo info;
  info.name = name;
  info.family = "python";
  info.dim = dim;
  info.n_heads = n_heads;
  info.n_kv_heads = n_kv_heads > 0 ? n_kv_heads : n_heads;
  return info;
}

// Keyword arguments bound by name to the fields of an options struct: one table per struct, each
// entry a setter (given the keyword too, for its messages). An unknown keyword is a UserError naming `what`.
template <class O>
using Setter = std::function<void(O&, const py::handle&, const std::string&)>;
template <class O>
using Keywords = std::map<std::string, Setter<O>>;

template <class O>
void apply_keywords(O& o, const py::dict& kw, const Keywords<O>& table, const std::string& what) {
  for (const auto& [k, v] : kw) {
    const std::string key = py::str(k);
    const auto it = table.find(key);
    if (it == table.end()) throw UserError(what + "unknown option '" + key + "'");
    it->second(o, v, key);
  }
}

// A setter of the field `member` of `path(o)` from the keyword's Python value.
template <class O, class S, class T>
Setter<O> set(S& (*path)(O&), T S::*member) {
  return [path, member](O& o, const py::handle& v, const std::string&) { path(o).*member = v.cast<T>(); };
}
template <class O, class T>
Setter<O> set(T O::*member) {
  return [member](O& o, const py::handle& v, const std::string&) { o.*member = v.cast<T>(); };
}
// A setter of an enum field (of `path(o)`) from its word, by the CLI's table of words.
template <class O, class S, class E>
Setter<O> set_word(S& (*path)(O&), E S::*member, const Words<E>& words) {
  return [path, member, &words](O& o, const py::handle& v, const std::string& key) {
    path(o).*member = parse_word(key, v.cast<std::string>(), words);
  };
}
template <class O, class E>
Setter<O> set_word(E O::*member, const Words<E>& words) {
  return [member, &words](O& o, const py::handle& v, const std::string& key) {
    o.*member = parse_word(key, v.cast<std::string>(), words);
  };
}

ClipOptions& clip(OptimizerInputs& in) { return in.clip; }
ProjectionOptions& projection(OptimizerInputs& in) { return in.projection; }
FrugalOptions& frugal(OptimizerInputs& in) { return in.frugal; }
LrPolicy& lr_policy(EmitOptions& e) { return e.lr_policy; }

// The optimizer-specific options of optim.py's keyword arguments, by the CLI's names.
void apply_extra(OptimizerInputs& in, const py::dict& extra) {
  static const Keywords<OptimizerInputs> table = {
      {"clip_fraction", set(clip, &ClipOptions::fraction)},
      {"clip_scale", set(clip, &ClipOptions::threshold_scale)},
      {"rank", set(projection, &ProjectionOptions::rank)},
      {"update_proj_gap",
       [](OptimizerInputs& o, const py::handle& v, const std::string&) {
         o.projection.update_gap = o.frugal.update_gap = v.cast<int64_t>();
       }},
      {"scale", set(projection, &ProjectionOptions::scale)},
      {"scale_front", set(projection, &ProjectionOptions::scale_front)},
      {"disable_nl", set(projection, &ProjectionOptions::disable_nl)},
      {"seed", [](OptimizerInputs& o, const py::handle& v,
                  const std::string&) { o.projection.seed = o.frugal.seed = v.cast<uint64_t>(); }},
      {"selection", set_word(frugal, &FrugalOptions::selection, frugal_selection_words())},
      {"density", set(frugal, &FrugalOptions::density)},
      {"inactive_lr_scale", set(frugal, &FrugalOptions::inactive_lr_scale)},
      {"no_decay", set(&OptimizerInputs::no_decay)},
  };
  apply_keywords(in, extra, table, "");
}

// One registry optimizer over the caller's tensors. A fused tensor whose slices have their own
// blockwise rates runs at its fastest slice's rate and each slice's move is scaled to its own, as
// `blocksharp train` does (slice_lr.h).
class CoreOptimizer {
 public:
  CoreOptimizer(const std::string& name, const std::vector<std::string>& names,
                const std::vector<torch::Tensor>& params, double lr, double beta1, double beta2, double eps,
                std::vector<double> weight_decay, const py::dict& extra,
                const std::vector<std::pair<std::string, std::string>>& configs, int64_t dim, int64_t n_heads,
                int64_t n_kv_heads) {
    if (names.size() != params.size()) throw UserError("optimizer: names and parameters differ in number");
    NamedTensors named;
    for (size_t i = 0; i < names.size(); ++i) named.emplace_back(names[i], params[i]);
    OptimizerSetup setup =
        optimizer_setup(name, named, python_model("python", dim, n_heads, n_kv_heads), config_sources(configs));
    apply_extra(setup.inputs, extra);
    setup.inputs.weight_decay = std::move(weight_decay);
    OptimizerOptions o;
    o.lr = lr;
    o.beta1 = beta1;
    o.beta2 = beta2;
    o.eps = eps;
    o.weight_decay = setup.inputs.weight_decay.empty() ? 0.0 : setup.inputs.weight_decay.front();
    validate(o);
    for (double wd : setup.inputs.weight_decay)
      if (!(std::isfinite(wd) && wd >= 0)) throw UserError("weight_decay must be >= 0");
    m_params = setup.inputs.params;
    m_names = setup.inputs.names;
    m_opt = make_optimizer(name, setup.inputs, o);
    m_scale.assign(params.size(), 1.0);
    if (setup.blockwise) {
      const BlockwiseLr& bw = *setup.blockwise;
      m_multiplier = bw.multiplier;
      m_group = bw.group;
      for (size_t i = 0; i < params.size(); ++i) {
        if (bw.slices[i].empty()) continue;
        double top = 0;
        for (const auto& s : bw.slices[i]) top = std::max(top, s.multiplier);
        m_scale[i] = top / bw.multiplier[i];  // the tensor's group lr -> its fastest slice's
        for (const auto& s : bw.slices[i]) {
          m_slices.add(i, s.dim, s.begin, s.length);
          m_slice_factor.push_back(s.multiplier / top);
        }
      }
    }
  }

  // One step at the given per-tensor rates (each its param group's "lr").
  void step(const std::vector<double>& lrs) {
    if (lrs.size() != m_params.size()) throw UserError("step: one lr per parameter expected");
    for (size_t i = 0; i < m_params.size(); ++i)  // LibTorch's message would be "Cannot access data pointer"
      if (m_params[i].grad().defined() && m_params[i].grad().is_sparse())
        throw UserError("step: parameter '" + m_names[i] +
                        "' has a sparse gradient (nn.Embedding(sparse=True)); blocksharp optimizers take dense "
                        "gradients");
    std::vector<double> tensor_lrs(lrs.size());
    for (size_t i = 0; i < lrs.size(); ++i) tensor_lrs[i] = lrs[i] * m_scale[i];
    py::gil_scoped_release nogil;
    torch::NoGradGuard ng;
    m_slices.before_step(m_params);
    m_opt->set_lrs(tensor_lrs);
    m_opt->step();
    m_slices.after_step(m_params, [this](size_t k) { return m_slice_factor[k]; });
  }
  std::vector<std::pair<std::string, torch::Tensor>> state_dict() const { return m_opt->state_dict(); }
  void load_state_dict(const std::map<std::string, torch::Tensor>& d) {
    m_opt->load_state_dict([&d](const std::string& key) {
      const auto it = d.find(key);
      if (it == d.end()) throw UserError("load_state_dict: the state has no entry '" + key + "'");
      return it->second;
    });
  }
  int64_t state_bytes() const { return m_opt->state_bytes(); }
  const std::vector<double>& multipliers() const { return m_multiplier; }
  const std::vector<std::string>& groups() const { return m_group; }

 private:
  std::unique_ptr<Optimizer> m_opt;
  std::vector<torch::Tensor> m_params;
  std::vector<std::string> m_names;
  std::vector<double> m_scale, m_multiplier;
  std::vector<std::string> m_group;
  SliceMoves m_slices;
  std::vector<double> m_slice_factor;  // each slice's multiplier over its tensor's fastest
};

// The caller's batches, in order and wrapping (the CLI's unshuffled .h5 data).
class MemoryData : public DataSource {
 public:
  explicit MemoryData(std::vector<Batch> b) : m_b(std::move(b)) {
    if (m_b.empty()) throw UserError("batches: no (inputs, targets) pair given");
  }
  Batch train_batch(int64_t i) const override { return m_b[static_cast<size_t>(i) % m_b.size()]; }
  int64_t n_val_batches() const override { return static_cast<int64_t>(m_b.size()); }
  Batch val_batch(int64_t i) const override { return train_batch(i); }
  std::string describe() const override { return std::to_string(m_b.size()) + " batches from Python"; }

 private:
  std::vector<Batch> m_b;
};

std::vector<Batch> to_batches(const std::vector<std::pair<torch::Tensor, torch::Tensor>>& pairs) {
  std::vector<Batch> out;
  for (const auto& [x, y] : pairs) out.push_back({x.detach().contiguous(), y.detach().contiguous()});
  return out;
}

// A Run over a TorchScript file and in-memory batches, as the CLI's open_session builds one.
struct PySession {
  Run s;
  PySession(const std::string& path, const std::string& name,
            const std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches, const std::string& loss,
            const std::string& dtype, uint64_t seed, int64_t dim, int64_t n_heads, int64_t n_kv_heads) {
    s.model = name;
    s.data_name = "python batches";
    s.seed = seed;
    s.batch_size = batches.empty() ? 0 : batches.front().first.size(0);
    s.loss = loss_kind_from_string(loss);
    s.dtype = parse_word(param("dtype"), dtype, dtype_words());
    s.net = load_torchscript(path);
    const ModelInfo dims = python_model(name, dim, n_heads, n_kv_heads);
    auto& info = s.net->info();
    info.name = name;
    info.dim = dims.dim;
    info.n_heads = dims.n_heads;
    info.n_kv_heads = dims.n_kv_heads;
    s.data = std::make_unique<MemoryData>(to_batches(batches));
    s.net->to(s.dtype);
    s.net->set_train(false);
  }
};

struct PyOperator {
  std::shared_ptr<PySession> session;  // holds the network the operator's graphs refer to
  std::unique_ptr<HvpOperator> H;
};

py::dict eig_dict(const EigResult& e) {
  py::dict d;
  d["eigenvalues"] = e.values;
  d["residuals"] = e.residuals;
  d["status"] = describe_status(e);
  d["products"] = e.n_products;
  d["error_bounds"] = e.error_bounds;
  return d;
}

// profile's result: the numbers as Python values, and the CLI's files on request.
class ProfileResult {
 public:
  ProfileResult(std::shared_ptr<PySession> s, Profile p, ProfileOptions o)
      : m_s(std::move(s)), m_p(std::move(p)), m_o(o) {}
  py::dict as_dict() const {
    py::dict d;
    d["loss"] = m_p.loss;
    d["eigen"] = eig_dict(m_p.global);
    d["trace"] = m_p.trace.trace;
    d["trace_stderr"] = m_p.trace.std_error;
    d["density"] = py::dict(py::arg("grid") = m_p.density.grid, py::arg("values") = m_p.density.values);
    py::list blocks, kinds;
    for (const auto& b : m_p.blocks)
      blocks.append(py::dict(
          py::arg("name") = b.name, py::arg("tensor") = b.tensor, py::arg("kind") = to_string(b.kind),
          py::arg("numel") = b.numel, py::arg("trace") = b.trace, py::arg("trace_stderr") = b.trace_stderr,
          py::arg("avg_sharpness") = b.avg_sharpness, py::arg("lambda_max") = b.lambda_max, py::arg("gsnr") = b.gsnr,
          py::arg("gn_diag_avg") = b.gn_diag_avg, py::arg("noise_scale") = b.noise.b_simple));
    for (const auto& k : m_p.kinds)
      kinds.append(py::dict(py::arg("kind") = to_string(k.kind), py::arg("numel") = k.numel,
                            py::arg("n_tensors") = k.n_tensors, py::arg("trace") = k.trace,
                            py::arg("trace_stderr") = k.trace_stderr, py::arg("avg_sharpness") = k.avg_sharpness,
                            py::arg("lambda_max") = k.lambda_max, py::arg("noise_scale") = k.noise.b_simple));
    d["blocks"] = blocks;
    d["kinds"] = kinds;
    d["noise"] = py::dict(py::arg("scale") = m_p.noise.b_simple, py::arg("tr_sigma") = m_p.noise.tr_sigma,
                          py::arg("g_sq") = m_p.noise.g_sq, py::arg("batches") = m_p.noise_batches,
                          py::arg("rows") = m_p.noise_rows);
    d["n_hvp"] = m_p.n_hvp_total;
    d["seconds"] = m_p.seconds;
    return d;
  }
  // DIR/profile.h5 and the three configs, committed together as `blocksharp profile` does.
  void write(const std::string& dir, const EmitOptions& e) {
    validate(e);
    prepare_out_dir(dir);
    validate(e, m_s->s);
    write_profile_set(dir, m_s->s, m_p, m_o, e);
  }

 private:
  std::shared_ptr<PySession> m_s;
  Profile m_p;
  ProfileOptions m_o;
};

ProfileOptions profile_options(const py::dict& kw) {
  static const Keywords<ProfileOptions> table = {
      {"topk", set(&ProfileOptions::topk)},
      {"probes", set(&ProfileOptions::probes)},
      {"batches", set(&ProfileOptions::batches)},
      {"density_runs", set(&ProfileOptions::density_runs)},
      {"density_steps", set(&ProfileOptions::density_steps)},
      {"reorth", set(&ProfileOptions::reorth)},
      {"tol", set(&ProfileOptions::tol)},
      {"gn_samples", set(&ProfileOptions::gn_samples)},
      {"keep_graphs", set(&ProfileOptions::keep_graphs)},
      {"eig_accuracy", set(&ProfileOptions::eig_accuracy)},
      {"noise_batches", set(&ProfileOptions::noise_batches)},
      {"curvature", set_word(&ProfileOptions::curvature, curvature_words())},
      {"method", set_word(&ProfileOptions::method, eig_method_words())},
      {"which", set_word(&ProfileOptions::which, eig_which_words())},
      {"block_eigs", set_word(&ProfileOptions::block_eigs, block_eigs_words())},
      {"trace_estimator", set_word(&ProfileOptions::trace_estimator, trace_estimator_words())},
  };
  ProfileOptions o;
  apply_keywords(o, kw, table, "profile: ");
  return o;
}

EmitOptions emit_options(const py::dict& kw) {
  static const Keywords<EmitOptions> table = {
      {"adam_mini", set_word(&EmitOptions::adam_mini, adam_mini_mode_words())},
      {"lr_policy", set_word(lr_policy, &LrPolicy::kind, lr_policy_words())},
      {"lr_exponent", set(lr_policy, &LrPolicy::exponent)},
      {"lr_min_multiplier", set(lr_policy, &LrPolicy::min_multiplier)},
      {"lr_max_multiplier", set(lr_policy, &LrPolicy::max_multiplier)},
      {"structure_threshold", set(&EmitOptions::structure_threshold)},
      {"group_patterns", set(&EmitOptions::group_patterns)},
      {"gsnr_batches", set(&EmitOptions::gsnr_batches)},
  };
  EmitOptions e;
  apply_keywords(e, kw, table, "write_configs: ");
  return e;
}

// How this module names a library parameter in messages: its keyword argument (most keep the
// library's name).
std::string keyword_of(const std::string& parameter) {
  static const std::map<std::string, std::string> renamed = {{"beta1", "betas[0]"},
                                                             {"beta2", "betas[1]"},
                                                             {"dim", "dim="},
                                                             {"n_heads", "n_heads="},
                                                             {"frugal_selection", "selection"},
                                                             {"proj_scale", "scale"},
                                                             {"group_pattern", "group_patterns"}};
  const auto it = renamed.find(parameter);
  return it == renamed.end() ? parameter : it->second;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "blocksharp's C++ library: the registry's optimizers and the curvature flows";
  set_parameter_names(keyword_of);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const UserError& e) {
      PyErr_SetString(PyExc_ValueError, spelled(e.message).c_str());
    }
  });

  // What provenance records as the command line of the files this process writes.
  m.def("set_command_line", [](const std::string& line) { set_invocation(line); });

  m.def("optimizers", [] {
    py::list out;
    for (const auto& e : optimizer_registry()) {
      const auto& d = e.defaults;
      out.append(py::dict(py::arg("name") = e.name, py::arg("what") = spelled(e.what), py::arg("lr") = d.lr,
                          py::arg("betas") = py::make_tuple(d.beta1, d.beta2), py::arg("eps") = d.eps,
                          py::arg("weight_decay") = d.weight_decay, py::arg("configs") = e.configs,
                          py::arg("needs_partition") = e.needs_partition,
                          py::arg("other_defaults") = spelled(e.other_defaults)));
    }
    return out;
  });

  py::class_<CoreOptimizer>(m, "Optimizer")
      .def(py::init<const std::string&, const std::vector<std::string>&, const std::vector<torch::Tensor>&, double,
                    double, double, double, std::vector<double>, const py::dict&,
                    const std::vector<std::pair<std::string, std::string>>&, int64_t, int64_t, int64_t>())
      .def("step", &CoreOptimizer::step)
      .def("state_dict", &CoreOptimizer::state_dict)
      .def("load_state_dict", &CoreOptimizer::load_state_dict)
      .def("state_bytes", &CoreOptimizer::state_bytes)
      .def("multipliers", &CoreOptimizer::multipliers)
      .def("groups", &CoreOptimizer::groups);

  py::class_<PySession, std::shared_ptr<PySession>>(m, "Session")
      .def(py::init<const std::string&, const std::string&, const std::vector<std::pair<torch::Tensor, torch::Tensor>>&,
                    const std::string&, const std::string&, uint64_t, int64_t, int64_t, int64_t>())
      .def("parameter_names", [](const PySession& p) {
        std::vector<std::string> n;
        for (const auto& [name, t] : p.s.net->named_parameters()) n.push_back(name);
        return n;
      });

  // One operator over the session's first n_batches batches, graphs built once: for scipy's eigsh and
  // other matrix-free solvers, each product counted.
  py::class_<PyOperator>(m, "Operator")
      .def(py::init([](std::shared_ptr<PySession> p, int64_t n_batches, const std::string& curvature) {
        std::vector<Batch> b;
        for (int64_t i = 0; i < n_batches; ++i) b.push_back(p->s.train_batch(i));
        const Curvature kind = parse_word(param("curvature"), curvature, curvature_words());
        py::gil_scoped_release nogil;
        return std::make_unique<PyOperator>(PyOperator{
            p,
            std::make_unique<HvpOperator>(*p->s.net, b, p->s.loss, p->s.data_name, OperatorOptions{kind, p->s.seed})});
      }))
      .def("apply",
           [](PyOperator& o, const torch::Tensor& v) {
             const auto in = v.detach().to(o.H->dtype()).contiguous();
             py::gil_scoped_release nogil;
             return o.H->apply(in);
           })
      .def_property_readonly("size", [](const PyOperator& o) { return o.H->size(); })
      .def_property_readonly("n_products", [](const PyOperator& o) { return o.H->n_hvp(); })
      .def_property_readonly("loss", [](const PyOperator& o) { return o.H->loss(); })
      .def_property_readonly("gradient", [](const PyOperator& o) { return o.H->gradient(); });

  py::class_<ProfileResult>(m, "ProfileResult")
      .def("as_dict", &ProfileResult::as_dict)
      .def("write", [](ProfileResult& r, const std::string& dir, const py::dict& kw) {
        const EmitOptions e = emit_options(kw);
        py::gil_scoped_release nogil;  // LibTorch's autograd engine refuses to run under the GIL
        r.write(dir, e);
      });
  m.def("profile", [](std::shared_ptr<PySession> p, const py::dict& kw) {
    const ProfileOptions o = profile_options(kw);
    Profile prof;
    {
      py::gil_scoped_release nogil;
      prof = run_profile(p->s.context(), o);
    }
    return ProfileResult(p, std::move(prof), o);
  });

  m.def("structure",
        [](PySession& p, const std::vector<std::string>& params, double threshold, int64_t max_dense, int64_t per_pass,
           int64_t probes, int64_t batches, const std::string& out, const std::string& curvature) {
          StructureOptions o;
          o.curvature = parse_word(param("curvature"), curvature, curvature_words());
          o.params = params;
          o.threshold = threshold;
          o.max_dense = max_dense;
          o.per_pass = per_pass;
          o.probes = probes;
          o.batches = batches;
          StructureResult r;
          {
            py::gil_scoped_release nogil;
            r = run_structure(p.s.context(), o);
            if (!out.empty()) {
              prepare_out_dir(out);
              write_structure_h5(out + "/structure.h5", r, p.s.context(), o);
            }
          }
          py::list cands;
          for (size_t i = 0; i < r.candidates.size(); ++i) {
            const auto& c = r.candidates[i];
            cands.append(py::dict(py::arg("name") = c.name, py::arg("n_blocks") = c.n_blocks,
                                  py::arg("fraction") = c.fraction, py::arg("fraction_stderr") = c.fraction_stderr,
                                  py::arg("block_of") = c.block_of));
          }
          py::dict d;
          d["candidates"] = cands;
          d["recommended"] = r.candidates[r.best].name;
          d["dense"] = r.dense;
          d["hessian"] = r.hessian;
          d["products"] = r.n_hvp;
          return d;
        });
}
