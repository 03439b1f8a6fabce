#include "core/train/adamw.h"

#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/tensor/device_switch.h"
#include "core/train/parameter_loops.h"
#include "kernels/adamw.cuh"

namespace sw {
namespace {

class AdamW final : public OptimizerBase {
 public:
  explicit AdamW(const AdamWOptions& o) : o_(o) {
    SW_CHECK_ARG(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
                 "adamw: beta1 and beta2 must be in [0, 1), got ", o.beta1, ", ", o.beta2);
    SW_CHECK_ARG(o.eps > 0, "adamw: eps must be > 0, got ", o.eps);
    SW_CHECK_ARG(o.weight_decay >= 0, "adamw: weight_decay must be >= 0, got ", o.weight_decay);
  }

  void step(std::vector<ParameterGradient>& grads, double lr, int64_t step) override {
    SW_CHECK_ARG(step >= 1, "adamw: steps count from 1, got ", step);
    bind(grads);
    const double c1 = 1 - std::pow(o_.beta1, static_cast<double>(step));
    const double c2 = 1 - std::pow(o_.beta2, static_cast<double>(step));
    for (size_t i = 0; i < grads.size(); ++i) {
      if (on_gpu(grads[i], "adamw")) {
        update_on_gpu(grads[i], slots_[i], lr, c1, c2);
        continue;
      }
      with_pair(grads[i], "adamw", [&](auto zero) {
        using T = decltype(zero);
        using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
        T* p = grads[i].parameter.data<T>();
        const T* g = grads[i].gradient.data<T>();
        S* m = slots_[i].get("m").data<S>();
        S* v = slots_[i].get("v").data<S>();
        const int64_t n = grads[i].parameter.numel();
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < n; ++j) {
          m[j] = static_cast<S>(o_.beta1 * m[j] + (1 - o_.beta1) * g[j]);
          v[j] =
              static_cast<S>(o_.beta2 * v[j] + (1 - o_.beta2) * static_cast<double>(g[j]) * g[j]);
          const double step_dir = (m[j] / c1) / (std::sqrt(v[j] / c2) + o_.eps);
          p[j] = static_cast<T>(p[j] - lr * (step_dir + o_.weight_decay * p[j]));
        }
      });
    }
  }

 protected:
  Slots make_slots(const std::string& name, const Tensor& parameter) const override {
    const DType dt = state_dtype(parameter);
    return Slots{name,
                 parameter.shape(),
                 {{"m", Tensor::zeros(parameter.shape(), dt, parameter.device())},
                  {"v", Tensor::zeros(parameter.shape(), dt, parameter.device())}}};
  }

 private:
  // The same update by the CUDA kernel (kernels/adamw.cuh).
  void update_on_gpu([[maybe_unused]] ParameterGradient& pg, [[maybe_unused]] Slots& s,
                     [[maybe_unused]] double lr, [[maybe_unused]] double c1,
                     [[maybe_unused]] double c2) {
    SW_RUN_ON_CUDA(
        kernels::adamw_update(pg.parameter, pg.gradient, s.get("m"), s.get("v"), o_, lr, c1, c2));
  }

  AdamWOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const AdamWOptions& options) {
  return std::make_unique<AdamW>(options);
}

}  // namespace sw
