// Optimizers (SPEC §5): Adafactor (factored second moments, no first moment by default,
// update clipping, relative step scaling) and AdamW, with their state in f32 (f64 for an
// f64 model), plus global gradient-norm clipping. They update parameters in place from
// gradients of the same shapes, on the CPU.
#pragma once

#include <memory>
#include <string>
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
};

// Scales every gradient by max_norm / norm when the global L2 norm exceeds max_norm
// (max_norm <= 0: no clipping). Returns the norm before clipping (accumulated in f64).
// Sharded gradients (shard_group) have their squares summed over their group, the rest
// counted once.
double clip_gradient_norm(std::vector<ParameterGradient>& grads, double max_norm);

// The axis along which an optimizer state slot ("m", "v", "row", "col") of a parameter of
// `ndim` dimensions split along `split_axis` is split (-1: whole, the same on every part).
int state_split_axis(const std::string& slot, int ndim, int split_axis);

struct AdafactorOptions {
  double beta1 = 0.0;                        // 0: no first moment (T5 / the paper)
  double decay_rate = 0.8;                   // second-moment decay: beta2_t = 1 - t^-decay_rate
  double eps1 = 1e-30;                       // added to the squared gradient
  double eps2 = 1e-3;                        // floor of the parameter scale
  double clip_threshold = 1.0;               // update RMS clipped to this
  bool multiply_by_parameter_scale = false;  // lr_t = lr * max(eps2, RMS(parameter))
  double weight_decay = 0.0;                 // decoupled, times lr_t
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // decoupled: p -= lr * weight_decay * p
};

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

std::unique_ptr<Optimizer> make_adafactor(const AdafactorOptions& options);
std::unique_ptr<Optimizer> make_adamw(const AdamWOptions& options);

}  // namespace sw
