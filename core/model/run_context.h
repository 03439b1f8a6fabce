// What one forward pass needs besides weights and inputs: train or eval, and the
// coordinates of its random streams (seed, step). Dropout sites are numbered by the
// layer that owns them, so every mask is a pure function of (seed, step, site).
#pragma once

#include <cstdint>

#include "core/dist/communicator.h"
#include "core/ops/dropout.h"
#include "core/ops/router.h"

namespace sw {

// The kind of random site inside one block (the low 4 bits of a site id).
enum class SiteKind : uint32_t {
  kEmbedding = 0,
  kSelfAttentionProbs = 1,
  kSelfAttentionOut = 2,
  kCrossAttentionProbs = 3,
  kCrossAttentionOut = 4,
  kFeedForwardInner = 5,
  kFeedForwardOut = 6,
  kRouterJitter = 7,
  kFinal = 8,
};

// Site id of (stack, block, kind); the stack's embedding and final norm use block 0.
inline uint32_t random_site(int stack, int64_t block, SiteKind kind) {
  return (static_cast<uint32_t>(stack) << 20) | (static_cast<uint32_t>(block) << 4) |
         static_cast<uint32_t>(kind);
}

struct RunContext {
  bool train = false;
  bool keep_block_outputs = false;  // for validation: every block's output hidden state
  uint64_t seed = 0;
  uint64_t step = 0;
  bool dropless = false;  // inference: no token dropped by expert capacity
  // Model parallelism (core/dist/model_parallel.h): the group this rank's partial sums are
  // completed over; null: a single rank holds the whole model.
  Communicator* model_group = nullptr;

  // Completes a model-parallel partial sum (in place); a no-op without model parallelism.
  void reduce_partial(Tensor& t) const {
    if (model_group) model_group->all_reduce_sum(t);
  }
  // A dropout spec for this rank's part of a tensor whose rows are split over the model
  // group, `width` elements of each row here.
  ops::DropoutSpec dropout_part(const ops::DropoutSpec& spec, int64_t width) const {
    return model_group ? spec.part(width, model_group->size(), model_group->rank()) : spec;
  }

  // Dropout at `rate` for a site; inactive in eval.
  ops::DropoutSpec dropout(uint32_t site, double rate) const {
    ops::DropoutSpec spec;
    spec.rate = train ? rate : 0.0;
    spec.stream = RandomStream(seed, RandomPurpose::kDropout, site, step);
    return spec;
  }
  ops::RouterJitter jitter(uint32_t site, double eps) const {
    ops::RouterJitter j;
    j.eps = train ? eps : 0.0;
    j.stream = RandomStream(seed, RandomPurpose::kJitter, site, step);
    return j;
  }
};

}  // namespace sw
