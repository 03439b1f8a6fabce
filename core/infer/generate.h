// Generation with the decoder's KV cache (SwitchTransformer::start_decoding/decode_step):
// the encoder runs once, each step feeds one token per live sequence, and sequences that
// finish leave the batch so they stop costing work. Greedy, sampling (temperature, top-k,
// top-p from the seeded Philox stream) and beam search (length penalty, early stopping).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "core/model/switch_transformer.h"

namespace sw {

// Bounds of generation (SW_MAX_NEW_TOKENS and SW_MAX_BEAMS in the C ABI): a step's cost
// is flat in the length, but a request must end, and beams multiply the decoder's state.
constexpr int64_t kMaxNewTokens = 65536;
constexpr int64_t kMaxBeams = 1024;

struct GenerateOptions {
  int64_t max_new_tokens = 32;  // in [1, kMaxNewTokens]
  int64_t min_new_tokens = 0;   // eos cannot be chosen before this many new tokens
  int64_t num_beams = 1;        // > 1: beam search; at most kMaxBeams
  double length_penalty = 1.0;  // beam hypotheses ranked by sum(log p) / length^penalty
  bool early_stopping = false;  // beam search ends once num_beams hypotheses are finished
  // Sampling when temperature > 0: logits / temperature, then the top_k most likely
  // (0: all), then the smallest set reaching probability top_p, drawn from the Philox
  // stream of (seed, sequence, step). 0: greedy (or beam search).
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  int64_t vocab_limit = 0;  // choose ids below it (e.g. the tokenizer's size); 0: all
  bool dropless = false;    // no token dropped by expert capacity (encoder and decoder)
  // Set from any thread to stop the request before its next decoding step: generate then
  // throws Status::kCancelled, naming how far it got. nullptr: runs to the end.
  const std::atomic<bool>* cancel = nullptr;
};

// One sparse layer's routing over a whole request: the encoder's pass, or every decoding
// step summed (all live sequences, every beam).
struct GenerationRouting {
  Stack stack = Stack::kEncoder;
  int64_t block = 0;
  std::vector<int64_t> tokens_per_expert;  // argmax counts
  std::vector<int64_t> kept_per_expert;    // assignments after capacity (k per token)
  int64_t choices = 1;                     // k
  int64_t tokens() const;
  double dropped_fraction() const;
  double max_share() const;  // the busiest expert's share of the tokens
};

// One sequence's finished beam hypotheses, as transformers keeps them: only the num_beams
// best by length-normalised score sum(log p) / length^penalty (the length counting eos). A
// new hypothesis enters while there is room or when it beats the worst kept, which then
// leaves; the search compares its best live beam with that worst one.
class FinishedBeams {
 public:
  struct Hypothesis {
    std::vector<int32_t> tokens;  // eos excluded
    double score = 0;             // sum of log probabilities, eos included
    double normalized = 0;
  };
  FinishedBeams(int64_t beams, double length_penalty) : beams_(beams), penalty_(length_penalty) {}
  void add(std::vector<int32_t> tokens, double score);
  bool full() const { return static_cast<int64_t>(kept_.size()) >= beams_; }
  // The worst kept normalised score (+infinity while empty).
  double worst() const;
  const std::vector<Hypothesis>& kept() const { return kept_; }

 private:
  int64_t beams_;
  double penalty_;
  std::vector<Hypothesis> kept_;
};

// Validates the options: an error naming the field.
void validate(const GenerateOptions& options);

// For each row of input_ids ([B, Te] i32, host; attention_mask may be undefined) the new
// tokens, eos excluded (it ends the row). Eval mode, CPU. Beam search when num_beams > 1.
// routing (optional) receives the request's routing per sparse layer, encoder first.
std::vector<std::vector<int32_t>> generate(const SwitchTransformer& model, const Tensor& input_ids,
                                           const Tensor& attention_mask,
                                           const GenerateOptions& options,
                                           std::vector<GenerationRouting>* routing = nullptr);

// Beam search with options.num_beams beams (1 included: it then gives greedy's output).
std::vector<std::vector<int32_t>> beam_search(const SwitchTransformer& model,
                                              const Tensor& input_ids, const Tensor& attention_mask,
                                              const GenerateOptions& options);

}  // namespace sw
