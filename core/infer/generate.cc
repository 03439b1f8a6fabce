#include "core/infer/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/tensor/error.h"
#include "core/tensor/philox.h"

namespace sw {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One sequence's next-token scores over [0, limit), eos masked before the minimum length.
std::vector<double> scores_of(const float* logits, int64_t limit, int64_t eos, int64_t generated,
                              const GenerateOptions& o) {
  std::vector<double> s(logits, logits + limit);
  if (generated < o.min_new_tokens && eos < limit) s[static_cast<size_t>(eos)] = kNegInf;
  return s;
}

int64_t argmax(const std::vector<double>& s) {
  return std::max_element(s.begin(), s.end()) - s.begin();  // the lowest index on ties
}

void log_softmax_(std::vector<double>& s) {
  const double m = *std::max_element(s.begin(), s.end());
  double sum = 0;
  for (double x : s) sum += std::exp(x - m);
  const double lse = m + std::log(sum);
  for (double& x : s) x -= lse;
}

int64_t sample(std::vector<double> s, const GenerateOptions& o, const RandomStream& stream) {
  for (double& x : s) x /= o.temperature;
  std::vector<int64_t> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a] > s[b]; });
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < order.size()) order.resize(o.top_k);
  const double m = s[static_cast<size_t>(order[0])];
  std::vector<double> p;
  double total = 0;
  for (int64_t i : order) total += p.emplace_back(std::exp(s[static_cast<size_t>(i)] - m));
  // The smallest prefix of the sorted tokens whose probability reaches top_p.
  double kept = 0;
  size_t n = 0;
  while (n < p.size() && (n == 0 || kept < o.top_p * total)) kept += p[n++];
  double u = stream.uniform(0) * kept;
  for (size_t i = 0; i < n; ++i) {
    if (u < p[i]) return order[i];
    u -= p[i];
  }
  return order[n - 1];
}

Tensor tokens_tensor(const std::vector<int32_t>& tokens) {
  return Tensor::from_vector<int32_t>(tokens, {static_cast<int64_t>(tokens.size())});
}

// Adds a pass's routing to the request's, layer by layer.
void add_routing(const std::vector<LayerRouting>& layers, std::vector<GenerationRouting>* out) {
  if (!out) return;
  for (const LayerRouting& l : layers) {
    auto it = std::find_if(out->begin(), out->end(), [&](const GenerationRouting& g) {
      return g.stack == l.stack && g.block == l.block;
    });
    if (it == out->end()) {
      GenerationRouting g;
      g.stack = l.stack;
      g.block = l.block;
      g.tokens_per_expert.assign(l.stats.tokens_per_expert.size(), 0);
      g.kept_per_expert.assign(l.stats.kept_per_expert.size(), 0);
      g.choices = l.stats.choices;
      it = out->insert(out->end(), std::move(g));
    }
    for (size_t e = 0; e < l.stats.tokens_per_expert.size(); ++e) {
      it->tokens_per_expert[e] += l.stats.tokens_per_expert[e];
      it->kept_per_expert[e] += l.stats.kept_per_expert[e];
    }
  }
}

// Greedy and sampling: one row per live sequence.
// Checked before each decoding step, so a cancelled request costs at most one more step.
void stop_if_cancelled(const GenerateOptions& o, int64_t step) {
  SW_CHECK(!o.cancel || !o.cancel->load(std::memory_order_relaxed), Status::kCancelled,
           "generate: cancelled after ", step, " of at most ", o.max_new_tokens, " new tokens");
}

