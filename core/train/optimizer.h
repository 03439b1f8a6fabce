// Optimizers (docs/MATH.md §5): the interface Adafactor (adafactor.h) and AdamW (adamw.h)
// implement, and what they share. They keep their state in f32 (f64 for an f64 model) and
// update parameters in place from gradients of the same shapes, on the cpu or (f32, whole
// parameters) on a GPU with the kernels of kernels/adamw.cu and kernels/adafactor.cu.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dist/communicator.h"
#include "core/tensor/tensor.h"

namespace sw {

struct ParameterGradient {
  std::string name;
  Tensor parameter;  // updated in place
  Tensor gradient;   // same shape and dtype
  // Distributed models: the group whose ranks hold the rest of what this parameter belongs
  // to (null: it is whole here and the same on every rank). Expert parallelism: the other
  // experts (split_axis -1); model parallelism: the other parts of this very tensor, split
  // along split_axis, whose statistics the optimizer then sums over the group so every
  // part takes the step the whole would.
  Communicator* shard_group = nullptr;
  int split_axis = -1;
  // An expert's part under expert and model parallelism together: shard_group is the model
  // group (the other parts of this tensor), and this the expert group (the other experts),
  // over which the global gradient norm sums too.
  Communicator* expert_group = nullptr;
};

// The axis along which an optimizer state slot ("m", "v", "row", "col") of a parameter of
// `ndim` dimensions split along `split_axis` is split (-1: whole, the same on every part).
int state_split_axis(const std::string& slot, int ndim, int split_axis);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update at 1-based `step` with learning rate `lr`. The first call fixes the set of
  // parameters: later calls must pass the same names and shapes in the same order.
  virtual void step(std::vector<ParameterGradient>& grads, double lr, int64_t step) = 0;
  // The state tensors by "<parameter>/<slot>" (for checkpoints and tests); empty before
  // the first step.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  // Replaces the state with saved tensors ("<parameter>/<slot>", as state() names them)
  // for these parameters (names and shapes in step order). A missing, unexpected or
  // mis-shaped tensor is an error naming it, and then nothing changes.
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& parameters,
                          const std::vector<std::pair<std::string, Tensor>>& state) = 0;
};

// What every optimizer here shares: named state slots per parameter, made on the first
// step, checked on every later one, saved by state() and replaced by load_state().
class OptimizerBase : public Optimizer {
 public:
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& parameters,
                  const std::vector<std::pair<std::string, Tensor>>& state) override;

 protected:
  // State for one parameter, created on the first step; later steps must match it.
  struct Slots {
    std::string name;
    Shape shape;
    std::vector<std::pair<std::string, Tensor>> tensors;
    Tensor& get(const std::string& slot);
  };

  // The dtype of a parameter's state: f64 for an f64 parameter, f32 otherwise.
  static DType state_dtype(const Tensor& parameter);

  // A parameter's state tensors, zero, as its first step needs them.
  virtual Slots make_slots(const std::string& name, const Tensor& parameter) const = 0;

  // The slots of every parameter, made on the first step and checked after.
  void bind(const std::vector<ParameterGradient>& grads);

  std::vector<Slots> slots_;
};

}  // namespace sw
