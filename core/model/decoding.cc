// Cached decoding (eval): the encoder once, then one decoder position per step, each block
// attending to its cached keys and values (core/model/block.h), all on the model's device;
// each step's logits come back to the host, where the search runs (core/infer/generate.cc).
#include <cmath>

#include "core/model/switch_transformer.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/norm.h"

namespace sw {
namespace {

// Rows `rows` of t's first dimension, copied in that order, on t's device (a run of
// consecutive rows is one copy).
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& rows) {
  if (!t.defined()) return t;
  Shape shape = t.shape();
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty(shape, t.dtype(), t.device());
  for (size_t i = 0; i < rows.size();) {
    size_t n = 1;
    while (i + n < rows.size() && rows[i + n] == rows[i] + static_cast<int64_t>(n)) ++n;
    const int64_t first = static_cast<int64_t>(i);
    out.slice(first, first + static_cast<int64_t>(n))
        .copy_from(t.slice(rows[i], rows[i] + static_cast<int64_t>(n)));
    i += n;
  }
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
  check_ids(input_ids, "input_ids");
  SW_CHECK_ARG(input_ids.device().is_cpu() &&
                   (!attention_mask.defined() || attention_mask.device().is_cpu()),
               "start_decoding: input_ids and attention_mask must be on the cpu, got ",
               input_ids.str(), ", ", attention_mask.str());
  ops::check_token_ids(input_ids, config_.vocab_size(), "input_ids");
  check_mask(attention_mask, input_ids, "attention_mask");
  DecoderState state;
  RunContext ctx = context(false, 0);
  ctx.dropless = dropless;
  ForwardOutput out;
  // The model's device holds the encoder's inputs, outputs and every cache.
  const Tensor ids = input_ids.to(device_);
  const Tensor device_mask = attention_mask.defined() ? attention_mask.to(device_) : Tensor();
  const Tensor* mask = device_mask.defined() ? &device_mask : nullptr;
  state.encoder_output = run_stack(encoder_, {&ids, mask, nullptr, nullptr}, ctx, out);
  state.encoder_mask = device_mask;
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
  const int64_t batch = state.batch(), d = config_.d_model();
  SW_CHECK_ARG(tokens.defined() && tokens.dtype() == DType::i32 && tokens.numel() == batch &&
                   tokens.device().is_cpu(),
               "decode_step: tokens must be i32 [", batch, "] on the cpu, got ", tokens.str());
  ops::check_token_ids(tokens.view({batch, 1}), config_.vocab_size(), "decode_step tokens");
  const Tensor ids = tokens.view({batch, 1}).to(device_);
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
  Tensor h = ops::embedding(decoder_.embedding, ids, true);  // checked on the host above
  for (size_t i = 0; i < decoder_.blocks.size(); ++i)
    block_decode(decoder_.blocks[i], static_cast<int64_t>(i), pass, position, h, state.blocks[i],
                 state.routing);
  ++state.length;
  Tensor dec = ops::rms_norm(h, decoder_.final_norm, eps).view({batch, d});
  if (config_.tie_word_embeddings()) ops::scale_(dec, 1.0 / std::sqrt(static_cast<double>(d)));
  // The search runs on the host: the logits come back each step.
  return ops::linear(dec, config_.tie_word_embeddings() ? shared_ : lm_head_)
      .to(DType::f32)
      .to(Device::cpu());
}

}  // namespace sw
