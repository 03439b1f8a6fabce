// Generation with the KV cache: every cached step equals a full forward over the prefix;
// greedy equals an independent recompute-the-prefix loop; beam search with one beam is
// greedy and, with as many beams as choices, exhaustive; sampling is reproducible.
#include "core/infer/generate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/cpp/test_util.h"

namespace sw {
namespace {

// tiny in dropless mode: a full forward over a prefix and a cached step route every token
// to its expert alike (with capacity, the groups differ: the whole prefix vs one token).
// Untied embeddings: a fresh tied model only ever repeats the start token. Token 370 as
// eos: the first sequence's greedy output reaches it after 3 tokens, so sequences finish
// at different steps and leave the batch.
ModelConfig dropless_tiny() {
  ModelConfig c = preset("tiny");
  c.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  c.set_tie_word_embeddings(false);
  c.set_eos_token_id(370);
  return c;
}

struct Inputs {
  Tensor ids, mask;
};

// Three sequences of lengths 9, 6 and 3 padded to 9.
Inputs inputs() {
  const int64_t lengths[] = {9, 6, 3};
  Inputs in{Tensor::zeros({3, 9}, DType::i32), Tensor::zeros({3, 9}, DType::i32)};
  for (int64_t s = 0; s < 3; ++s)
    for (int64_t i = 0; i < lengths[s]; ++i) {
      in.ids.data<int32_t>()[s * 9 + i] = static_cast<int32_t>(3 + (s * 31 + i * 17) % 300);
      in.mask.data<int32_t>()[s * 9 + i] = 1;
    }
  return in;
}

// Finished hypotheses as transformers keeps them: only the num_beams best by normalised
// score, so the stopping test compares with the worst of those, not of every one finished.
TEST(FinishedBeams, KeepTheBestNumBeamsByNormalisedScore) {
  FinishedBeams fin(2, 1.0);
  EXPECT_FALSE(fin.full());
  EXPECT_EQ(fin.worst(), std::numeric_limits<double>::infinity());
  fin.add({5}, -4.0);        // -4 / 2 = -2
  fin.add({6, 7, 8}, -2.0);  // -2 / 4 = -0.5
  EXPECT_TRUE(fin.full());
  EXPECT_DOUBLE_EQ(fin.worst(), -2.0);
  fin.add({9}, -1.0);  // -0.5: beats the worst, which leaves
  ASSERT_EQ(fin.kept().size(), 2u);
  EXPECT_DOUBLE_EQ(fin.worst(), -0.5);
  fin.add({3}, -6.0);  // -3: worse than both, not kept
  EXPECT_EQ(fin.kept().size(), 2u);
  EXPECT_DOUBLE_EQ(fin.worst(), -0.5);
  for (const auto& h : fin.kept()) EXPECT_NE(h.tokens, std::vector<int32_t>{5});
}

// Rows `order` of a [3, n] tensor.
Tensor rows_in_order(const Tensor& t, const std::vector<int64_t>& order) {
  Tensor out = Tensor::empty(t.shape(), t.dtype());
  for (size_t i = 0; i < order.size(); ++i)
    out.slice(static_cast<int64_t>(i), static_cast<int64_t>(i) + 1)
        .copy_from(t.slice(order[i], order[i] + 1));
  return out;
}

TEST(Generate, CachedStepsEqualFullForwards) {
  const SwitchTransformer model(dropless_tiny(), 4);
  Inputs in = inputs();
  DecoderState state = model.start_decoding(in.ids, in.mask);
  std::vector<std::vector<int32_t>> prefix(3, {0});
  // 20 positions: the cache grows from 16 to 32 on the way, and the rows are reordered.
  for (int64_t t = 1; t <= 20; ++t) {
    std::vector<int32_t> last;
    for (const auto& p : prefix) last.push_back(p.back());
    const Tensor step = model.decode_step(state, Tensor::from_vector<int32_t>(last, {3}));
    Batch b;
    b.input_ids = in.ids;
    b.attention_mask = in.mask;
    std::vector<int32_t> flat;
    for (const auto& p : prefix) flat.insert(flat.end(), p.begin(), p.end());
    b.decoder_input_ids = Tensor::from_vector<int32_t>(flat, {3, t});
    const Tensor full = model.forward(b).logits;  // [3, t, V]
    const int64_t vocab = model.config().vocab_size();
    Tensor last_rows = Tensor::empty({3, vocab}, DType::f32);
    for (int64_t s = 0; s < 3; ++s)
      std::copy_n(full.data<float>() + (s * t + t - 1) * vocab, vocab,
                  last_rows.data<float>() + s * vocab);
    EXPECT_LE(testing::max_relative_error(step, last_rows), 1e-5) << "step " << t;
    for (int64_t s = 0; s < 3; ++s)
      prefix[s].push_back(static_cast<int32_t>(3 + (7 * t + s) % 300));
    if (t == 18) {  // past the cache's growth to 32: the sequences move, as beams do
      const std::vector<int64_t> order = {2, 0, 1};
      state.select_rows(order);
      prefix = {prefix[2], prefix[0], prefix[1]};
      in = {rows_in_order(in.ids, order), rows_in_order(in.mask, order)};
    }
  }
  EXPECT_EQ(state.length, 20);
  EXPECT_EQ(state.routing.size(), 2u);  // tiny's two sparse decoder blocks
}

// The reference: the whole prefix recomputed at every step, argmax of the last row.
std::vector<std::vector<int32_t>> recompute_greedy(const SwitchTransformer& model, const Inputs& in,
                                                   int64_t max_new) {
  const ModelConfig& c = model.config();
  std::vector<std::vector<int32_t>> out(3);
  std::vector<bool> done(3, false);
  for (int64_t t = 1; t <= max_new; ++t) {
    Batch b;
    b.input_ids = in.ids;
    b.attention_mask = in.mask;
    b.decoder_input_ids = Tensor::zeros({3, t}, DType::i32);
    for (int64_t s = 0; s < 3; ++s)
      for (int64_t i = 1; i < t && i - 1 < static_cast<int64_t>(out[s].size()); ++i)
        b.decoder_input_ids.data<int32_t>()[s * t + i] = out[s][i - 1];
    const Tensor logits = model.forward(b).logits;
    for (int64_t s = 0; s < 3; ++s) {
      if (done[s]) continue;
      const float* row = logits.data<float>() + (s * t + t - 1) * c.vocab_size();
      const int64_t best = std::max_element(row, row + c.vocab_size()) - row;
      if (best == c.eos_token_id())
        done[s] = true;
      else
        out[s].push_back(static_cast<int32_t>(best));
    }
  }
  return out;
}

TEST(Generate, GreedyEqualsRecomputingThePrefix) {
  const SwitchTransformer model(dropless_tiny(), 4);
  const Inputs in = inputs();
  GenerateOptions o;
  o.max_new_tokens = 8;
  const auto want = recompute_greedy(model, in, 8);
  EXPECT_LT(want[0].size(), 8u);  // it ended at eos while the others went on
  EXPECT_EQ(want[1].size(), 8u);
  EXPECT_EQ(generate(model, in.ids, in.mask, o), want);
  EXPECT_EQ(beam_search(model, in.ids, in.mask, o), recompute_greedy(model, in, 8));
}

// A request's routing per sparse layer: the encoder's counts cover every input position
// once, the decoder's every token fed to a decoding step (each live sequence's start
// token, then every id it produced before finishing); dropless drops none, and asking
// for the routing changes no output.
TEST(Generate, RoutingPerRequest) {
  const SwitchTransformer model(dropless_tiny(), 4);
  const Inputs in = inputs();
  GenerateOptions o;
  o.max_new_tokens = 8;
  o.dropless = true;
  std::vector<GenerationRouting> routing;
  const auto out = generate(model, in.ids, in.mask, o, &routing);
  EXPECT_EQ(out, generate(model, in.ids, in.mask, o));
  int64_t fed = 0;  // a row that ended at eos was also fed the step that produced eos
  for (const auto& row : out) fed += static_cast<int64_t>(row.size()) + (row.size() < 8 ? 1 : 0);
  int64_t encoder_layers = 0, decoder_layers = 0;
  for (const GenerationRouting& r : routing) {
    EXPECT_EQ(r.dropped_fraction(), 0.0);
    EXPECT_GT(r.max_share(), 0.0);
    if (r.stack == Stack::kEncoder) {
      ++encoder_layers;
      EXPECT_EQ(r.tokens(), in.ids.numel());
    } else {
      ++decoder_layers;
      EXPECT_EQ(r.tokens(), fed);
    }
  }
  EXPECT_EQ(encoder_layers, 2);  // tiny: blocks 1 and 3 of each stack are sparse
  EXPECT_EQ(decoder_layers, 2);
}

// With as many beams as choices, two steps of beam search are exhaustive: its answer is
// the most likely of all 8 x 8 two-token sequences (scored by full forwards), at least
// as likely as greedy's.
TEST(Generate, BeamsFindTheMostLikelySequence) {
  const SwitchTransformer model(dropless_tiny(), 4);
  const Inputs in = inputs();
  GenerateOptions o;
  o.max_new_tokens = 2;
  o.vocab_limit = 8;     // eos (370) out of reach: every hypothesis has 2 tokens
  o.length_penalty = 0;  // plain sums of log probabilities
  const auto greedy = generate(model, in.ids, in.mask, o);
  o.num_beams = 8;
  const auto beams = generate(model, in.ids, in.mask, o);
  for (int64_t s = 0; s < 3; ++s) {
    double best = -INFINITY;
    std::vector<int32_t> argbest;
    for (int32_t a = 0; a < 8; ++a)
      for (int32_t b = 0; b < 8; ++b) {
        // Scores under the restricted vocabulary: log softmax over ids < 8 at each step.
        Batch batch;
        batch.input_ids = in.ids.slice(s, s + 1);
        batch.attention_mask = in.mask.slice(s, s + 1);
        batch.decoder_input_ids = Tensor::from_vector<int32_t>({0, a}, {1, 2});
        const Tensor logits = model.forward(batch).logits;  // [1, 2, V]
        const int64_t vocab = model.config().vocab_size();
        double score = 0;
        for (int64_t t = 0; t < 2; ++t) {
          const float* row = logits.data<float>() + t * vocab;
          double m = -INFINITY, sum = 0;
          for (int64_t v = 0; v < 8; ++v) m = std::max(m, static_cast<double>(row[v]));
          for (int64_t v = 0; v < 8; ++v) sum += std::exp(row[v] - m);
          score += row[t == 0 ? a : b] - m - std::log(sum);
        }
        if (score > best + 1e-12) best = score, argbest = {a, b};
      }
    EXPECT_EQ(beams[s], argbest) << "sequence " << s;
    EXPECT_EQ(greedy[s].size(), 2u);
  }
}

TEST(Generate, SamplingIsReproducibleAndRespectsItsOptions) {
  const SwitchTransformer model(dropless_tiny(), 4);
  const Inputs in = inputs();
  GenerateOptions o;
  o.max_new_tokens = 6;
  o.temperature = 1.5;
  o.seed = 11;
  const auto a = generate(model, in.ids, in.mask, o);
  EXPECT_EQ(generate(model, in.ids, in.mask, o), a);
  o.seed = 12;
  EXPECT_NE(generate(model, in.ids, in.mask, o), a);
  o.top_k = 1;  // only the most likely token: greedy
  GenerateOptions greedy;
  greedy.max_new_tokens = 6;
  EXPECT_EQ(generate(model, in.ids, in.mask, o), generate(model, in.ids, in.mask, greedy));
  o.top_k = 0;
  o.top_p = 1e-9;  // the smallest set is the most likely token alone
  EXPECT_EQ(generate(model, in.ids, in.mask, o), generate(model, in.ids, in.mask, greedy));
  // The vocabulary limit and the minimum length hold.
  o.top_p = 1;
  o.vocab_limit = 50;
  o.min_new_tokens = 6;
  for (const auto& row : generate(model, in.ids, in.mask, o)) {
    EXPECT_EQ(row.size(), 6u);
    for (int32_t id : row) EXPECT_LT(id, 50);
  }
}

TEST(Generate, BadOptionsAreRefusedByName) {
  const SwitchTransformer model(dropless_tiny(), 4);
  const Inputs in = inputs();
  GenerateOptions o;
  o.max_new_tokens = 0;
  EXPECT_NE(testing::error_of([&] { generate(model, in.ids, in.mask, o); }).find("max_new_tokens"),
            std::string::npos);
  o.max_new_tokens = 4;
  o.top_p = 1.5;
  EXPECT_NE(testing::error_of([&] { generate(model, in.ids, in.mask, o); }).find("top_p"),
            std::string::npos);
  o.top_p = 1;
  o.num_beams = 2;
  o.temperature = 1;
  EXPECT_NE(testing::error_of([&] { generate(model, in.ids, in.mask, o); }).find("beams"),
            std::string::npos);
  Tensor bad = in.ids.clone();
  bad.data<int32_t>()[0] = 384;
  EXPECT_NE(testing::error_of([&] { model.start_decoding(bad, in.mask); }).find("input_ids"),
            std::string::npos);
}

}  // namespace
}  // namespace sw
