// The rest of the forward ops and the whole model, CPU against GPU: f32 within 1e-5
// (TF32 off), bf16 within 2e-2 for single ops; the whole f32 forward under identical
// routing, eval and train (dropout masks and jitter come from the shared Philox streams).
#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>

#include "core/data/byte_tokenizer.h"
#include "core/io/safetensors.h"
#include "core/model/switch_transformer.h"
#include "core/ops/attention.h"
#include "core/ops/embedding.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "parity_util.h"

namespace sw {
namespace {

using testing::max_relative_error;
using testing::random_tensor;

using parity::gpu;
using parity::host;
using parity::kGpu;
using ModelParity = parity::GpuTest;

TEST_F(ModelParity, EmbeddingAndRmsNorm) {
  const Tensor table = random_tensor({50, 24}, DType::f32, 1);
  const Tensor ids = Tensor::from_vector<int32_t>({3, 49, 0, 7, 7, 12}, {2, 3});
  EXPECT_EQ(max_relative_error(host(ops::embedding(gpu(table), ids.to(kGpu))),
                               ops::embedding(table, ids)),
            0.0);
  EXPECT_THROW(ops::embedding(gpu(table), Tensor::from_vector<int32_t>({50}, {1}).to(kGpu)), Error);
  const Tensor x = random_tensor({37, 300}, DType::f32, 2, 3.0),
               w = random_tensor({300}, DType::f32, 3);
  Tensor inv_cpu, inv_gpu;
  const Tensor y = ops::rms_norm(x, w, 1e-6, &inv_cpu);
  EXPECT_LE(max_relative_error(host(ops::rms_norm(gpu(x), gpu(w), 1e-6, &inv_gpu)), y), 1e-5);
  EXPECT_LE(max_relative_error(host(inv_gpu), inv_cpu), 1e-5);
  EXPECT_LE(
      max_relative_error(host(ops::rms_norm(gpu(x, DType::bf16), gpu(w, DType::bf16), 1e-6)), y),
      2e-2);
}

TEST_F(ModelParity, AttentionWithBiasMasksAndDropout) {
  const int64_t B = 3, T = 17, S = 21, H = 4, dk = 16;
  const Tensor q = random_tensor({B, T, H * dk}, DType::f32, 4),
               k = random_tensor({B, S, H * dk}, DType::f32, 5);
  const Tensor v = random_tensor({B, S, H * dk}, DType::f32, 6),
               bias = random_tensor({H, T, S}, DType::f32, 7);
  std::vector<int32_t> mask(B * S, 1);
  mask[3] = mask[S + 20] = mask[2 * S + 10] = 0;
  const Tensor key_mask = Tensor::from_vector<int32_t>(mask, {B, S});
  const Tensor gpu_mask = key_mask.to(kGpu), gpu_bias = gpu(bias);
  for (bool causal : {false, true})
    for (double rate : {0.0, 0.2}) {
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " dropout " << rate);
      ops::AttentionInputs cpu_in, gpu_in;
      cpu_in.bias = &bias;
      cpu_in.key_mask = &key_mask;
      gpu_in.bias = &gpu_bias;
      gpu_in.key_mask = &gpu_mask;
      cpu_in.causal = gpu_in.causal = causal;
      cpu_in.dropout.rate = gpu_in.dropout.rate = rate;
      cpu_in.dropout.stream = gpu_in.dropout.stream =
          RandomStream(2, RandomPurpose::kDropout, 9, 3);
      Tensor probs_cpu, probs_gpu;
      const Tensor out = ops::attention(q, k, v, H, cpu_in, &probs_cpu);
      EXPECT_LE(max_relative_error(
                    host(ops::attention(gpu(q), gpu(k), gpu(v), H, gpu_in, &probs_gpu)), out),
                1e-5);
      EXPECT_LE(max_relative_error(host(probs_gpu), probs_cpu), 1e-5);
      EXPECT_LE(max_relative_error(host(ops::attention(gpu(q, DType::bf16), gpu(k, DType::bf16),
                                                       gpu(v, DType::bf16), H, gpu_in)),
                                   out),
                2e-2);
    }
}

TEST_F(ModelParity, CrossEntropy) {
  const Tensor logits = random_tensor({40, 1000}, DType::f32, 8, 4.0);
  std::vector<int32_t> labels(40);
  for (int i = 0; i < 40; ++i) labels[i] = i % 7 == 0 ? -100 : (i * 37) % 1000;
  const Tensor l = Tensor::from_vector<int32_t>(labels, {40});
  const ops::CrossEntropy cpu = ops::cross_entropy(logits, l);
  const ops::CrossEntropy dev = ops::cross_entropy(gpu(logits), l);
  EXPECT_EQ(dev.count, cpu.count);
  EXPECT_NEAR(dev.loss, cpu.loss, 1e-5 * cpu.loss);
  EXPECT_NEAR(ops::cross_entropy(gpu(logits, DType::bf16), l).loss, cpu.loss, 2e-2 * cpu.loss);
}

// The whole model on the reference golden weights: GPU f32 equals the cpu (and so the
// numpy reference), routing decision for decision.
TEST_F(ModelParity, WholeForwardOnGoldenWeights) {
  for (const char* name : {"switch_dropping", "switch_placements", "switch_t5x_step3"}) {
    SCOPED_TRACE(name);
    const SafetensorsFile f = read_safetensors(parity::data_dir("SW_GOLDEN_DIR", SW_GOLDEN_DIR) +
                                               "/" + name + ".safetensors");
    const ModelConfig config = config_from_text(f.metadata.at("config"));
    SwitchTransformer cpu(config, 1), dev(config, 1, DType::f32, kGpu);
    for (const std::string& p : cpu.parameters().names()) {
      cpu.parameters().set(p, f.tensors.at(p));
      dev.parameters().set(p, f.tensors.at(p));
    }
    Batch b;
    b.input_ids = f.tensors.at("input.input_ids");
    b.attention_mask = f.tensors.at("input.attention_mask");
    b.decoder_input_ids = f.tensors.at("input.decoder_input_ids");
    b.decoder_attention_mask = f.tensors.at("input.decoder_attention_mask");
    b.labels = f.tensors.at("input.labels");
    const ForwardOutput c = cpu.forward(b), g = dev.forward(b);
    ASSERT_EQ(c.routing.size(), g.routing.size());
    for (size_t i = 0; i < c.routing.size(); ++i)
      EXPECT_EQ(max_relative_error(host(g.routing[i].expert_index), c.routing[i].expert_index),
                0.0);
    EXPECT_LE(max_relative_error(host(g.logits), c.logits), 1e-5);
    EXPECT_LE(max_relative_error(host(g.logits), f.tensors.at("expected.logits")), 1e-5);
    EXPECT_NEAR(g.loss, c.loss, 1e-5 * c.loss);
    EXPECT_NEAR(g.aux_loss, c.aux_loss, 1e-5 * c.aux_loss + 1e-12);
    EXPECT_NEAR(g.z_loss, c.z_loss, 1e-5 * c.z_loss + 1e-12);
  }
}

// Training mode: dropout everywhere, expert dropout, router jitter, train capacity; the
// GPU draws the same masks from the same streams.
TEST_F(ModelParity, WholeForwardInTrainMode) {
  const ModelConfig config = config_from_text(R"(
    vocab_size: 300 d_model: 32 d_ff: 64 d_kv: 8 num_heads: 4 num_encoder_layers: 3
    num_decoder_layers: 3 num_experts: 4 encoder_sparse_step: 2 decoder_sparse_step: 1
    activation: GATED_GELU capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0
    min_capacity: 1 dropout_rate: 0.1 expert_dropout_rate: 0.3 router_jitter_eps: 0.01
    init_scheme: INIT_HF)");
  const SwitchTransformer cpu(config, 7), dev(config, 7, DType::f32, kGpu);
  const Batch b = make_continuation_batch(
      "Switch Transformers route each token to a single expert, so the cost per token stays "
      "constant as experts are added.",
      4, 24, 10, config);
  ForwardOptions train;
  train.train = true;
  train.step = 3;
  const ForwardOutput c = cpu.forward(b, train), g = dev.forward(b, train);
  for (size_t i = 0; i < c.routing.size(); ++i)
    ASSERT_EQ(max_relative_error(host(g.routing[i].expert_index), c.routing[i].expert_index), 0.0)
        << i;
  EXPECT_LE(max_relative_error(host(g.logits), c.logits), 1e-5);
  EXPECT_NEAR(g.loss, c.loss, 1e-5 * c.loss);

  // bf16: the same model in bf16 stays close to the f32 cpu run in eval.
  const SwitchTransformer bf(config, 7, DType::bf16, kGpu);
  const ForwardOutput ce = cpu.forward(b), gb = bf.forward(b);
  int64_t agree = 0, total = 0;
  for (size_t i = 0; i < ce.routing.size(); ++i) {
    const Tensor idx = host(gb.routing[i].expert_index);
    for (int64_t t = 0; t < idx.numel(); ++t, ++total)
      agree += idx.item(t) == ce.routing[i].expert_index.item(t);
  }
  EXPECT_GE(static_cast<double>(agree) / total, 0.95);
  EXPECT_NEAR(gb.ce_loss, ce.ce_loss, 2e-2 * ce.ce_loss);
}

// One whole training step's backward, CPU against GPU in f32: the losses and every
// gradient by name, with dropout, expert dropout, jitter and dropped tokens (capacity 1.0)
// in a gated-GELU model with dense and sparse blocks, in an untied ReLU model, and in a
// GELU model with expert dropout (the GPU's padded layout runs ReLU and GELU through
// batched_matmul_activation and its backward).
TEST_F(ModelParity, WholeTrainingStepGradients) {
  const char* configs[] = {R"(
    vocab_size: 300 d_model: 32 d_ff: 64 d_kv: 8 num_heads: 4 num_encoder_layers: 3
    num_decoder_layers: 3 num_experts: 4 encoder_sparse_step: 2 decoder_sparse_step: 1
    activation: GATED_GELU capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0
    min_capacity: 1 dropout_rate: 0.1 expert_dropout_rate: 0.3 router_jitter_eps: 0.01
    init_scheme: INIT_HF)",
                           R"(
    vocab_size: 280 d_model: 24 d_ff: 40 d_kv: 6 num_heads: 3 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 8 encoder_sparse_step: 1 decoder_sparse_step: 2
    activation: RELU tie_word_embeddings: false capacity_mode: CAPACITY_FACTOR
    train_capacity_factor: 1.25 min_capacity: 1 dropout_rate: 0.0 z_loss_coef: 0.001)",
                           R"(
    vocab_size: 260 d_model: 32 d_ff: 48 d_kv: 8 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 1
    activation: GELU capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.5
    min_capacity: 1 dropout_rate: 0.0 expert_dropout_rate: 0.25)"};
  for (const char* text : configs) {
    const ModelConfig config = config_from_text(text);
    SCOPED_TRACE(config.ShortDebugString());
    const SwitchTransformer cpu(config, 11), dev(config, 11, DType::f32, kGpu);
    const Batch b = make_continuation_batch(
        "A sparse layer sends each token to one expert; the router learns which, and a "
        "load-balancing loss keeps the experts evenly used.",
        3, 28, 12, config);
    ForwardOptions train;
    train.train = true;
    train.step = 5;
    std::vector<std::pair<std::string, Tensor>> grads_cpu, grads_gpu;
    const ForwardOutput c = cpu.forward_backward(b, train, grads_cpu);
    const ForwardOutput g = dev.forward_backward(b, train, grads_gpu);
    for (size_t i = 0; i < c.routing.size(); ++i)
      ASSERT_EQ(max_relative_error(host(g.routing[i].expert_index), c.routing[i].expert_index), 0.0)
          << i;
    EXPECT_NEAR(g.ce_loss, c.ce_loss, 1e-5 * c.ce_loss);
    EXPECT_NEAR(g.aux_loss, c.aux_loss, 1e-5 * c.aux_loss + 1e-12);
    EXPECT_NEAR(g.z_loss, c.z_loss, 1e-5 * c.z_loss + 1e-12);
    ASSERT_EQ(grads_gpu.size(), grads_cpu.size());
    for (size_t i = 0; i < grads_cpu.size(); ++i) {
      EXPECT_EQ(grads_gpu[i].first, grads_cpu[i].first);
      EXPECT_TRUE(grads_gpu[i].second.device() == kGpu) << grads_gpu[i].first;
      EXPECT_LE(max_relative_error(host(grads_gpu[i].second), grads_cpu[i].second), 1e-5)
          << grads_cpu[i].first;
    }
  }
}

