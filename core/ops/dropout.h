// Dropout with masks drawn from a Philox stream: element i is kept iff
// uniform(i) >= rate, and kept elements are scaled by 1 / (1 - rate). The mask is a pure
// function of the stream, so the backward (and the GPU) can rebuild it exactly.
#pragma once

#include <vector>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

struct DropoutSpec {
  double rate = 0.0;
  RandomStream stream;
  bool active() const { return rate > 0.0; }
  // Whether element i survives; callers scale survivors by 1 / (1 - rate).
  bool keeps(uint64_t i) const { return stream.uniform(i) >= static_cast<float>(rate); }
  // f(j, keeps(first + j)) for j in [0, count), one Philox block per four elements
  // instead of one per element.
  template <typename F>
  void for_each_keep(uint64_t first, int64_t count, F f) const {
    const float threshold = static_cast<float>(rate);
    for (int64_t j = 0; j < count;) {
      const uint64_t i = first + static_cast<uint64_t>(j);
      const Philox4x32 block = stream.block(static_cast<uint32_t>(i >> 2));
      for (uint64_t k = i & 3; k < 4 && j < count; ++k, ++j)
        f(j, uniform_from_bits(block.v[k]) >= threshold);
    }
  }
};

void dropout_(Tensor& x, const DropoutSpec& spec);

// Dropout on x [rows, width] whose row r draws from stream row stream_rows[r]: element
// (r, j) uses stream element stream_rows[r] * width + j. Rows that moved (the Switch
// experts' grouped layout) then keep the masks of their tokens, whatever the layout.
void dropout_rows_(Tensor& x, const DropoutSpec& spec, const std::vector<int64_t>& stream_rows);

}  // namespace sw::ops
