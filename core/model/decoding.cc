// Cached decoding (eval): the encoder once, then one decoder position per step, each block
// attending to its cached keys and values (core/model/block.h).
#include <cmath>
#include <cstring>

#include "core/model/switch_transformer.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/norm.h"

namespace sw {
namespace {

// Rows `rows` of t's first dimension, copied in that order.
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& rows) {
  if (!t.defined()) return t;
  Shape shape = t.shape();
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty(shape, t.dtype());
  const size_t row_bytes = t.nbytes() / static_cast<size_t>(t.dim(0));
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(static_cast<char*>(out.raw()) + i * row_bytes,
                static_cast<const char*>(t.raw()) + static_cast<size_t>(rows[i]) * row_bytes,
                row_bytes);
  return out;
}

}  // namespace

void DecoderState::select_rows(const std::vector<int64_t>& rows) {
  for (int64_t r : rows)
    SW_CHECK_ARG(r >= 0 && r < batch(), "select_rows: row ", r, " of a batch of ", batch());
  encoder_output = take_rows(encoder_output, rows);
  encoder_mask = take_rows(encoder_mask, rows);
  for (BlockCache& c : blocks)
    for (Tensor* t : {&c.self_k, &c.self_v, &c.cross_k, &c.cross_v}) *t = take_rows(*t, rows);
}

DecoderState SwitchTransformer::start_decoding(const Tensor& input_ids,
                                               const Tensor& attention_mask, bool dropless) const {
  SW_CHECK(device_.is_cpu(), Status::kUnsupported,
           "cached decoding runs on the CPU path in this version");
  check_ids(input_ids, "input_ids");
  ops::check_token_ids(input_ids, config_.vocab_size(), "input_ids");
  check_mask(attention_mask, input_ids, "attention_mask");
  DecoderState state;
  RunContext ctx = context(false, 0);
  ctx.dropless = dropless;
  ForwardOutput out;
  const Tensor* mask = attention_mask.defined() ? &attention_mask : nullptr;
  state.encoder_output = run_stack(encoder_, {&input_ids, mask, nullptr, nullptr}, ctx, out);
  state.encoder_mask = attention_mask;
  state.encoder_routing = std::move(out.routing);
  state.blocks.resize(decoder_.blocks.size());
  for (size_t i = 0; i < decoder_.blocks.size(); ++i) {
    state.blocks[i].cross_k = ops::linear(state.encoder_output, decoder_.blocks[i].cross_attn.k);
    state.blocks[i].cross_v = ops::linear(state.encoder_output, decoder_.blocks[i].cross_attn.v);
  }
  return state;
}

Tensor SwitchTransformer::decode_step(DecoderState& state, const Tensor& tokens,
                                      bool dropless) const {
  SW_CHECK(device_.is_cpu(), Status::kUnsupported,
           "cached decoding runs on the CPU path in this version");
  const int64_t batch = state.batch(), d = config_.d_model();
  SW_CHECK_ARG(tokens.defined() && tokens.dtype() == DType::i32 && tokens.numel() == batch,
               "decode_step: tokens must be i32 [", batch, "], got ", tokens.str());
  const Tensor ids = tokens.view({batch, 1});
  ops::check_token_ids(ids, config_.vocab_size(), "decode_step tokens");
  RunContext ctx = context(false, 0);
  ctx.dropless = dropless;
  const double eps = config_.norm_epsilon();
  const int64_t position = state.length;
  // The position bias of this query against every key so far: one row per step, so a
  // step's cost does not grow with the square of the length.
  const Tensor bias = position_bias_for(decoder_, 1, position + 1, position);
  const Tensor* memory_mask = state.encoder_mask.defined() ? &state.encoder_mask : nullptr;
  const StackInputs in{&ids, nullptr, &state.encoder_output, memory_mask};
  const StackPass pass = pass_for(decoder_, in, ctx, &bias);
  state.routing.clear();
  Tensor h = ops::embedding(decoder_.embedding, ids);
  for (size_t i = 0; i < decoder_.blocks.size(); ++i)
    block_decode(decoder_.blocks[i], static_cast<int64_t>(i), pass, h, state.blocks[i],
                 state.routing);
  ++state.length;
  Tensor dec = ops::rms_norm(h, decoder_.final_norm, eps).view({batch, d});
  if (config_.tie_word_embeddings()) {
    ops::scale_(dec, 1.0 / std::sqrt(static_cast<double>(d)));
    return ops::linear(dec, shared_).to(DType::f32);
  }
  return ops::linear(dec, lm_head_).to(DType::f32);
}

}  // namespace sw
