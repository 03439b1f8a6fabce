// Sparse upcycling (Komatsuzaki et al. 2022): a Switch model initialised from a trained
// dense one. Every weight the two share is copied; each expert of a sparse block starts as
// a copy of that block's dense feed-forward; the routers start fresh (from the seed).
#pragma once

#include <cstdint>

#include "core/model/switch_transformer.h"

namespace sw {

// `dense` must have no sparse block (an MoE source is an error naming its first sparse
// block), and the same shapes everywhere
// else (vocabulary, widths, layers, heads, activation, embeddings); a difference is an
// error naming the field (or the block). The result lives on the cpu in f32.
SwitchTransformer upcycle(const SwitchTransformer& dense, const ModelConfig& sparse, uint64_t seed);

}  // namespace sw
