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

// The other way, for distillation (paper §4.2: a dense student "initialized with the
// non-expert weights" of its Switch teacher): copies into `student` every teacher parameter
// of the same name and shape (all but the experts and routers for the teacher's dense twin;
// the dense FFNs where the teacher is sparse keep their initialisation). A student sharing
// none is an error. CPU.
void init_from_teacher(const SwitchTransformer& teacher, SwitchTransformer& student);

}  // namespace sw
