// Helpers shared by the C++ tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>

#include "core/model/batch.h"
#include "core/tensor/error.h"
#include "core/tensor/tensor.h"

namespace sw::testing {

// The message of the sw::Error f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// max |a - b| / max |b|: the relative error the tests state tolerances in.
inline double max_relative_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape()) << a.str() << " vs " << b.str();
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i) {
    const double x = a.item(i), y = b.item(i);
    if (std::isnan(x) || std::isnan(y)) return INFINITY;  // NaN never passes
    max_diff = std::max(max_diff, std::fabs(x - y));
    max_ref = std::max(max_ref, std::fabs(y));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

// A tensor of the given dtype with N(0, std) entries from a seeded std::mt19937 (an
// independent generator, not the library's Philox).
inline Tensor random_tensor(const Shape& shape, DType dtype, uint32_t seed, double std = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, std);
  Tensor t = Tensor::empty(shape, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = dist(gen);
  return t.to(dtype);
}

// Central-difference gradient check: ||numeric - analytic|| / max(||numeric||, ||analytic||)
// for dL/dx, perturbing the f64 tensor x in place (and restoring it) by +-h per element.
inline double gradient_error(Tensor& x, const std::function<double()>& loss, const Tensor& analytic,
                             double h = 1e-6) {
  EXPECT_EQ(x.shape(), analytic.shape());
  double diff = 0, norm_num = 0, norm_ana = 0;
  double* p = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double up = loss();
    p[i] = saved - h;
    const double down = loss();
    p[i] = saved;
    const double numeric = (up - down) / (2 * h), a = analytic.item(i);
    diff += (numeric - a) * (numeric - a);
    norm_num += numeric * numeric;
    norm_ana += a * a;
  }
  const double scale = std::sqrt(std::max(norm_num, norm_ana));
  return scale > 0 ? std::sqrt(diff) / scale : std::sqrt(diff);
}

// Rows [begin, end) of a batch's sequences (absent masks and labels stay absent).
inline Batch batch_rows(const Batch& b, int64_t begin, int64_t end) {
  Batch out;
  for (auto [dst, src] : {std::pair{&out.input_ids, &b.input_ids},
                          {&out.attention_mask, &b.attention_mask},
                          {&out.decoder_input_ids, &b.decoder_input_ids},
                          {&out.decoder_attention_mask, &b.decoder_attention_mask},
                          {&out.labels, &b.labels}})
    if (src->defined()) *dst = src->slice(begin, end);
  return out;
}

}  // namespace sw::testing
