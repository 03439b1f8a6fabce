#include "core/ops/storage.h"

#include "core/ops/elementwise.h"

namespace sw::ops {
namespace {

thread_local bool storing_bf16 = false;

}  // namespace

bool bf16_storage() { return storing_bf16; }

Bf16Storage::Bf16Storage(bool on) : previous_(storing_bf16) { storing_bf16 = on; }

Bf16Storage::~Bf16Storage() { storing_bf16 = previous_; }

Tensor& stored(Tensor& t) {
  if (storing_bf16 && t.defined() && t.dtype() == DType::f32 && t.device().is_cpu())
    round_to_bf16_(t);
  return t;
}

}  // namespace sw::ops
