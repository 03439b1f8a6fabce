// Sparse upcycling: every shared weight copied, each expert its block's dense
// feed-forward, the routers fresh; a sparse layer then outputs gate x the dense FFN for
// each token it keeps; mismatched shapes and already-sparse sources are named.
#include "core/model/upcycle.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/model/feed_forward.h"
#include "core/model/switch_ffn.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::error_of;
using testing::random_tensor;

ModelConfig dense_config() {
  return config_from_text(R"(
    vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 1 encoder_sparse_step: 0 decoder_sparse_step: 0
    activation: GATED_GELU init_scheme: INIT_HF)");
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(Upcycle, ExpertsStartAsTheDenseFeedForward) {
  const SwitchTransformer dense(dense_config(), 3, DType::f64);
  ModelConfig sparse = dense_config();
  sparse.set_num_experts(4);
  sparse.set_encoder_sparse_step(2);
  sparse.set_decoder_sparse_step(2);
  sparse.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  const SwitchTransformer up = upcycle(dense, sparse, 9);
  int64_t experts = 0, routers = 0;
  for (const auto& e : up.parameters().entries()) {
    if (e.name.find(".mlp.router.") != std::string::npos) {
      ++routers;
      continue;
    }
    const size_t at = e.name.find(".experts.expert_");
    std::string source = e.name;
    if (at != std::string::npos) {
      source = e.name.substr(0, at) + e.name.substr(e.name.find('.', at + 16));
      ++experts;
    }
    EXPECT_TRUE(same_bytes(e.tensor, dense.parameters().get(source).to(DType::f32))) << e.name;
  }
  EXPECT_EQ(routers, 2);          // encoder block 1, decoder block 1
  EXPECT_EQ(experts, 2 * 4 * 3);  // 2 sparse blocks x 4 experts x (wi_0, wi_1, wo)
  // Encoder block 1 as a layer: each token's output is its gate times the dense FFN's.
  const std::string mlp = "encoder.block.1.layer.1.mlp.";
  SwitchWeights w;
  w.router = up.parameters().get(mlp + "router.classifier.weight");
  auto stacked = [&](const std::string& proj) {
    const Tensor first = up.parameters().get(mlp + "experts.expert_0." + proj + ".weight");
    Tensor t = Tensor::empty({4, first.dim(0), first.dim(1)}, DType::f32);
    for (int64_t j = 0; j < 4; ++j)
      t.slice(j, j + 1).copy_from(
          up.parameters()
              .get(mlp + "experts.expert_" + std::to_string(j) + "." + proj + ".weight")
              .view({1, first.dim(0), first.dim(1)}));
    return t;
  };
  w.experts.wi_0 = stacked("wi_0");
  w.experts.wi_1 = stacked("wi_1");
  w.experts.wo = stacked("wo");
  FeedForwardWeights ffn;
  for (auto [slot, proj] : {std::pair{&ffn.wi_0, "wi_0"}, {&ffn.wi_1, "wi_1"}, {&ffn.wo, "wo"}})
    *slot = up.parameters().get(mlp + "experts.expert_2." + proj + ".weight");
  const Tensor x = random_tensor({10, 8}, DType::f32, 4);
  const RunContext eval;
  const SwitchOutput out = switch_ffn(w, up.config(), x, 10, eval, {});
  const Tensor y_dense = feed_forward(ffn, ModelConfig::GATED_GELU, x, eval.dropout(0, 0.0));
  for (int64_t t = 0; t < 10; ++t)
    for (int64_t i = 0; i < 8; ++i)
      EXPECT_NEAR(out.y.item(t * 8 + i), out.router.gate.item(t) * y_dense.item(t * 8 + i), 1e-5)
          << "token " << t;
}

TEST(Upcycle, MismatchesAndSparseSourcesAreNamed) {
  const SwitchTransformer dense(dense_config(), 3);
  ModelConfig wider = dense_config();
  wider.set_num_experts(4);
  wider.set_encoder_sparse_step(1);
  wider.set_d_ff(16);
  EXPECT_NE(error_of([&] {
              upcycle(dense, wider, 1);
            }).find("d_ff is 16 in the sparse config but 12 in the dense model"),
            std::string::npos);
  ModelConfig already = dense_config();
  already.set_num_experts(2);
  already.set_encoder_sparse_step(1);
  const SwitchTransformer moe(already, 3);
  ModelConfig sparse = already;
  sparse.set_num_experts(4);
  sparse.set_encoder_sparse_step(1);
  EXPECT_NE(error_of([&] {
              upcycle(moe, sparse, 1);
            }).find("encoder block 0 is sparse in the source model"),
            std::string::npos);
}

}  // namespace
}  // namespace sw
