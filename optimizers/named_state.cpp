// StateWriter / StateReader (optimizer.h): the one layout of every optimizer's named state.
#include "errors.h"
#include "optimizer.h"

namespace bs {

StateWriter& StateWriter::tensor(size_t i, const std::string& key, const torch::Tensor& t) {
  m_d.emplace_back(m_names[i] + "/" + key, t);
  return *this;
}
StateWriter& StateWriter::integer(size_t i, const std::string& key, int64_t v) {
  return tensor(i, key, torch::tensor(v, torch::kInt64));
}
StateWriter& StateWriter::real(size_t i, const std::string& key, double v) {
  return tensor(i, key, torch::tensor(v, torch::kFloat64));
}
StateWriter& StateWriter::global(const std::string& key, int64_t v) {
  m_d.emplace_back(key, torch::tensor(v, torch::kInt64));
  return *this;
}
StateDict StateWriter::finish(int64_t step) {
  global("step", step);
  return std::move(m_d);
}

torch::Tensor StateReader::tensor(size_t i, const std::string& key, torch::ScalarType dtype) const {
  return raw(i, key).to(dtype).contiguous();
}
void StateReader::copy_into(size_t i, const std::string& key, torch::Tensor& into) const {
  const auto t = raw(i, key);
  if (t.numel() != into.numel()) throw UserError("optimizer state '" + m_names[i] + "/" + key + "' has the wrong size");
  into.copy_(t.reshape(into.sizes()));
}
int64_t StateReader::integer(size_t i, const std::string& key) const { return raw(i, key).item<int64_t>(); }
double StateReader::real(size_t i, const std::string& key) const { return raw(i, key).item<double>(); }
int64_t StateReader::global(const std::string& key) const { return m_get(key).item<int64_t>(); }

}  // namespace bs
