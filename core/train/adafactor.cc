#include "core/train/adafactor.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/tensor/device_switch.h"
#include "core/train/parameter_loops.h"
#include "kernels/adafactor.cuh"

namespace sw {
namespace {

class Adafactor final : public OptimizerBase {
 public:
  explicit Adafactor(const AdafactorOptions& o) : o_(o) {
    SW_CHECK_ARG(o.beta1 >= 0 && o.beta1 < 1, "adafactor: beta1 must be in [0, 1), got ", o.beta1);
    SW_CHECK_ARG(o.decay_rate > 0 && o.decay_rate <= 1,
                 "adafactor: decay_rate must be in (0, 1], got ", o.decay_rate);
    SW_CHECK_ARG(o.eps1 > 0 && o.eps2 > 0, "adafactor: eps1 and eps2 must be > 0");
    SW_CHECK_ARG(o.clip_threshold > 0, "adafactor: clip_threshold must be > 0, got ",
                 o.clip_threshold);
    SW_CHECK_ARG(o.weight_decay >= 0, "adafactor: weight_decay must be >= 0, got ", o.weight_decay);
  }

  void step(std::vector<ParameterGradient>& grads, double lr, int64_t step) override {
    SW_CHECK_ARG(step >= 1, "adafactor: steps count from 1, got ", step);
    bind(grads);
    const double beta2 = 1.0 - std::pow(static_cast<double>(step), -o_.decay_rate);
    for (size_t i = 0; i < grads.size(); ++i) {
      if (on_gpu(grads[i], "adafactor")) {
        update_on_gpu(grads[i], slots_[i], lr, beta2);
        continue;
      }
      with_pair(grads[i], "adafactor",
                [&](auto zero) { update<decltype(zero)>(grads[i], slots_[i], lr, beta2); });
    }
  }

 protected:
  Slots make_slots(const std::string& name, const Tensor& parameter) const override {
    Slots s{name, parameter.shape(), {}};
    const DType dt = state_dtype(parameter);
    if (factored(parameter)) {
      // Second moments factored over the last two dimensions: per row and per column.
      const Shape& sh = parameter.shape();
      Shape rows(sh.begin(), sh.end() - 1), cols(sh.begin(), sh.end() - 2);
      cols.push_back(sh.back());
      s.tensors.push_back({"row", Tensor::zeros(rows, dt, parameter.device())});
      s.tensors.push_back({"col", Tensor::zeros(cols, dt, parameter.device())});
    } else {
      s.tensors.push_back({"v", Tensor::zeros(parameter.shape(), dt, parameter.device())});
    }
    if (o_.beta1 > 0)
      s.tensors.push_back({"m", Tensor::zeros(parameter.shape(), dt, parameter.device())});
    return s;
  }

 private:
  static bool factored(const Tensor& p) { return p.ndim() >= 2; }

  // The same update by the CUDA kernels (kernels/adafactor.cuh).
  void update_on_gpu(ParameterGradient& pg, Slots& s, [[maybe_unused]] double lr,
                     [[maybe_unused]] double beta2) {
    [[maybe_unused]] kernels::AdafactorState state;
    if (factored(pg.parameter)) {
      state.row = s.get("row");
      state.col = s.get("col");
    } else {
      state.v = s.get("v");
    }
    if (o_.beta1 > 0) state.m = s.get("m");
    SW_RUN_ON_CUDA(kernels::adafactor_update(pg.parameter, pg.gradient, state, o_, lr, beta2));
  }

