// Dropout with masks drawn from a Philox stream: element i is kept iff
// uniform(i) >= rate, and kept elements are scaled by 1 / (1 - rate). The mask is a pure
// function of the stream, so the backward (and the GPU) can rebuild it exactly.
#pragma once

#include <algorithm>
#include <vector>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

struct DropoutSpec {
  double rate = 0.0;
  RandomStream stream;
  // Model parallelism: the tensor is one part of a wider one, so its element i draws the
  // wider tensor's stream element: i's row of `window` elements sits `offset` elements into
  // a row of `stride` (window 0: the tensor is the whole).
  uint64_t window = 0, stride = 0, offset = 0;

  bool active() const { return rate > 0.0; }
  // Part `index` of `parts` equal parts of every row (of width * parts elements).
  DropoutSpec part(int64_t width, int parts, int index) const {
    DropoutSpec s = *this;
    s.window = static_cast<uint64_t>(width);
    s.stride = s.window * static_cast<uint64_t>(parts);
    s.offset = s.window * static_cast<uint64_t>(index);
    return s;
  }
  // The stream element behind element i.
  uint64_t element(uint64_t i) const {
    return window ? i / window * stride + offset + i % window : i;
  }
  // Whether element i survives; callers scale survivors by 1 / (1 - rate).
  bool keeps(uint64_t i) const { return stream.uniform(element(i)) >= static_cast<float>(rate); }
  // f(j, keeps(first + j)) for j in [0, count), one Philox block per four elements
  // instead of one per element.
  template <typename F>
  void for_each_keep(uint64_t first, int64_t count, F f) const {
    if (!window) return keeps_in_stream(first, 0, count, f);
    // Each run inside one row of the window is contiguous in the stream.
    for (int64_t j = 0; j < count;) {
      const uint64_t i = first + static_cast<uint64_t>(j);
      const int64_t run = std::min<int64_t>(count - j, static_cast<int64_t>(window - i % window));
      keeps_in_stream(element(i), j, j + run, f);
      j += run;
    }
  }

 private:
  // f(j, keep of stream element first + j - begin) for j in [begin, end).
  // Whole batches of RandomStream::kBatchBlocks blocks are drawn together (vectorised).
  template <typename F>
  void keeps_in_stream(uint64_t first, int64_t begin, int64_t end, F& f) const {
    const float threshold = static_cast<float>(rate);
    constexpr int kBatch = RandomStream::kBatchBlocks;
    int64_t j = begin;
    // Up to the first block boundary, then batches while at least one whole batch is left.
    while (j < end && ((first + static_cast<uint64_t>(j - begin)) & 3) != 0) {
      const uint64_t i = first + static_cast<uint64_t>(j - begin);
      f(j, uniform_from_bits(stream.block(static_cast<uint32_t>(i >> 2)).v[i & 3]) >= threshold);
      ++j;
    }
    uint32_t words[4][kBatch];
    for (; end - j >= 4 * kBatch; j += 4 * kBatch) {
      stream.blocks(static_cast<uint32_t>((first + static_cast<uint64_t>(j - begin)) >> 2), words);
      for (int l = 0; l < kBatch; ++l)
        for (int w = 0; w < 4; ++w) f(j + 4 * l + w, uniform_from_bits(words[w][l]) >= threshold);
    }
    for (; j < end;) {
      const uint64_t i = first + static_cast<uint64_t>(j - begin);
      const Philox4x32 block = stream.block(static_cast<uint32_t>(i >> 2));
      for (uint64_t k = i & 3; k < 4 && j < end; ++k, ++j)
        f(j, uniform_from_bits(block.v[k]) >= threshold);
    }
  }
};

// x of any shape (f32/f64 on the cpu, f32/bf16 on a GPU), in place; element i is the
// stream's element i. Dropout is linear with a fixed mask: its backward is the same call
// on the gradient.
void dropout_(Tensor& x, const DropoutSpec& spec);

// Dropout on x [rows, width] whose row r draws from stream row stream_rows[r]: element
// (r, j) uses stream element stream_rows[r] * width + j. Rows that moved (the Switch
// experts' grouped layout) then keep the masks of their tokens, whatever the layout.
void dropout_rows_(Tensor& x, const DropoutSpec& spec, const std::vector<int64_t>& stream_rows);
// The same with the stream rows as an i64 [rows] tensor (on the host or x's device), each
// below row_limit: the limit is checked against the stream's size, and rows on a GPU are
// not read back (no wait for the device).
void dropout_rows_(Tensor& x, const DropoutSpec& spec, const Tensor& stream_rows,
                   int64_t row_limit);

// The Eigen implementations behind the device switch (dropout.cc).
namespace cpu {
void dropout_(Tensor& x, const DropoutSpec& spec);
void dropout_rows_(Tensor& x, const DropoutSpec& spec, const std::vector<int64_t>& stream_rows);
}  // namespace cpu

}  // namespace sw::ops
