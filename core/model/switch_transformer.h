// The Switch Transformer: a T5 v1.0 encoder-decoder whose sparse blocks carry a Switch
// FFN (docs/MATH.md §1-3): the two stacks of blocks (core/model/block.h), the embeddings
// and the losses. Forward returns logits, the CE / aux / z losses and per-layer routing
// statistics; the backward gives every parameter's gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/model/batch.h"
#include "core/model/block.h"
#include "core/model/config.h"
#include "core/model/parameters.h"
#include "core/tensor/tensor.h"

namespace sw {

struct ForwardOptions {
  bool train = false;  // dropout, expert dropout, router jitter, train capacity factor
  uint64_t step = 0;   // addresses the random streams of this step (< 2^40)
  // The index of this batch's first example in the step's global batch (micro-batches
  // and data-parallel shards; < 2^24): each example draws its own dropout and jitter.
  uint64_t first_example = 0;
  bool keep_block_outputs = false;  // fill ForwardOutput::block_outputs (validation)
  // Distillation (docs/MATH.md §5): a teacher's probabilities [B * Td, V] over this batch's
  // decoder positions, mixed into the loss's target with this weight (0: none). CPU.
  const Tensor* teacher_probs = nullptr;
  double teacher_weight = 0.0;
  // Training: called during forward_backward each time some parameters' gradients are
  // final (the rest of the backward adds nothing to them), with their names and gradients
  // (the tensors forward_backward returns). Every parameter comes exactly once, in an
  // order fixed by the model's shape, so every rank's calls match: data parallelism
  // starts their sums there, overlapped with the rest of the backward (docs/MATH.md §6).
  std::function<void(const std::vector<std::pair<std::string, Tensor>>&)> gradients_final;
  // Training: activation recomputation. The forward keeps only each block's input; the
  // backward runs each block's forward again (the same dropout, jitter and routing, from
  // the same streams) just before its backward, so one block's activations live at a time.
  // The same gradients, bit for bit, for about one more forward's compute.
  bool recompute = false;
  // On a GPU, the Switch layers' fixed padded expert layout (TrainConfig
  // fixed_expert_capacity; check_fixed_expert_capacity says where it applies): no layer
  // waits for the router's counts.
  bool fixed_expert_capacity = false;
};

struct BlockOutput {
  Stack stack = Stack::kEncoder;
  int64_t block = 0;
  Tensor hidden;  // [B, T, d] after the block
};

struct ForwardOutput {
  Tensor logits;          // [B, Td, V]
  Tensor encoder_output;  // [B, Te, d], after the encoder's final norm
  double ce_loss = 0.0;   // mean over labelled tokens (0 without labels)
  int64_t label_tokens = 0;
  // With a teacher: the cross-entropy against the mixed target (1 - w) label + w teacher,
  // which takes ce's place in the loss; else equal to ce_loss.
  double target_loss = 0.0;
  double aux_loss = 0.0;                   // load-balancing loss, coefficient included
  double z_loss = 0.0;                     // router z-loss, coefficient included
  double loss = 0.0;                       // target (ce without a teacher) + aux + z
  std::vector<LayerRouting> routing;       // one per sparse block, encoder first
  std::vector<BlockOutput> block_outputs;  // when asked for, encoder first
};

// Incremental decoding (eval mode): the encoder's output and every decoder block's cached
// keys and values. Made by SwitchTransformer::start_decoding, advanced by decode_step.
struct DecoderState {
  Tensor encoder_output;                      // [B, Te, d]
  Tensor encoder_mask;                        // i32 [B, Te]; undefined: no padding
  int64_t length = 0;                         // decoder positions fed so far
  std::vector<BlockCache> blocks;             // per decoder block: keys and values so far
  std::vector<LayerRouting> encoder_routing;  // one per sparse encoder block
  std::vector<LayerRouting> routing;          // the last step's, per sparse decoder block
  int64_t batch() const { return encoder_output.dim(0); }
  // Keeps rows `rows` of the batch, in that order (finished sequences leave; beams move).
  void select_rows(const std::vector<int64_t>& rows);
};

class SwitchTransformer {
 public:
  // Builds and initialises the parameters (docs/MATH.md §4) from `seed`, on `device`. dtype: f32,
  // or f64 for gradient checks on the cpu, bf16 on a GPU (the router stays f32). The
  // parameters are drawn on the host, so every device starts from the same numbers.
  // With an expert group of n > 1 ranks (expert parallelism, core/dist/expert_parallel.h),
  // this rank holds only its E / n experts of every sparse layer (named by their global
  // index, initialised as a single process would) and the group's ranks run every
  // forward and backward together.
  // With a model group of n > 1 ranks (model parallelism, core/dist/model_parallel.h),
  // this rank holds 1/n of every attention sublayer's heads and of every feed-forward's
  // d_ff (each expert's too), again drawn as a single process would draw the whole; the
  // group's ranks see the same tokens and run every forward and backward together. CPU.
  // Both groups together (ep x mp, core/dist/layout.h): the experts split over the expert
  // group, each held expert's d_ff over the model group.
  explicit SwitchTransformer(const ModelConfig& config, uint64_t seed = 0, DType dtype = DType::f32,
                             Device device = Device::cpu(), Communicator* expert_group = nullptr,
                             Communicator* model_group = nullptr);
  // The same model with its parameters allocated but not drawn (their contents undefined):
  // for a copy whose every weight is written before use, such as bf16 training's compute
  // copy, without drawing billions of numbers on the host twice.
  static SwitchTransformer without_initial_values(const ModelConfig& config, uint64_t seed,
                                                  DType dtype, Device device,
                                                  Communicator* expert_group = nullptr,
                                                  Communicator* model_group = nullptr);

