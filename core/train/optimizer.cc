#include "core/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <type_traits>

namespace sw {
namespace {

// Calls fn(T{}) for a CPU f32 or f64 parameter/gradient pair, checking them first.
template <typename Fn>
void with_pair(const ParameterGradient& pg, const char* who, Fn&& fn) {
  SW_CHECK_ARG(pg.parameter.defined() && pg.gradient.defined(), who, ": parameter ", pg.name,
               " has no gradient");
  SW_CHECK_ARG(
      pg.parameter.shape() == pg.gradient.shape() && pg.parameter.dtype() == pg.gradient.dtype(),
      who, ": gradient ", pg.gradient.str(), " does not match parameter ", pg.name, " ",
      pg.parameter.str());
  SW_CHECK(pg.parameter.device().is_cpu() && pg.gradient.device().is_cpu(), Status::kUnsupported,
           who, ": parameter ", pg.name, " is on ", pg.parameter.device().str(),
           "; the optimizers run on the cpu");
  switch (pg.parameter.dtype()) {
    case DType::f32:
      fn(float{});
      break;
    case DType::f64:
      fn(double{});
      break;
    default:
      throw Error(Status::kUnsupported, std::string(who) + ": parameter " + pg.name + " is " +
                                            dtype_name(pg.parameter.dtype()) +
                                            "; the optimizers update f32 or f64 parameters");
  }
}

// State for one parameter, created on the first step; later steps must match it.
struct Slots {
  std::string name;
  Shape shape;
  std::vector<std::pair<std::string, Tensor>> tensors;
  Tensor& get(const std::string& slot) {
    for (auto& [n, t] : tensors)
      if (n == slot) return t;
    throw Error(Status::kInternal, "optimizer: no slot " + slot + " for " + name);
  }
};

class OptimizerBase : public Optimizer {
 public:
  std::vector<std::pair<std::string, Tensor>> state() const override {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const Slots& s : slots_)
      for (const auto& [slot, t] : s.tensors) out.push_back({s.name + "/" + slot, t});
    return out;
  }

 protected:
  // A parameter's state tensors, zero, as its first step needs them.
  virtual Slots make_slots(const std::string& name, const Tensor& parameter) const = 0;

  // The slots of every parameter, made on the first step and checked after.
  void bind(const std::vector<ParameterGradient>& grads) {
    if (slots_.empty()) {
      for (const ParameterGradient& g : grads) slots_.push_back(make_slots(g.name, g.parameter));
      return;
    }
    SW_CHECK_ARG(grads.size() == slots_.size(), "optimizer: ", grads.size(),
                 " parameters this step, ", slots_.size(), " on the first");
    for (size_t i = 0; i < grads.size(); ++i)
      SW_CHECK_ARG(grads[i].name == slots_[i].name && grads[i].parameter.shape() == slots_[i].shape,
                   "optimizer: parameter ", i, " is ", grads[i].name, " ",
                   shape_str(grads[i].parameter.shape()), ", was ", slots_[i].name, " ",
                   shape_str(slots_[i].shape));
  }

 public:
  void load_state(const std::vector<std::pair<std::string, Tensor>>& parameters,
                  const std::vector<std::pair<std::string, Tensor>>& state) override {
    std::map<std::string, const Tensor*> saved;
    for (const auto& [name, t] : state) saved[name] = &t;
    std::vector<Slots> slots;
    for (const auto& [name, parameter] : parameters) {
      Slots s = make_slots(name, parameter);
      for (auto& [slot, tensor] : s.tensors) {
        const std::string key = name + "/" + slot;
        const auto it = saved.find(key);
        SW_CHECK(it != saved.end(), Status::kNotFound, "optimizer state: ", key,
                 " is missing from the checkpoint");
        SW_CHECK(it->second->shape() == tensor.shape() && it->second->dtype() == tensor.dtype(),
                 Status::kInvalidArgument, "optimizer state: ", key, " is ", it->second->str(),
                 " in the checkpoint, ", tensor.str(), " here");
        tensor.copy_from(*it->second);
        saved.erase(it);
      }
      slots.push_back(std::move(s));
    }
    SW_CHECK(saved.empty(), Status::kInvalidArgument, "optimizer state: unexpected ",
             saved.empty() ? std::string() : saved.begin()->first, " in the checkpoint (",
             saved.size(), " unexpected in all)");
    slots_ = std::move(slots);  // only now: a failed load changes nothing
  }

