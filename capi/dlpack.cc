// DLPack views of parameters, gradients and logits: a DLManagedTensor that holds a
// reference to the tensor's storage, so the memory outlives the model or the result.
#include <dlpack/dlpack.h>

#include <memory>
#include <string>

#include "capi/internal.h"
#include "core/tensor/allocator.h"

namespace sw::capi {
namespace {

DLDataType dl_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return {kDLFloat, 32, 1};
    case DType::f64:
      return {kDLFloat, 64, 1};
    case DType::bf16:
      return {kDLBfloat, 16, 1};
    case DType::i32:
      return {kDLInt, 32, 1};
    case DType::i64:
      return {kDLInt, 64, 1};
  }
  throw Error(Status::kInternal, std::string("DLPack: no DLPack type for ") + dtype_name(dtype));
}

// What the DLManagedTensor owns: the tensor (its storage reference) and its shape array.
struct DlpackView {
  Tensor tensor;
  Shape shape;
  DLManagedTensor managed{};
};

DLManagedTensor* export_view(const Tensor& t) {
  // The library's kernels run on its own stream: the memory is handed over once they are
  // done, so a consumer on any stream reads finished values.
  synchronize(t.device());
  auto view = std::make_unique<DlpackView>();
  view->tensor = t;
  view->shape = t.shape();
  DLTensor& d = view->managed.dl_tensor;
  d.data = t.raw();
  d.device = t.device().is_cpu() ? DLDevice{kDLCPU, 0} : DLDevice{kDLCUDA, t.device().index};
  d.ndim = t.ndim();
  d.dtype = dl_dtype(t.dtype());
  d.shape = view->shape.data();
  d.strides = nullptr;  // C-contiguous: a Tensor has no strides
  d.byte_offset = 0;
  view->managed.manager_ctx = view.get();
  view->managed.deleter = [](DLManagedTensor* self) {
    delete static_cast<DlpackView*>(self->manager_ctx);
  };
  return &view.release()->managed;
}

}  // namespace
}  // namespace sw::capi

using namespace sw::capi;  // NOLINT: the C ABI's definitions below

sw_status sw_model_parameter_dlpack(sw_model* model, const char* name, DLManagedTensor** out) {
  return guard(__func__, [&] {
    DLManagedTensor*& target = deref(out, "out");
    ModelState& s = model_state(model);
    std::shared_lock lock(s.mutex);
    target = export_view(s.model.parameters().get(string_arg(name, "name")));
  });
}

sw_status sw_model_gradient_dlpack(const sw_model* model, const char* name, DLManagedTensor** out) {
  return guard(__func__, [&] {
    DLManagedTensor*& target = deref(out, "out");
    ModelState& s = model_state(model);
    std::shared_lock lock(s.mutex);
    target = export_view(last_gradient(s, name));
  });
}

sw_status sw_result_logits_dlpack(const sw_result* result, DLManagedTensor** out) {
  return guard(__func__, [&] {
    DLManagedTensor*& target = deref(out, "out");
    target = export_view(deref(result, "result").output.logits);
  });
}
