#include "core/dist/model_parallel.h"

#include <cstring>

#include "core/tensor/error.h"

namespace sw {
namespace {

// Tensor t seen as [outer, t.dim(axis), inner]: the byte sizes of one outer row's block
// of `axis` and of the outer count.
struct Blocks {
  int64_t outer = 1;
  size_t block_bytes = 0;  // one outer row: dim(axis) * inner elements
};

Blocks blocks_of(const Tensor& t, int axis) {
  SW_CHECK(axis >= 0 && axis < t.ndim(), Status::kInternal, "model parallel: axis ", axis, " of ",
           t.str());
  Blocks b;
  for (int i = 0; i < axis; ++i) b.outer *= t.dim(i);
  b.block_bytes = b.outer ? t.nbytes() / static_cast<size_t>(b.outer) : 0;
  return b;
}

}  // namespace

Shape Split::full_shape(const Shape& part) const {
  Shape s = part;
  if (!whole()) s[axis] *= parts;
  return s;
}

Tensor take_part(const Tensor& full, const Split& split) {
  if (split.whole()) return full.clone();
  SW_CHECK(split.axis < full.ndim() && full.dim(split.axis) % split.parts == 0,
           Status::kInvalidArgument, "model parallel: ", full.str(), " does not split into ",
           split.parts, " parts along dimension ", split.axis);
  Shape shape = full.shape();
  shape[split.axis] /= split.parts;
  Tensor part = Tensor::empty(shape, full.dtype());
  const Blocks b = blocks_of(part, split.axis);
  const char* src = static_cast<const char*>(full.raw());
  char* dst = static_cast<char*>(part.raw());
  for (int64_t o = 0; o < b.outer; ++o)
    std::memcpy(dst + o * b.block_bytes, src + (o * split.parts + split.index) * b.block_bytes,
                b.block_bytes);
  return part;
}

Tensor gather_parts(Communicator& group, const Tensor& part, int axis) {
  const Tensor stacked = group.all_gather(part.to(Device::cpu()));  // [n * dim0, ...]
  const int n = group.size();
  if (axis == 0) return stacked;
  Shape shape = part.shape();
  shape[axis] *= n;
  Tensor full = Tensor::empty(shape, part.dtype());
  const Blocks b = blocks_of(part, axis);
  const char* src = static_cast<const char*>(stacked.raw());
  char* dst = static_cast<char*>(full.raw());
  for (int r = 0; r < n; ++r)
    for (int64_t o = 0; o < b.outer; ++o)
      std::memcpy(dst + (o * n + r) * b.block_bytes, src + (r * b.outer + o) * b.block_bytes,
                  b.block_bytes);
  return full;
}

std::vector<std::pair<std::string, Tensor>> gather_model_parallel(
    Communicator& group, const std::vector<std::pair<std::string, Tensor>>& local,
    const std::function<int(const std::string&)>& axis_of) {
  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(local.size());
  for (const auto& [name, t] : local) {
    const int axis = axis_of(name);
    out.push_back({name, axis < 0 ? t : gather_parts(group, t, axis)});
  }
  return out;
}

}  // namespace sw