  // This model's weights in a model of its own in `dtype` on `device` (same config and
  // seed): a GPU-trained model's cpu copy for generation, a device copy for validation.
  // Whole models only (not one rank's share).
  SwitchTransformer copy_to(Device device, DType dtype) const;

  // Parameters share storage with their tensors: a copy would alias every weight.
  SwitchTransformer(const SwitchTransformer&) = delete;
  SwitchTransformer& operator=(const SwitchTransformer&) = delete;
  SwitchTransformer(SwitchTransformer&&) = default;

  // The batch is on the host (it is validated there); outputs live on the model's device.
  ForwardOutput forward(const Batch& batch, const ForwardOptions& options = {}) const;

  // The forward and the gradient of loss = ce + aux + z (labels required; with a teacher in
  // the options, the mixed target's cross-entropy in ce's place) w.r.t. every parameter, by
  // name in parameters() order (f32 for a bf16 GPU model's bf16 parameters). AUX_PER_LAYER.
  // With `reuse` the gradients live in that buffer (zeroed first) and stay valid until
  // it is used again: a trainer keeps one across steps instead of allocating ~4 bytes
  // per parameter each step.
  ForwardOutput forward_backward(const Batch& batch, const ForwardOptions& options,
                                 std::vector<std::pair<std::string, Tensor>>& gradients,
                                 const LossScales& scales = {},
                                 GradientBuffer* reuse = nullptr) const;

  // Runs the encoder once (input_ids [B, Te] and its mask on the host; the mask may be
  // undefined) and computes every decoder block's cross-attention keys and values, on the
  // model's device.
  // With `dropless` the encoder drops no token by capacity.
  DecoderState start_decoding(const Tensor& input_ids, const Tensor& attention_mask,
                              bool dropless = false) const;
  // Feeds tokens (i32 [B] on the host) at position state.length and returns the next
  // position's logits [B, V] (f32, host): the last row of a full forward over the whole
  // prefix, computed from the cache. Routing groups are this step's tokens; with
  // `dropless` no token is ever dropped by capacity.
  Tensor decode_step(DecoderState& state, const Tensor& tokens, bool dropless = false) const;

