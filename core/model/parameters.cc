#include "core/model/parameters.h"

#include <cmath>

#include "core/tensor/philox.h"

namespace sw {

Tensor ParameterStore::add(const std::string& name, const Tensor& tensor, const InitRule& init,
                           const Split& split) {
  SW_CHECK(!index_.count(name), Status::kInternal, "parameter ", name, " registered twice");
  index_[name] = entries_.size();
  entries_.push_back({name, tensor, init, next_site_++, split});
  return tensor;
}

Tensor ParameterStore::add_buffer(const std::string& name, const Tensor& tensor) {
  SW_CHECK(!index_.count(name), Status::kInternal, "parameter ", name, " registered twice");
  index_[name] = entries_.size();
  entries_.push_back({name, tensor, InitRule{InitRule::Kind::kZeros}, 0, Split{}, false});
  return tensor;
}

const Tensor& ParameterStore::get(const std::string& name) const {
  const auto it = index_.find(name);
  SW_CHECK(it != index_.end(), Status::kNotFound, "no parameter named \"", name, "\"");
  return entries_[it->second].tensor;
}

std::vector<std::string> ParameterStore::names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const Entry& e : entries_) names.push_back(e.name);
  return names;
}

int64_t ParameterStore::num_elements() const {
  int64_t n = 0;
  for (const Entry& e : entries_) n += e.tensor.numel();
  return n;
}

void ParameterStore::set(const std::string& name, const Tensor& values) {
  Tensor target = get(name);
  SW_CHECK_ARG(values.shape() == target.shape(), "parameter ", name, ": expected shape ",
               shape_str(target.shape()), ", got ", shape_str(values.shape()));
  SW_CHECK_ARG(is_floating(values.dtype()), "parameter ", name,
               ": values must be floating point, got ", dtype_name(values.dtype()));
  target.copy_from(values.to(target.dtype()));
}

Tensor& GradientBuffer::of(const Tensor& parameter) {
  Tensor& g = grads_[{static_cast<const char*>(parameter.raw()), parameter.numel(),
                      dtype_size(parameter.dtype())}];
  if (!g.defined())
    g = Tensor::zeros(parameter.shape(), gradient_dtype(parameter.dtype()), parameter.device());
  return g;
}

void GradientBuffer::zero() {
  for (auto& entry : grads_)
    fill_zero(entry.second.raw(), entry.second.device(), entry.second.nbytes());
}

Tensor GradientBuffer::find(const Tensor& parameter) const {
  const char* data = static_cast<const char*>(parameter.raw());
  const int64_t n = parameter.numel();
  for (const auto& [key, g] : grads_) {
    if (data < key.data || n == 0 || key.numel % n != 0 ||
        key.element_bytes != dtype_size(parameter.dtype()))
      continue;
    // Elements of the parameter's storage (its gradient's dtype may be wider).
    const int64_t offset = (data - key.data) / static_cast<int64_t>(key.element_bytes);
    if (offset + n > key.numel || offset % n != 0) continue;
    // The parameter is slice offset / n of the tensor the gradient was kept for.
    return g.view({key.numel / n, n}).slice(offset / n, offset / n + 1).view(parameter.shape());
  }
  return Tensor();
}

Tensor GradientBuffer::at(const Tensor& parameter) {
  const Tensor found = find(parameter);
  return found.defined() ? found : of(parameter);
}

std::vector<std::pair<std::string, Tensor>> GradientBuffer::by_name(
    const ParameterStore& store) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& e : store.entries()) {
    const Tensor grad = find(e.tensor);
    out.push_back({e.name, grad.defined()
                               ? grad
                               : Tensor::zeros(e.tensor.shape(), gradient_dtype(e.tensor.dtype()),
                                               e.tensor.device())});
  }
  return out;
}

namespace {

// Element i of a truncated standard normal after `first` rejected attempts: attempt k
// reads step k of the stream, until |z| <= 2.
double redraw_truncated_normal(uint64_t seed, uint32_t site, uint64_t i, uint64_t first) {
  for (uint64_t attempt = first;; ++attempt) {
    const double z = RandomStream(seed, RandomPurpose::kInit, site, attempt).normal(i);
    if (std::fabs(z) <= 2.0) return z;
  }
}

template <typename T>
void fill_normal(T* p, int64_t n, double std, uint64_t seed, uint32_t site, bool truncated) {
  SW_CHECK(static_cast<uint64_t>(n) <= kMaxStreamElements, Status::kUnsupported,
           "initialize: a parameter of ", n, " elements exceeds one random stream (2^34)");
  const RandomStream first_draw(seed, RandomPurpose::kInit, site, 0);
  const int64_t blocks = (n + 3) / 4;
  // Four normals per Philox block; the few a truncation rejects are redrawn one by one.
#pragma omp parallel for if (n > 16384)
  for (int64_t b = 0; b < blocks; ++b) {
    double z[4];
    RandomStream::normals_from_block(first_draw.block(static_cast<uint32_t>(b)), z);
    for (int64_t j = 0; j < 4 && b * 4 + j < n; ++j) {
      const int64_t i = b * 4 + j;
      const bool rejected = truncated && std::fabs(z[j]) > 2.0;
      p[i] = static_cast<T>(std * (rejected ? redraw_truncated_normal(seed, site, i, 1) : z[j]));
    }
  }
}

}  // namespace

void initialize(ParameterStore& store, ModelConfig::InitScheme scheme, double init_scale,
                uint64_t seed) {
  for (const auto& e : store.entries()) {
    // Drawn on the host in f32 or f64; a GPU or bf16 parameter receives a converted copy.
    const bool direct = e.tensor.device().is_cpu() && e.split.whole() &&
                        (e.tensor.dtype() == DType::f32 || e.tensor.dtype() == DType::f64);
    const DType draw = e.tensor.dtype() == DType::f64 ? DType::f64 : DType::f32;
    Tensor t = direct ? e.tensor : Tensor::empty(e.split.full_shape(e.tensor.shape()), draw);
    const InitRule& r = e.init;
    const uint32_t site = e.site;
    if (r.kind == InitRule::Kind::kOnes) {
      t.fill(1.0);
    } else if (r.kind == InitRule::Kind::kZeros) {
      t.fill(0.0);
    } else {
      const bool paper = scheme == ModelConfig::INIT_PAPER;
      const double std =
          !paper         ? r.hf_std
          : r.unit_scale ? 1.0
                         : std::sqrt(init_scale / static_cast<double>(r.fan_in)) * r.extra_scale;
      if (t.dtype() == DType::f32)
        fill_normal(t.data<float>(), t.numel(), std, seed, site, paper);
      else
        fill_normal(t.data<double>(), t.numel(), std, seed, site, paper);
    }
    if (!direct) Tensor(e.tensor).copy_from(take_part(t, e.split).to(e.tensor.dtype()));
  }
}

}  // namespace sw