  // Three passes, none of which stores the update: the second-moment statistics, the
  // update's RMS (for clipping), then the parameter step; each recomputes the unclipped
  // update u = g / sqrt(v_hat) elementwise, which costs less than writing it out.
  // A model-parallel part (pg.split_axis) sums its statistics over the group: the row
  // (split by columns) or column (split by rows) second moments, the mean row moment and
  // the update's and parameter's RMS, so every part takes its share of the whole's step.
  template <typename T>
  void update(ParameterGradient& pg, Slots& s, double lr, double beta2) {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* p = pg.parameter.data<T>();
    const T* g = pg.gradient.data<T>();
    const int64_t n = pg.parameter.numel();
    const bool split = pg.shard_group && pg.split_axis >= 0 && pg.shard_group->size() > 1;
    const int parts = split ? pg.shard_group->size() : 1;
    // Sums over every part (one f64 all-reduce when split).
    auto sum_over_parts = [&](Tensor sums) {
      if (split) pg.shard_group->all_reduce_sum(sums);
      return sums;
    };
    auto total = [&](double local) {
      return sum_over_parts(Tensor::from_vector<double>({local}, {1})).item(0);
    };
    const double n_total = static_cast<double>(n) * parts;
    double rate = lr;
    if (o_.multiply_by_parameter_scale) {
      const double ms = mean_square(p, n);
      rate *= std::max(o_.eps2, std::sqrt(split ? total(ms * n) / n_total : ms));
    }
    const bool is_factored = factored(pg.parameter);
    const int64_t cols = is_factored ? pg.parameter.dim(-1) : n;
    const int64_t rows = is_factored ? pg.parameter.dim(-2) : 1;
    const int64_t batch = n / (rows * cols);
    const bool split_cols = split && pg.split_axis == pg.parameter.ndim() - 1;
    const bool split_rows = split && pg.split_axis == pg.parameter.ndim() - 2;
    const double all_cols = static_cast<double>(cols) * (split_cols ? parts : 1);
    const double all_rows = static_cast<double>(rows) * (split_rows ? parts : 1);
    S* row = is_factored ? s.get("row").data<S>() : nullptr;
    S* col = is_factored ? s.get("col").data<S>() : nullptr;
    S* v = is_factored ? nullptr : s.get("v").data<S>();
    std::vector<double> row_scale(is_factored ? batch * rows : 0);  // row[r] / mean(row)
    if (is_factored) {
      for (int64_t b = 0; b < batch; ++b) {
        const T* gb = g + b * rows * cols;
        S* rb = row + b * rows;
        S* cb = col + b * cols;
        // Row sums, and column sums over fixed row blocks reduced in order (thread-count
        // independent).
        Tensor row_sums = Tensor::zeros({rows}, DType::f64),
               col_sums = Tensor::zeros({cols}, DType::f64);
        double* rs = row_sums.data<double>();
        const int64_t row_block = std::max<int64_t>(1, kBlock / cols);
        const int64_t blocks = (rows + row_block - 1) / row_block;
        std::vector<double> col_partial(blocks * cols, 0.0);
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < blocks; ++k) {
          double* cp = col_partial.data() + k * cols;
          for (int64_t r = k * row_block; r < std::min(rows, (k + 1) * row_block); ++r) {
            double row_sum = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const double sq = static_cast<double>(gb[r * cols + c]) * gb[r * cols + c] + o_.eps1;
              row_sum += sq;
              cp[c] += sq;
            }
            rs[r] = row_sum;
          }
        }
        double* cs = col_sums.data<double>();
        for (int64_t c = 0; c < cols; ++c)
          for (int64_t k = 0; k < blocks; ++k) cs[c] += col_partial[k * cols + c];
        if (split_cols) row_sums = sum_over_parts(row_sums), rs = row_sums.data<double>();
        if (split_rows) col_sums = sum_over_parts(col_sums), cs = col_sums.data<double>();
        for (int64_t r = 0; r < rows; ++r)
          rb[r] = static_cast<S>(beta2 * rb[r] + (1 - beta2) * (rs[r] / all_cols));
        for (int64_t c = 0; c < cols; ++c)
          cb[c] = static_cast<S>(beta2 * cb[c] + (1 - beta2) * (cs[c] / all_rows));
        double row_avg = 0;
        for (int64_t r = 0; r < rows; ++r) row_avg += static_cast<double>(rb[r]) / all_rows;
        if (split_rows) row_avg = total(row_avg);
        for (int64_t r = 0; r < rows; ++r) row_scale[b * rows + r] = rb[r] / row_avg;
      }
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        v[i] = static_cast<S>(beta2 * v[i] +
                              (1 - beta2) * (static_cast<double>(g[i]) * g[i] + o_.eps1));
    }
    // v_hat = row[r] * col[c] / mean(row), the rank-1 estimate of E[g^2] (or v itself).
    auto unclipped = [&](int64_t i) {
      if (!is_factored) return g[i] / std::sqrt(static_cast<double>(v[i]));
      const int64_t c = i % cols, br = i / cols, b = br / rows;
      return g[i] / std::sqrt(row_scale[br] * static_cast<double>(col[b * cols + c]));
    };
    // Update clipping: the update's RMS is at most clip_threshold.
    const double sum_sq = total(block_sum(n, [&](int64_t lo, int64_t hi) {
      double a = 0;
      for (int64_t i = lo; i < hi; ++i) a += unclipped(i) * unclipped(i);
      return a;
    }));
    const double rms = std::sqrt(n ? sum_sq / n_total : 0.0);
    const double shrink = std::max(1.0, rms / o_.clip_threshold);
    S* m = o_.beta1 > 0 ? s.get("m").data<S>() : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      double u = unclipped(i) / shrink;
      if (m) u = m[i] = static_cast<S>(o_.beta1 * m[i] + (1 - o_.beta1) * u);
      p[i] = static_cast<T>(p[i] - rate * o_.weight_decay * p[i] - rate * u);
    }
  }

  AdafactorOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adafactor(const AdafactorOptions& options) {
  return std::make_unique<Adafactor>(options);
}

}  // namespace sw