  const ModelConfig& config() const { return config_; }
  ParameterStore& parameters() { return params_; }
  const ParameterStore& parameters() const { return params_; }
  uint64_t seed() const { return seed_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  Communicator* expert_group() const { return expert_group_; }
  // Sparse block `block` of stack s: its router's balancing bias (a buffer sharing the
  // model's storage; undefined without router_bias_update_rate, or for a dense block).
  Tensor routing_choice_bias(Stack s, int64_t block) const;
  Communicator* model_group() const { return model_group_; }

 private:
  SwitchTransformer(const ModelConfig& config, uint64_t seed, DType dtype, Device device,
                    Communicator* expert_group, Communicator* model_group, bool draw_values);
  struct StackWeights {
    Stack stack;
    Tensor embedding;      // [V, d]: shared_, or this stack's own table
    Tensor relative_bias;  // [num_buckets, H], owned by block 0
    std::vector<BlockWeights> blocks;
    Tensor final_norm;
  };
  // What the backward needs from one stack's forward.
  struct StackCache {
    bool recompute = false;            // keep block_inputs, not blocks
    std::vector<BlockCache> blocks;    // each block's activations
    std::vector<Tensor> block_inputs;  // with recompute: each block's input
    Tensor final_input, final_inv_rms;
  };
  struct StackInputs {
    const Tensor* ids;
    const Tensor* mask;         // this stack's own padding mask
    const Tensor* memory;       // encoder output (decoder only)
    const Tensor* memory_mask;  // encoder padding mask (decoder only)
  };

  void build_parameters();
  StackWeights build_stack(Stack stack);
  // One stack's forward. Its routing records and terms go to `losses`, which the caller
  // finishes (RoutingLosses::finish_stack); without one, the stack's own, finished here.
  Tensor run_stack(const StackWeights& s, const StackInputs& in, const RunContext& ctx,
                   ForwardOutput& out, StackCache* cache = nullptr,
                   RoutingLosses* losses = nullptr) const;
  // Hands ForwardOptions::gradients_final the parameters whose names start with a prefix
  // and that it has not handed on yet.
  using ReleaseGradients = std::function<void(const std::string& prefix)>;
  // Backward of one stack from d(output); returns d(memory) for the encoder's output
  // (decoder) and accumulates parameter gradients, releasing each block's when it is done.
  Tensor backward_stack(const StackWeights& s, const StackInputs& in, const RunContext& ctx,
                        const StackCache& cache, Tensor d_out, const LossScales& scales,
                        GradientBuffer& grads, const ReleaseGradients& release) const;
  // What every block of a pass through stack s shares (bias: the position bias).
  StackPass pass_for(const StackWeights& s, const StackInputs& in, const RunContext& ctx,
                     const Tensor* bias) const;
  // The position bias [H, length, length] of this rank's heads.
  Tensor position_bias_for(const StackWeights& s, int64_t q_len, int64_t k_len,
                           int64_t first_query = 0) const;
  RunContext context(bool train, uint64_t step, uint64_t first_example = 0) const;
  void validate_batch(const Batch& batch) const;
  // A validated copy of a host batch with its inputs on the model's device (labels stay on
  // the host: the loss reads them there).
  Batch device_batch(const Batch& host_batch) const;
  // The inputs of one stack (memory: the encoder's output, for the decoder).
  static StackInputs stack_inputs(const Batch& batch, Stack stack, const Tensor* memory = nullptr);
  // Both stacks, the output head and, with labels, the cross-entropy: fills `out` and
  // returns the head's input (the decoder output, rescaled when embeddings are tied).
  Tensor run_model(const Batch& batch, const RunContext& ctx, const ForwardOptions& options,
                   ForwardOutput& out, StackCache* encoder_cache = nullptr,
                   StackCache* decoder_cache = nullptr) const;
  // The output projection: the shared embedding when tied, else lm_head.
  const Tensor& output_head() const { return config_.tie_word_embeddings() ? shared_ : lm_head_; }

  ModelConfig config_;
  uint64_t seed_;
  DType dtype_;
  Device device_;
  Communicator* expert_group_ = nullptr;  // not owned
  Communicator* model_group_ = nullptr;   // not owned
  int64_t heads_ = 0;                     // attention heads held here (all but under mp)
  int64_t d_ff_ = 0;                      // d_ff held here
  ParameterStore params_;
  Tensor shared_;   // [V, d]; undefined when each stack has its own input embedding
  Tensor lm_head_;  // [V, d] when embeddings are not tied
  StackWeights encoder_, decoder_;
};

}  // namespace sw