std::vector<std::vector<int32_t>> decode_each(const SwitchTransformer& model, DecoderState state,
                                              const GenerateOptions& o,
                                              std::vector<GenerationRouting>* routing) {
  const ModelConfig& c = model.config();
  const int64_t batch = state.batch(), vocab = c.vocab_size(), eos = c.eos_token_id();
  const int64_t limit = o.vocab_limit > 0 ? std::min(o.vocab_limit, vocab) : vocab;
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(batch));
  std::vector<int64_t> live(static_cast<size_t>(batch));
  std::iota(live.begin(), live.end(), 0);
  std::vector<int32_t> next(static_cast<size_t>(batch),
                            static_cast<int32_t>(c.decoder_start_token_id()));
  for (int64_t step = 0; step < o.max_new_tokens && !live.empty(); ++step) {
    stop_if_cancelled(o, step);
    const Tensor logits = model.decode_step(state, tokens_tensor(next), o.dropless);
    add_routing(state.routing, routing);
    std::vector<int64_t> keep;
    std::vector<int32_t> kept_next;
    for (size_t i = 0; i < live.size(); ++i) {
      const size_t seq = static_cast<size_t>(live[i]);
      const std::vector<double> s =
          scores_of(logits.data<float>() + i * vocab, limit, eos, step, o);
      const int64_t token =
          o.temperature > 0
              ? sample(s, o,
                       RandomStream(o.seed, RandomPurpose::kSampling, static_cast<uint32_t>(seq),
                                    static_cast<uint64_t>(step)))
              : argmax(s);
      if (token == eos) continue;  // finished: the sequence leaves the batch
      out[seq].push_back(static_cast<int32_t>(token));
      keep.push_back(static_cast<int64_t>(i));
      kept_next.push_back(static_cast<int32_t>(token));
    }
    if (keep.size() != live.size()) {
      std::vector<int64_t> still;
      for (int64_t i : keep) still.push_back(live[static_cast<size_t>(i)]);
      live = std::move(still);
      if (!keep.empty()) state.select_rows(keep);
    }
    next = std::move(kept_next);
  }
  return out;
}

struct Hypothesis {
  std::vector<int32_t> tokens;  // eos excluded
  double score = 0;             // sum of log probabilities, eos included when finished
};

// Beam score: sum(log p) / length^penalty, the length counting eos for a finished one.
double normalized(double score, size_t length, double penalty) {
  return score / std::pow(static_cast<double>(std::max<size_t>(length, 1)), penalty);
}

}  // namespace

void FinishedBeams::add(std::vector<int32_t> tokens, double score) {
  const double n = normalized(score, tokens.size() + 1, penalty_);  // eos counts
  if (full() && n <= worst()) return;
  kept_.push_back({std::move(tokens), score, n});
  if (static_cast<int64_t>(kept_.size()) > beams_) {
    const auto weakest = std::min_element(
        kept_.begin(), kept_.end(),
        [](const Hypothesis& a, const Hypothesis& b) { return a.normalized < b.normalized; });
    kept_.erase(weakest);
  }
}

double FinishedBeams::worst() const {
  double w = std::numeric_limits<double>::infinity();
  for (const Hypothesis& h : kept_) w = std::min(w, h.normalized);
  return w;
}

