// What one forward pass needs besides weights and inputs: train or eval, and the
// coordinates of its random streams: seed, step, the first example of this batch in the
// step's global batch, and the site (numbered by the layer that owns it). Every mask is a
// pure function of those (docs/MATH.md §9), so micro-batches and data-parallel shards
// draw their own masks, and a data-parallel run equals one process with the same
// micro-batches.
#pragma once

#include <cstdint>

#include "core/dist/communicator.h"
#include "core/ops/dropout.h"
#include "core/ops/router.h"
#include "core/ops/storage.h"

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
  uint64_t step = 0;                   // < 2^40
  uint64_t first_example = 0;          // < 2^24: this batch's first example in the step's batch
  bool dropless = false;               // inference: no token dropped by expert capacity
  bool fixed_expert_capacity = false;  // ForwardOptions::fixed_expert_capacity
  // Model parallelism (core/dist/model_parallel.h): the group this rank's partial sums are
  // completed over; null: a single rank holds the whole model.
  Communicator* model_group = nullptr;

  // Completes a model-parallel partial sum (in place; stored like an op's output,
  // core/ops/storage.h); a no-op without model parallelism.
  void reduce_partial(Tensor& t) const {
    if (!model_group) return;
    model_group->all_reduce_sum(t);
    ops::stored(t);
  }
  // A dropout spec for this rank's part of a tensor whose rows are split over the model
  // group, `width` elements of each row here.
  ops::DropoutSpec dropout_part(const ops::DropoutSpec& spec, int64_t width) const {
    return model_group ? spec.part(width, model_group->size(), model_group->rank()) : spec;
  }

  // Dropout at `rate` for a site, its elements indexed within this batch; inactive in eval.
  ops::DropoutSpec dropout(uint32_t site, double rate) const {
    return dropout_keyed(site, rate, step | (first_example << kExampleShift));
  }
  // Dropout whose rows are indexed by their global token in the step's batch (expert
  // dropout: rows move between ranks, each keeps its token's mask wherever it runs).
  ops::DropoutSpec token_dropout(uint32_t site, double rate) const {
    return dropout_keyed(site, rate, step);
  }
  ops::RouterJitter jitter(uint32_t site, double eps) const {
    ops::RouterJitter j;
    j.eps = train ? eps : 0.0;
    j.stream =
        RandomStream(seed, RandomPurpose::kJitter, site, step | (first_example << kExampleShift));
    return j;
  }

  // Where the first example sits in a stream's step word.
  static constexpr int kExampleShift = 40;

 private:
  ops::DropoutSpec dropout_keyed(uint32_t site, double rate, uint64_t step_word) const {
    ops::DropoutSpec spec;
    spec.rate = train ? rate : 0.0;
    spec.stream = RandomStream(seed, RandomPurpose::kDropout, site, step_word);
    return spec;
  }
};

}  // namespace sw
