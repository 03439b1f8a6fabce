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
    [[maybe_unused]] kernels::AdafactorSplit split;
    if (pg.shard_group && pg.split_axis >= 0 && pg.shard_group->size() > 1) {
      Communicator* group = pg.shard_group;
      split.sum = [group](Tensor& t) { group->all_reduce_sum(t); };
      split.parts = group->size();
      split.split_cols = pg.split_axis == pg.parameter.ndim() - 1;
      split.split_rows = pg.split_axis == pg.parameter.ndim() - 2;
    }
    SW_RUN_ON_CUDA(
        kernels::adafactor_update(pg.parameter, pg.gradient, state, o_, lr, beta2, split));
  }

  // Three passes, none of which stores the update: the second-moment statistics, the
  // update's RMS (for clipping), then the parameter step; each recomputes the unclipped
  // update u = g / sqrt(v_hat) elementwise, which costs less than writing it out.
  // Factored, 1 / sqrt(v_hat) = row_factor[r] * col_factor[c] is a product of a per-row
  // and a per-column number, so the inner loops run along rows with no division and
  // vectorise; sums keep fixed lanes and fixed blocks (parameter_loops.h).
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
    S* v = is_factored ? nullptr : s.get("v").data<S>();
    std::vector<double> row_factor, col_factor;
    if (is_factored) {
      row_factor.resize(batch * rows);
      col_factor.resize(batch * cols);
      S* row = s.get("row").data<S>();
      S* col = s.get("col").data<S>();
      for (int64_t b = 0; b < batch; ++b)
        factored_moments(g + b * rows * cols, rows, cols, beta2, split_cols, split_rows, all_cols,
                         all_rows, sum_over_parts, total, row + b * rows, col + b * cols,
                         row_factor.data() + b * rows, col_factor.data() + b * cols);
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i)
        v[i] = static_cast<S>(beta2 * v[i] +
                              (1 - beta2) * (static_cast<double>(g[i]) * g[i] + o_.eps1));
    }
    // Calls piece(row, c0, c1, i) for the parts of [lo, hi) that lie in one row, i being
    // the index of (row, c0); u there is g[i + k] * row_factor[row] * col_factor[c0 + k]
    // (factored) or g[i + k] / sqrt(v[i + k]).
    auto by_rows = [&](int64_t lo, int64_t hi, auto&& piece) {
      for (int64_t i = lo; i < hi;) {
        const int64_t r = i / cols, c0 = i - r * cols, c1 = std::min(cols, c0 + (hi - i));
        piece(r, c0, c1, i);
        i += c1 - c0;
      }
    };
    // Update clipping: the update's RMS is at most clip_threshold.
    const double sum_sq = total(block_sum(n, [&](int64_t lo, int64_t hi) {
      double a = 0;
      by_rows(lo, hi, [&](int64_t r, int64_t c0, int64_t c1, int64_t i) {
        const T* gi = g + i - c0;
        if (is_factored) {
          const double rf = row_factor[r];
          const double* cf = col_factor.data() + (r / rows) * cols;
          a += lane_sum(c0, c1, [&](int64_t c) {
            const double u = gi[c] * rf * cf[c];
            return u * u;
          });
        } else {
          const S* vi = v + i - c0;
          a += lane_sum(c0, c1, [&](int64_t c) {
            return static_cast<double>(gi[c]) * gi[c] / static_cast<double>(vi[c]);
          });
        }
      });
      return a;
    }));
    const double rms = std::sqrt(n ? sum_sq / n_total : 0.0);
    const double shrink = std::max(1.0, rms / o_.clip_threshold);
    S* m = o_.beta1 > 0 ? s.get("m").data<S>() : nullptr;
    const double decay = 1 - rate * o_.weight_decay;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < blocks; ++k) {
      by_rows(k * kBlock, std::min(n, (k + 1) * kBlock),
              [&](int64_t r, int64_t c0, int64_t c1, int64_t i) {
                T* pi = p + i - c0;
                const T* gi = g + i - c0;
                S* mi = m ? m + i - c0 : nullptr;
                const S* vi = v ? v + i - c0 : nullptr;
                const double rf = is_factored ? row_factor[r] / shrink : 1 / shrink;
                const double* cf = is_factored ? col_factor.data() + (r / rows) * cols : nullptr;
                for (int64_t c = c0; c < c1; ++c) {
                  double u =
                      cf ? gi[c] * rf * cf[c] : gi[c] * rf / std::sqrt(static_cast<double>(vi[c]));
                  if (mi) u = mi[c] = static_cast<S>(o_.beta1 * mi[c] + (1 - o_.beta1) * u);
                  pi[c] = static_cast<T>(decay * pi[c] - rate * u);
                }
              });
    }
  }

  // One [rows, cols] matrix's second-moment step: row and column means of g^2 + eps1
  // (the column sums over fixed row blocks added in order), the decayed row and column
  // moments, and the factors of 1 / sqrt(v_hat), v_hat = row[r] * col[c] / mean(row).
  template <typename T, typename S, typename SumOverParts, typename Total>
  void factored_moments(const T* g, int64_t rows, int64_t cols, double beta2, bool split_cols,
                        bool split_rows, double all_cols, double all_rows,
                        SumOverParts& sum_over_parts, Total& total, S* row, S* col,
                        double* row_factor, double* col_factor) const {
    Tensor row_sums = Tensor::zeros({rows}, DType::f64),
           col_sums = Tensor::zeros({cols}, DType::f64);
    double* rs = row_sums.data<double>();
    const int64_t row_block = std::max<int64_t>(1, kBlock / cols);
    const int64_t blocks = (rows + row_block - 1) / row_block;
    std::vector<double> col_partial(blocks * cols, 0.0);
    const double eps1 = o_.eps1;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < blocks; ++k) {
      double* cp = col_partial.data() + k * cols;
      for (int64_t r = k * row_block; r < std::min(rows, (k + 1) * row_block); ++r) {
        const T* gr = g + r * cols;
        for (int64_t c = 0; c < cols; ++c) cp[c] += static_cast<double>(gr[c]) * gr[c] + eps1;
        rs[r] =
            lane_sum(0, cols, [&](int64_t c) { return static_cast<double>(gr[c]) * gr[c] + eps1; });
      }
    }
    double* cs = col_sums.data<double>();
    for (int64_t k = 0; k < blocks; ++k)
      for (int64_t c = 0; c < cols; ++c) cs[c] += col_partial[k * cols + c];
    if (split_cols) row_sums = sum_over_parts(row_sums), rs = row_sums.data<double>();
    if (split_rows) col_sums = sum_over_parts(col_sums), cs = col_sums.data<double>();
    for (int64_t r = 0; r < rows; ++r)
      row[r] = static_cast<S>(beta2 * row[r] + (1 - beta2) * (rs[r] / all_cols));
    for (int64_t c = 0; c < cols; ++c)
      col[c] = static_cast<S>(beta2 * col[c] + (1 - beta2) * (cs[c] / all_rows));
    double row_avg = 0;
    for (int64_t r = 0; r < rows; ++r) row_avg += static_cast<double>(row[r]) / all_rows;
    if (split_rows) row_avg = total(row_avg);
    for (int64_t r = 0; r < rows; ++r)
      row_factor[r] = 1 / std::sqrt(static_cast<double>(row[r]) / row_avg);
    for (int64_t c = 0; c < cols; ++c) col_factor[c] = 1 / std::sqrt(static_cast<double>(col[c]));
  }

  AdafactorOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adafactor(const AdafactorOptions& options) {
  return std::make_unique<Adafactor>(options);
}

}  // namespace sw