namespace {

// Beam search: up to num_beams rows per live sequence.
std::vector<std::vector<int32_t>> search_beams(const SwitchTransformer& model, DecoderState state,
                                               const GenerateOptions& o,
                                               std::vector<GenerationRouting>* routing) {
  const ModelConfig& c = model.config();
  const int64_t batch = state.batch(), beams = o.num_beams, vocab = c.vocab_size();
  const int64_t eos = c.eos_token_id();
  const int64_t limit = o.vocab_limit > 0 ? std::min(o.vocab_limit, vocab) : vocab;
  // Row r of the decoder batch continues beam row_beam[r] of sequence row_seq[r]; at first
  // each sequence has one live beam (more would only repeat it).
  std::vector<int64_t> row_seq(static_cast<size_t>(batch)), row_beam(static_cast<size_t>(batch), 0);
  std::iota(row_seq.begin(), row_seq.end(), 0);
  std::vector<std::vector<Hypothesis>> live(static_cast<size_t>(batch), {Hypothesis{}});
  std::vector<FinishedBeams> finished(static_cast<size_t>(batch),
                                      FinishedBeams(beams, o.length_penalty));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int32_t> next(static_cast<size_t>(batch),
                            static_cast<int32_t>(c.decoder_start_token_id()));
  for (int64_t step = 0; step < o.max_new_tokens && !row_seq.empty(); ++step) {
    stop_if_cancelled(o, step);
    const Tensor logits = model.decode_step(state, tokens_tensor(next), o.dropless);
    add_routing(state.routing, routing);
    std::vector<int64_t> parents, new_seq, new_beam;
    std::vector<int32_t> chosen;
    for (int64_t s = 0; s < batch; ++s) {
      if (done[static_cast<size_t>(s)]) continue;
      struct Candidate {
        double score;
        int64_t row, beam, token;
      };
      std::vector<Candidate> candidates;
      for (size_t r = 0; r < row_seq.size(); ++r) {
        if (row_seq[r] != s) continue;
        const Hypothesis& h = live[static_cast<size_t>(s)][static_cast<size_t>(row_beam[r])];
        std::vector<double> lp = scores_of(logits.data<float>() + r * vocab, limit, eos,
                                           static_cast<int64_t>(h.tokens.size()), o);
        log_softmax_(lp);
        for (int64_t t = 0; t < limit; ++t)
          if (lp[static_cast<size_t>(t)] > kNegInf)
            candidates.push_back(
                {h.score + lp[static_cast<size_t>(t)], static_cast<int64_t>(r), row_beam[r], t});
      }
      std::stable_sort(candidates.begin(), candidates.end(),
                       [](const Candidate& a, const Candidate& b) {
                         if (a.score != b.score) return a.score > b.score;
                         return a.beam != b.beam ? a.beam < b.beam : a.token < b.token;
                       });
      FinishedBeams& fin = finished[static_cast<size_t>(s)];
      std::vector<Hypothesis> next_live;
      const size_t first_new = chosen.size();
      for (size_t k = 0; k < candidates.size() && static_cast<int64_t>(next_live.size()) < beams;
           ++k) {
        const Candidate& cand = candidates[k];
        const Hypothesis& parent = live[static_cast<size_t>(s)][static_cast<size_t>(cand.beam)];
        if (cand.token == eos) {  // a finished hypothesis, if it ranks among the beams
          if (static_cast<int64_t>(k) < beams) fin.add(parent.tokens, cand.score);
          continue;
        }
        Hypothesis h = parent;
        h.tokens.push_back(static_cast<int32_t>(cand.token));
        h.score = cand.score;
        parents.push_back(cand.row);
        chosen.push_back(static_cast<int32_t>(cand.token));
        new_seq.push_back(s);
        new_beam.push_back(static_cast<int64_t>(next_live.size()));
        next_live.push_back(std::move(h));
      }
      // Done: num_beams finished hypotheses and, unless stopping early, no live beam that
      // could still beat the worst of them (HF's heuristic).
      bool enough = fin.full();
      if (enough && !o.early_stopping && !next_live.empty()) {
        const Hypothesis& best = next_live.front();
        enough = normalized(best.score, best.tokens.size(), o.length_penalty) <= fin.worst();
      }
      if (enough || next_live.empty()) {  // the sequence's rows leave the batch
        done[static_cast<size_t>(s)] = true;
        parents.resize(first_new), chosen.resize(first_new);
        new_seq.resize(first_new), new_beam.resize(first_new);
      }
      live[static_cast<size_t>(s)] = std::move(next_live);
    }
    if (!parents.empty()) state.select_rows(parents);
    next = std::move(chosen);
    row_seq = std::move(new_seq);
    row_beam = std::move(new_beam);
  }
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(batch));
  for (int64_t s = 0; s < batch; ++s) {
    // Finished hypotheses count eos in their length; beams cut by max_new_tokens do not.
    const std::vector<int32_t>* best = nullptr;
    double best_score = kNegInf;
    for (const FinishedBeams::Hypothesis& h : finished[static_cast<size_t>(s)].kept())
      if (!best || h.normalized > best_score) best = &h.tokens, best_score = h.normalized;
    if (!done[static_cast<size_t>(s)])
      for (const Hypothesis& h : live[static_cast<size_t>(s)]) {
        const double n = normalized(h.score, h.tokens.size(), o.length_penalty);
        if (!best || n > best_score) best = &h.tokens, best_score = n;
      }
    if (best) out[static_cast<size_t>(s)] = *best;
  }
  return out;
}

}  // namespace