// The fixed padded expert layout (ForwardOptions::fixed_expert_capacity: no layer waits
// for the router's counts) gives the cpu's training step: losses, every gradient within
// 1e-5, and each layer's routing statistics (read back at the end) the cpu's exactly; in
// a ReLU and a GELU model with dropped tokens and expert dropout.
TEST_F(ModelParity, FixedExpertCapacityGivesTheCpuStep) {
  for (const char* activation : {"RELU", "GELU"}) {
    const ModelConfig config = config_from_text(std::string(R"(
      vocab_size: 280 d_model: 24 d_ff: 40 d_kv: 6 num_heads: 3 num_encoder_layers: 2
      num_decoder_layers: 2 num_experts: 8 encoder_sparse_step: 1 decoder_sparse_step: 1
      capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0 min_capacity: 1
      dropout_rate: 0.0 expert_dropout_rate: 0.2 z_loss_coef: 0.001 activation: )") +
                                                activation);
    SCOPED_TRACE(activation);
    const SwitchTransformer cpu(config, 13), dev(config, 13, DType::f32, kGpu);
    const Batch b = make_continuation_batch(
        "Each expert owns as many rows as it could keep, so the host never waits.", 3, 20, 9,
        config);
    ForwardOptions train;
    train.train = true;
    train.step = 2;
    std::vector<std::pair<std::string, Tensor>> grads_cpu, grads_gpu;
    const ForwardOutput c = cpu.forward_backward(b, train, grads_cpu);
    train.fixed_expert_capacity = true;
    const ForwardOutput g = dev.forward_backward(b, train, grads_gpu);
    EXPECT_NEAR(g.ce_loss, c.ce_loss, 1e-5 * c.ce_loss);
    EXPECT_NEAR(g.aux_loss, c.aux_loss, 1e-5 * c.aux_loss);
    EXPECT_NEAR(g.z_loss, c.z_loss, 1e-5 * c.z_loss);
    ASSERT_EQ(g.routing.size(), c.routing.size());
    int64_t dropped = 0;
    for (size_t i = 0; i < c.routing.size(); ++i) {
      EXPECT_EQ(g.routing[i].stats.kept_per_expert, c.routing[i].stats.kept_per_expert) << i;
      EXPECT_EQ(g.routing[i].stats.dropped_fraction, c.routing[i].stats.dropped_fraction) << i;
      dropped += c.routing[i].stats.dropped_fraction > 0;
    }
    EXPECT_GT(dropped, 0) << "capacity factor 1.0 drops tokens somewhere";
    ASSERT_EQ(grads_gpu.size(), grads_cpu.size());
    for (size_t i = 0; i < grads_cpu.size(); ++i)
      EXPECT_LE(max_relative_error(host(grads_gpu[i].second), grads_cpu[i].second), 1e-5)
          << grads_cpu[i].first;
  }
  // A model whose routing the layout cannot serve is refused by name, not run otherwise.
  ModelConfig dropless = preset("tiny");
  dropless.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  const SwitchTransformer model(dropless, 1, DType::f32, kGpu);
  ForwardOptions fixed;
  fixed.fixed_expert_capacity = true;
  try {
    model.forward(make_continuation_batch("text", 1, 8, 4, dropless), fixed);
    FAIL() << "a dropless model ran in the fixed layout";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("CAPACITY_DROPLESS"), std::string::npos) << e.what();
  }
}

// The GPU router is top-1: a top-2 model is refused on the GPU by name.
TEST_F(ModelParity, TopTwoRoutingIsRefusedOnTheGpu) {
  ModelConfig config = preset("tiny");
  config.set_num_selected_experts(2);
  try {
    SwitchTransformer dev(config, 1, DType::f32, kGpu);
    FAIL() << "a top-2 model was built on the GPU";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("num_selected_experts 2"), std::string::npos) << e.what();
  }
  config.set_num_selected_experts(1);
  config.set_routing(ModelConfig::EXPERT_CHOICE);
  config.set_decoder_sparse_step(0);
  config.set_aux_loss_coef(0);
  EXPECT_THROW(SwitchTransformer(config, 1, DType::f32, kGpu), Error);
}

TEST_F(ModelParity, BatchMustComeFromTheHost) {
  const ModelConfig config = preset("tiny");
  const SwitchTransformer dev(config, 1, DType::f32, kGpu);
  Batch b = make_continuation_batch("some text to read", 1, 8, 4, config);
  b.input_ids = b.input_ids.to(kGpu);
  EXPECT_THROW(dev.forward(b), Error);
}

}  // namespace
}  // namespace sw
