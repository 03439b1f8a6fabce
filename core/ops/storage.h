// bf16 storage on the cpu: mixed-precision training's numbers without bf16 kernels. A GPU
// op on bf16 tensors loads bf16, computes in f32 and stores its result in bf16; a cpu op
// computes in f32 and, while a Bf16Storage scope is active on the calling thread, rounds
// every f32 tensor it writes to the nearest bf16 (kept in f32), so it stores what the GPU
// kernel would (up to the order of f32 additions). What the kernels keep in f32 stays
// f32: weight gradients, norms' 1/rms, attention's probabilities. With bf16-valued weights, a model
// run in the scope has the numerics of a bf16 model: the cpu reference of bf16 training
// (TrainConfig precision BF16, docs/MATH.md §5).
//
// The ops call stored() on what they write; the router suspends the scope to run in f32
// (selective precision, model.router_dtype).
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// Whether the ops called from this thread store bf16.
bool bf16_storage();

// Sets bf16_storage() for its lifetime (on this thread), then restores the previous.
class Bf16Storage {
 public:
  explicit Bf16Storage(bool on);
  ~Bf16Storage();
  Bf16Storage(const Bf16Storage&) = delete;
  Bf16Storage& operator=(const Bf16Storage&) = delete;

 private:
  bool previous_;
};

// What an op writes: rounded to bf16 in place while bf16_storage() (f32 cpu tensors; an
// f64 tensor is a gradient check's and is left alone). Returns t.
Tensor& stored(Tensor& t);
inline Tensor stored(Tensor&& t) { return stored(t); }

}  // namespace sw::ops
