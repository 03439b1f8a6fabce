#include "core/model/switch_transformer.h"

#include <cmath>
#include <optional>
#include <string>

#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/position_bias.h"
#include "core/ops/storage.h"

namespace sw {
namespace {

// The config the Switch layers route with: the model's, or with no capacity limit
// (inference's dropless option).
ModelConfig routing_config_for(const ModelConfig& config, bool dropless) {
  ModelConfig c = config;
  if (dropless) c.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  return c;
}

}  // namespace

SwitchTransformer::SwitchTransformer(const ModelConfig& config, uint64_t seed, DType dtype,
                                     Device device, Communicator* expert_group,
                                     Communicator* model_group)
    : SwitchTransformer(config, seed, dtype, device, expert_group, model_group, true) {}

SwitchTransformer SwitchTransformer::without_initial_values(const ModelConfig& config,
                                                            uint64_t seed, DType dtype,
                                                            Device device,
                                                            Communicator* expert_group,
                                                            Communicator* model_group) {
  return SwitchTransformer(config, seed, dtype, device, expert_group, model_group, false);
}

SwitchTransformer::SwitchTransformer(const ModelConfig& config, uint64_t seed, DType dtype,
                                     Device device, Communicator* expert_group,
                                     Communicator* model_group, bool draw_values)
    : config_(config),
      seed_(seed),
      dtype_(dtype),
      device_(device),
      expert_group_(expert_group && expert_group->size() > 1 ? expert_group : nullptr),
      model_group_(model_group && model_group->size() > 1 ? model_group : nullptr) {
  validate(config_);
  heads_ = config_.num_heads();
  d_ff_ = config_.d_ff();
  if (model_group_) {
    const int n = model_group_->size();
    SW_CHECK_ARG(expert_group_ != model_group_,
                 "expert and model parallelism need different groups of ranks (a layout's "
                 "expert group and model group meet in one rank)");
    SW_CHECK_ARG(heads_ % n == 0, "model parallelism: num_heads ", heads_, " does not split over ",
                 n, " ranks");
    SW_CHECK_ARG(d_ff_ % n == 0, "model parallelism: d_ff ", d_ff_, " does not split over ", n,
                 " ranks");
    heads_ /= n;
    d_ff_ /= n;
  }
  SW_CHECK(device.is_cpu() || config_.num_selected_experts() == 1, Status::kUnsupported,
           "num_selected_experts ", config_.num_selected_experts(),
           ": top-k routing runs on the cpu in this version (the GPU router is top-1)");
  SW_CHECK(device.is_cpu() || config_.router_bias_update_rate() == 0, Status::kUnsupported,
           "router_bias_update_rate: aux-loss-free balancing runs on the cpu in this version");
  SW_CHECK(device.is_cpu() || config_.routing() == ModelConfig::TOKENS_CHOOSE, Status::kUnsupported,
           "routing EXPERT_CHOICE runs on the cpu in this version (the GPU router is top-1)");
  if (device.is_cpu())
    SW_CHECK(dtype == DType::f32 || dtype == DType::f64, Status::kUnsupported, "model dtype ",
             dtype_name(dtype), ": the cpu model runs in f32 or f64");
  else
    SW_CHECK(dtype == DType::f32 || dtype == DType::bf16, Status::kUnsupported, "model dtype ",
             dtype_name(dtype), ": a GPU model runs in f32 (parity) or bf16");
  build_parameters();
  if (draw_values) initialize(params_, config_.init_scheme(), config_.init_scale(), seed_);
}

void SwitchTransformer::validate_batch(const Batch& b) const {
  check_ids(b.input_ids, "input_ids");
  check_ids(b.decoder_input_ids, "decoder_input_ids");
  SW_CHECK_ARG(b.decoder_input_ids.dim(0) == b.input_ids.dim(0), "decoder_input_ids: batch size ",
               b.decoder_input_ids.dim(0), " differs from input_ids' ", b.input_ids.dim(0));
  ops::check_token_ids(b.input_ids, config_.vocab_size(), "input_ids");
  ops::check_token_ids(b.decoder_input_ids, config_.vocab_size(), "decoder_input_ids");
  check_mask(b.attention_mask, b.input_ids, "attention_mask");
  check_mask(b.decoder_attention_mask, b.decoder_input_ids, "decoder_attention_mask");
  if (b.labels.defined()) {
    check_shape(b.labels, b.decoder_input_ids.shape(), "labels");
    check_dtype(b.labels, DType::i32, "labels");
    const int32_t* label = b.labels.data<int32_t>();
    for (int64_t i = 0; i < b.labels.numel(); ++i)
      SW_CHECK(label[i] == ops::kIgnoreIndex || (label[i] >= 0 && label[i] < config_.vocab_size()),
               Status::kOutOfRange, "labels: label ", label[i], " at flat position ", i,
               " is outside the vocabulary [0, ", config_.vocab_size(), ") and is not ",
               ops::kIgnoreIndex, " (ignored)");
  }
}

Tensor SwitchTransformer::routing_choice_bias(Stack s, int64_t block) const {
  const StackWeights& stack = s == Stack::kEncoder ? encoder_ : decoder_;
  SW_CHECK_ARG(block >= 0 && block < static_cast<int64_t>(stack.blocks.size()),
               "routing_choice_bias: ", stack_name(s), " has no block ", block);
  return stack.blocks[block].switch_ffn.choice_bias;
}

SwitchTransformer SwitchTransformer::copy_to(Device device, DType dtype) const {
  SW_CHECK_ARG(!expert_group_ && !model_group_,
               "copy_to: this model is one rank's share of a distributed model");
  SwitchTransformer m(config_, seed_, dtype, device);
  for (const auto& e : params_.entries()) m.parameters().set(e.name, e.tensor.to(Device::cpu()));
  return m;
}

Tensor SwitchTransformer::position_bias_for(const StackWeights& s, int64_t q_len, int64_t k_len,
                                            int64_t first_query) const {
  // In the table's dtype on the cpu, in f32 on a GPU (attention's softmax reads it in f32).
  Tensor bias = ops::position_bias(s.relative_bias, q_len, k_len, s.stack == Stack::kEncoder,
                                   config_.relative_attention_max_distance(), first_query);
  if (model_group_) {  // this rank's heads
    const int64_t first = model_group_->rank() * heads_;
    bias = bias.slice(first, first + heads_);
  }
  return bias;
}

RunContext SwitchTransformer::context(bool train, uint64_t step, uint64_t first_example) const {
  SW_CHECK_ARG(step < (uint64_t{1} << RunContext::kExampleShift), "forward: step ", step,
               " exceeds the random streams' 2^40 steps");
  SW_CHECK_ARG(first_example < (uint64_t{1} << (64 - RunContext::kExampleShift)),
               "forward: first_example ", first_example, " exceeds 2^24 examples per step");
  RunContext ctx;
  ctx.train = train;
  ctx.seed = seed_;
  ctx.step = step;
  ctx.first_example = first_example;
  ctx.model_group = model_group_;
  return ctx;
}

StackPass SwitchTransformer::pass_for(const StackWeights& s, const StackInputs& in,
                                      const RunContext& ctx, const Tensor* bias) const {
  StackPass pass;
  pass.config = &config_;
  pass.routing_config = routing_config_for(config_, ctx.dropless);
  pass.stack = s.stack;
  pass.ctx = &ctx;
  pass.heads = heads_;
  pass.d_ff = d_ff_;
  pass.expert_group = expert_group_;
  pass.batch = in.ids->dim(0);
  pass.length = in.ids->dim(1);
  pass.memory_length = in.memory ? in.memory->dim(1) : 0;
  pass.bias = bias;
  pass.mask = in.mask;
  pass.memory = in.memory;
  pass.memory_mask = in.memory_mask;
  return pass;
}

Tensor SwitchTransformer::run_stack(const StackWeights& s, const StackInputs& in,
                                    const RunContext& ctx, ForwardOutput& out, StackCache* cache,
                                    RoutingLosses* losses) const {
  const int st = static_cast<int>(s.stack);
  const double rate = config_.dropout_rate();
  Tensor h = ops::embedding(s.embedding, *in.ids, true);  // validate_batch checked them
  ops::dropout_(h, ctx.dropout(random_site(st, 0, SiteKind::kEmbedding), rate));
  const Tensor bias = position_bias_for(s, in.ids->dim(1), in.ids->dim(1));
  const StackPass pass = pass_for(s, in, ctx, &bias);
  std::optional<RoutingLosses> own_losses;
  if (!losses) losses = &own_losses.emplace(config_, s.stack, pass.batch, out.aux_loss, out.z_loss);
  const bool keep_blocks = cache && !cache->recompute;
  if (keep_blocks) cache->blocks.assign(s.blocks.size(), BlockCache{});
  for (size_t i = 0; i < s.blocks.size(); ++i) {
    const int64_t blk = static_cast<int64_t>(i);
    if (cache && cache->recompute) cache->block_inputs.push_back(h.clone());
    block_forward(s.blocks[i], blk, pass, h, *losses, out.routing,
                  keep_blocks ? &cache->blocks[i] : nullptr);
    if (ctx.keep_block_outputs) out.block_outputs.push_back({s.stack, blk, h.clone()});
  }
  if (own_losses) own_losses->finish_stack();
  if (cache) cache->final_input = h;
  Tensor final_out = ops::rms_norm(h, s.final_norm, config_.norm_epsilon(),
                                   cache ? &cache->final_inv_rms : nullptr);
  ops::dropout_(final_out, ctx.dropout(random_site(st, 0, SiteKind::kFinal), rate));
  return final_out;
}

Tensor SwitchTransformer::backward_stack(const StackWeights& s, const StackInputs& in,
                                         const RunContext& ctx, const StackCache& cache,
                                         Tensor d_out, const LossScales& scales,
                                         GradientBuffer& grads,
                                         const ReleaseGradients& release) const {
  const int st = static_cast<int>(s.stack);
  const bool decoder = s.stack == Stack::kDecoder;
  const int64_t length = in.ids->dim(1), heads = heads_;
  const double rate = config_.dropout_rate();
  // Dropout is linear with a fixed mask: its backward applies the same spec to the grad.
  ops::dropout_(d_out, ctx.dropout(random_site(st, 0, SiteKind::kFinal), rate));
  Tensor dh = ops::rms_norm_backward(d_out, cache.final_input, s.final_norm, cache.final_inv_rms,
                                     grads.of(s.final_norm));
  const std::string stack = stack_name(s.stack);
  release(stack + ".final_layer_norm.");
  const Tensor bias = position_bias_for(s, length, length);
  const StackPass pass = pass_for(s, in, ctx, &bias);
  Tensor d_bias = Tensor::zeros(bias.shape(), bias.dtype(), bias.device());
  Tensor d_memory =
      decoder ? Tensor::zeros(in.memory->shape(), in.memory->dtype(), device_) : Tensor();
  for (int64_t blk = static_cast<int64_t>(s.blocks.size()) - 1; blk >= 0; --blk) {
    BlockCache rebuilt;
    if (cache.recompute) {
      // The block's forward again from its input, for its backward only (its routing
      // statistics and losses were counted in the forward).
      Tensor h = cache.block_inputs[blk].clone();
      double aux = 0, z = 0;
      RoutingLosses losses(config_, s.stack, pass.batch, aux, z);
      std::vector<LayerRouting> routing;
      block_forward(s.blocks[blk], blk, pass, h, losses, routing, &rebuilt);
    }
    block_backward(s.blocks[blk], blk, pass, cache.recompute ? rebuilt : cache.blocks[blk], scales,
                   dh, grads, d_bias, d_memory);
    // Block 0 also holds the position-bias table, final only below.
    if (blk > 0) release(stack + ".block." + std::to_string(blk) + ".");
  }
  if (decoder) ctx.reduce_partial(d_memory);
  // The shared bias table: bias[h, i, j] = table[bucket(j - i), h]. Under mp this rank's
  // heads are columns [first, first + heads) and the table's gradient is summed over the
  // group.
  Tensor& d_table = grads.of(s.relative_bias);
  const int64_t first = model_group_ ? model_group_->rank() * heads : 0;
  Tensor d_table_here = Tensor::zeros(d_table.shape(), d_table.dtype(), d_table.device());
  ops::position_bias_backward(d_bias, !decoder, config_.relative_attention_max_distance(), first,
                              d_table_here);
  {
    const ops::Bf16Storage f32_gradient(false);  // a weight gradient: f32 under bf16 storage
    ctx.reduce_partial(d_table_here);
    ops::add_(d_table, d_table_here);
  }
  // Embedding (dropout first): rows of the stack's input table.
  ops::dropout_(dh, ctx.dropout(random_site(st, 0, SiteKind::kEmbedding), rate));
  ops::embedding_backward(dh, *in.ids, grads.of(s.embedding), true);
  release(stack + ".");  // block 0 and the stack's own embedding table, if it has one
  return d_memory;
}

Batch SwitchTransformer::device_batch(const Batch& host_batch) const {
  for (const Tensor* t :
       {&host_batch.input_ids, &host_batch.attention_mask, &host_batch.decoder_input_ids,
        &host_batch.decoder_attention_mask, &host_batch.labels})
    SW_CHECK_ARG(!t->defined() || t->device().is_cpu(), "batch: tensors must be on the cpu, got ",
                 t->str());
  validate_batch(host_batch);
  Batch batch = host_batch;
  if (!device_.is_cpu())
    for (Tensor* t : {&batch.input_ids, &batch.attention_mask, &batch.decoder_input_ids,
                      &batch.decoder_attention_mask})
      if (t->defined()) *t = t->to(device_);
  return batch;
}

SwitchTransformer::StackInputs SwitchTransformer::stack_inputs(const Batch& batch, Stack stack,
                                                               const Tensor* memory) {
  const Tensor* enc_mask = batch.attention_mask.defined() ? &batch.attention_mask : nullptr;
  if (stack == Stack::kEncoder) return {&batch.input_ids, enc_mask, nullptr, nullptr};
  const Tensor* dec_mask =
      batch.decoder_attention_mask.defined() ? &batch.decoder_attention_mask : nullptr;
  return {&batch.decoder_input_ids, dec_mask, memory, enc_mask};
}

Tensor SwitchTransformer::run_model(const Batch& batch, const RunContext& ctx,
                                    const ForwardOptions& options, ForwardOutput& out,
                                    StackCache* encoder_cache, StackCache* decoder_cache) const {
  // Both stacks' routing sums are read back after the whole forward is enqueued, so the
  // host does not wait for the encoder's before it starts the decoder.
  RoutingLosses encoder_losses(config_, Stack::kEncoder, batch.input_ids.dim(0), out.aux_loss,
                               out.z_loss);
  RoutingLosses decoder_losses(config_, Stack::kDecoder, batch.decoder_input_ids.dim(0),
                               out.aux_loss, out.z_loss);
  out.encoder_output = run_stack(encoder_, stack_inputs(batch, Stack::kEncoder), ctx, out,
                                 encoder_cache, &encoder_losses);
  Tensor dec = run_stack(decoder_, stack_inputs(batch, Stack::kDecoder, &out.encoder_output), ctx,
                         out, decoder_cache, &decoder_losses);
  // Tied embeddings: rescale by d_model^-0.5 before the shared projection (docs/MATH.md §1).
  if (config_.tie_word_embeddings())
    ops::scale_(dec, 1.0 / std::sqrt(static_cast<double>(config_.d_model())));
  out.logits = ops::linear(dec, output_head());
  if (batch.labels.defined()) {
    const int64_t rows = batch.decoder_input_ids.numel();
    const ops::CrossEntropy ce = ops::cross_entropy(out.logits.view({rows, config_.vocab_size()}),
                                                    batch.labels.view({rows}));
    out.ce_loss = out.target_loss = ce.loss;
    out.label_tokens = ce.count;
    if (options.teacher_probs)
      out.target_loss =
          ops::distillation_cross_entropy(out.logits.view({rows, config_.vocab_size()}),
                                          batch.labels.view({rows}), *options.teacher_probs,
                                          options.teacher_weight)
              .loss;
  }
  encoder_losses.finish_stack();
  decoder_losses.finish_stack();
  out.loss = out.target_loss + out.aux_loss + out.z_loss;
  return dec;
}

ForwardOutput SwitchTransformer::forward_backward(
    const Batch& host_batch, const ForwardOptions& options,
    std::vector<std::pair<std::string, Tensor>>& gradients, const LossScales& scales,
    GradientBuffer* reuse) const {
  SW_CHECK(config_.aux_loss_mode() == ModelConfig::AUX_PER_LAYER, Status::kUnsupported,
           "forward_backward: the HF aux_loss_modes have no backward yet (use AUX_PER_LAYER)");
  SW_CHECK_ARG(host_batch.labels.defined(), "forward_backward: labels are required");
  // A bf16 model (on a GPU) computes in bf16 with its router in f32; its gradients are f32
  // (gradient_dtype), for the f32 masters of bf16 training (docs/MATH.md §5 Precision).
  const Batch batch = device_batch(host_batch);
  RunContext ctx = context(options.train, options.step, options.first_example);
  ctx.fixed_expert_capacity = options.fixed_expert_capacity;
  ForwardOutput out;
  StackCache enc_cache, dec_cache;
  enc_cache.recompute = dec_cache.recompute = options.recompute;
  const Tensor dec = run_model(batch, ctx, options, out, &enc_cache, &dec_cache);

  const int64_t rows = batch.decoder_input_ids.numel(), vocab = config_.vocab_size();
  const Tensor& head = output_head();
  GradientBuffer fresh;
  GradientBuffer& grads = reuse ? *reuse : fresh;
  grads.zero();
  std::vector<char> released(params_.entries().size(), 0);
  const ReleaseGradients release = [&](const std::string& prefix) {
    if (!options.gradients_final) return;
    std::vector<std::pair<std::string, Tensor>> ready;
    for (size_t i = 0; i < released.size(); ++i) {
      const ParameterStore::Entry& e = params_.entries()[i];
      if (released[i] || e.name.compare(0, prefix.size(), prefix) != 0) continue;
      released[i] = 1;
      ready.emplace_back(e.name, grads.at(e.tensor));
    }
    if (!ready.empty()) options.gradients_final(ready);
  };
  const Tensor logits = out.logits.view({rows, vocab}), labels = batch.labels.view({rows});
  const Tensor d_logits =
      options.teacher_probs
          ? ops::distillation_cross_entropy_backward(logits, labels, *options.teacher_probs,
                                                     options.teacher_weight, scales.ce)
          : ops::cross_entropy_backward(logits, labels, scales.ce);
  ops::linear_backward_weight(d_logits, dec.view({rows, config_.d_model()}), grads.of(head), true);
  release("lm_head.");  // an untied head; a tied one is the shared table, final at the end
  Tensor d_dec = ops::linear_backward_input(d_logits, head).view(dec.shape());
  if (config_.tie_word_embeddings())
    ops::scale_(d_dec, 1.0 / std::sqrt(static_cast<double>(config_.d_model())));
  const Tensor d_memory =
      backward_stack(decoder_, stack_inputs(batch, Stack::kDecoder, &out.encoder_output), ctx,
                     dec_cache, d_dec, scales, grads, release);
  backward_stack(encoder_, stack_inputs(batch, Stack::kEncoder), ctx, enc_cache, d_memory, scales,
                 grads, release);
  release("");  // the shared embedding table and anything else
  gradients = grads.by_name(params_);
  return out;
}

ForwardOutput SwitchTransformer::forward(const Batch& host_batch,
                                         const ForwardOptions& options) const {
  // The model's device gets its own copy of the inputs (labels stay: the loss reads them).
  const Batch batch = device_batch(host_batch);
  RunContext ctx = context(options.train, options.step, options.first_example);
  ctx.keep_block_outputs = options.keep_block_outputs;
  ctx.fixed_expert_capacity = options.fixed_expert_capacity;
  ForwardOutput out;
  run_model(batch, ctx, options, out);
  return out;
}

}  // namespace sw