 protected:
  std::vector<Slots> slots_;
};

// Sums f(block) over fixed blocks of kBlock elements: the blocks run in parallel and their
// partial sums are added in order, so the result is the same for any thread count.
constexpr int64_t kBlock = 1 << 14;

template <typename F>
double block_sum(int64_t n, F f) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) partial[b] = f(b * kBlock, std::min(n, (b + 1) * kBlock));
  double total = 0;
  for (double x : partial) total += x;
  return total;
}

template <typename T>
double mean_square(const T* x, int64_t n) {
  const double s = block_sum(n, [&](int64_t lo, int64_t hi) {
    double a = 0;
    for (int64_t i = lo; i < hi; ++i) a += static_cast<double>(x[i]) * x[i];
    return a;
  });
  return n ? s / static_cast<double>(n) : 0.0;
}

DType state_dtype(const Tensor& p) { return p.dtype() == DType::f64 ? DType::f64 : DType::f32; }

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
    for (size_t i = 0; i < grads.size(); ++i)
      with_pair(grads[i], "adafactor",
                [&](auto zero) { update<decltype(zero)>(grads[i], slots_[i], lr, beta2); });
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
      s.tensors.push_back({"row", Tensor::zeros(rows, dt)});
      s.tensors.push_back({"col", Tensor::zeros(cols, dt)});
    } else {
      s.tensors.push_back({"v", Tensor::zeros(parameter.shape(), dt)});
    }
    if (o_.beta1 > 0) s.tensors.push_back({"m", Tensor::zeros(parameter.shape(), dt)});
    return s;
  }

 private:
  static bool factored(const Tensor& p) { return p.ndim() >= 2; }

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
    for (size_t i = 0; i < grads.size(); ++i)
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

 protected:
  Slots make_slots(const std::string& name, const Tensor& parameter) const override {
    const DType dt = state_dtype(parameter);
    return Slots{
        name,
        parameter.shape(),
        {{"m", Tensor::zeros(parameter.shape(), dt)}, {"v", Tensor::zeros(parameter.shape(), dt)}}};
  }

 private:
  AdamWOptions o_;
};

}  // namespace

double clip_gradient_norm(std::vector<ParameterGradient>& grads, double max_norm) {
  // Squares summed per group (in the order groups first appear, the same on every rank),
  // whole parameters under null.
  std::vector<Communicator*> groups = {nullptr};
  std::vector<double> sums = {0.0};
  for (const ParameterGradient& pg : grads)
    with_pair(pg, "clip_gradient_norm", [&](auto zero) {
      using T = decltype(zero);
      Communicator* group = pg.shard_group && pg.shard_group->size() > 1 ? pg.shard_group : nullptr;
      const size_t at = std::find(groups.begin(), groups.end(), group) - groups.begin();
      if (at == groups.size()) groups.push_back(group), sums.push_back(0.0);
      sums[at] += mean_square(pg.gradient.data<T>(), pg.gradient.numel()) * pg.gradient.numel();
    });
  double sum_sq = sums[0];
  for (size_t i = 1; i < groups.size(); ++i) {
    Tensor t = Tensor::from_vector<double>({sums[i]}, {1});
    groups[i]->all_reduce_sum(t);
    sum_sq += t.data<double>()[0];
  }
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / norm;
    for (ParameterGradient& pg : grads)
      with_pair(pg, "clip_gradient_norm", [&](auto zero) {
        using T = decltype(zero);
        T* g = pg.gradient.data<T>();
        const int64_t n = pg.gradient.numel();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) g[i] = static_cast<T>(g[i] * scale);
      });
  }
  return norm;
}

int state_split_axis(const std::string& slot, int ndim, int split_axis) {
  if (split_axis < 0) return -1;
  // "row" drops the last dimension, "col" the one before it ("m", "v": the parameter's).
  if (slot == "row") return split_axis == ndim - 1 ? -1 : split_axis;
  if (slot == "col") {
    if (split_axis == ndim - 2) return -1;
    return split_axis == ndim - 1 ? ndim - 2 : split_axis;
  }
  return split_axis;
}

std::unique_ptr<Optimizer> make_adafactor(const AdafactorOptions& options) {
  return std::make_unique<Adafactor>(options);
}

std::unique_ptr<Optimizer> make_adamw(const AdamWOptions& options) {
  return std::make_unique<AdamW>(options);
}

}  // namespace sw
