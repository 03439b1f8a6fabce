// Model parallelism (paper §5, the Mesh-TensorFlow layout of Switch-XXL; docs/MATH.md §6): the
// attention heads and the d_ff dimension of every feed-forward (the dense ones and each
// expert) are split over a model-parallel group of n ranks that all see the same tokens.
// The first projections (q, k, v, wi) are split by rows and the second (o, wo) by columns,
// so each rank computes a partial sum of its sublayer's output: one all-reduce of
// [tokens, d_model] completes it in the forward, and one completes the gradient of the
// sublayer's input in the backward. Embeddings, norms, routers and the position-bias
// table are replicated.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/dist/communicator.h"
#include "core/tensor/tensor.h"

namespace sw {

// Which part of a tensor a rank holds: part `index` of `parts` equal parts along `axis`
// (axis -1: the whole tensor).
struct Split {
  int axis = -1;
  int parts = 1;
  int index = 0;
  bool whole() const { return axis < 0 || parts == 1; }
  // The whole tensor's shape from a part's.
  Shape full_shape(const Shape& part) const;
};

// Part `split.index` of `full` (a copy).
Tensor take_part(const Tensor& full, const Split& split);

// The whole tensor from every rank's part along `axis` (rank order; collective over the
// group, each rank passing its part).
Tensor gather_parts(Communicator& group, const Tensor& part, int axis);

// Named tensors split over the group (axis_of(name) >= 0) -> the whole ones (collective;
// every rank returns the whole set). axis_of -1: passed through.
std::vector<std::pair<std::string, Tensor>> gather_model_parallel(
    Communicator& group, const std::vector<std::pair<std::string, Tensor>>& local,
    const std::function<int(const std::string&)>& axis_of);

}  // namespace sw