void validate(const GenerateOptions& o) {
  SW_CHECK_ARG(o.max_new_tokens >= 1 && o.max_new_tokens <= kMaxNewTokens,
               "max_new_tokens must be in [1, ", kMaxNewTokens, "], got ", o.max_new_tokens);
  SW_CHECK_ARG(o.min_new_tokens >= 0 && o.min_new_tokens <= o.max_new_tokens,
               "min_new_tokens must be in [0, max_new_tokens], got ", o.min_new_tokens);
  SW_CHECK_ARG(o.num_beams >= 1 && o.num_beams <= kMaxBeams, "num_beams must be in [1, ", kMaxBeams,
               "], got ", o.num_beams);
  SW_CHECK_ARG(o.temperature >= 0 && std::isfinite(o.temperature),
               "temperature must be >= 0 (0: greedy), got ", o.temperature);
  SW_CHECK_ARG(o.top_k >= 0, "top_k must be >= 0 (0: all), got ", o.top_k);
  SW_CHECK_ARG(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1], got ", o.top_p);
  SW_CHECK_ARG(std::isfinite(o.length_penalty), "length_penalty must be finite");
  SW_CHECK_ARG(o.vocab_limit >= 0, "vocab_limit must be >= 0, got ", o.vocab_limit);
  SW_CHECK_ARG(o.num_beams == 1 || o.temperature == 0,
               "sampling with beams is not supported: set temperature 0 or num_beams 1");
}

std::vector<std::vector<int32_t>> generate(const SwitchTransformer& model, const Tensor& input_ids,
                                           const Tensor& attention_mask,
                                           const GenerateOptions& options,
                                           std::vector<GenerationRouting>* routing) {
  validate(options);
  SW_CHECK_ARG(input_ids.defined() && input_ids.ndim() == 2, "generate: input_ids must be [B, T]");
  DecoderState state = model.start_decoding(input_ids, attention_mask, options.dropless);
  if (routing) routing->clear();
  add_routing(state.encoder_routing, routing);
  return options.num_beams > 1 ? search_beams(model, std::move(state), options, routing)
                               : decode_each(model, std::move(state), options, routing);
}

int64_t GenerationRouting::tokens() const {
  return std::accumulate(tokens_per_expert.begin(), tokens_per_expert.end(), int64_t{0});
}

double GenerationRouting::dropped_fraction() const {
  const int64_t n = tokens();
  const int64_t kept = std::accumulate(kept_per_expert.begin(), kept_per_expert.end(), int64_t{0});
  return n ? 1.0 -
                 static_cast<double>(kept) / static_cast<double>(n * std::max<int64_t>(choices, 1))
           : 0.0;
}

double GenerationRouting::max_share() const {
  const int64_t n = tokens();
  return n ? static_cast<double>(
                 *std::max_element(tokens_per_expert.begin(), tokens_per_expert.end())) /
                 static_cast<double>(n)
           : 0.0;
}

std::vector<std::vector<int32_t>> beam_search(const SwitchTransformer& model,
                                              const Tensor& input_ids, const Tensor& attention_mask,
                                              const GenerateOptions& options) {
  validate(options);
  SW_CHECK_ARG(options.temperature == 0, "beam_search: temperature must be 0");
  return search_beams(model, model.start_decoding(input_ids, attention_mask, options.dropless),
                      options, nullptr);
}

}  // namespace sw
