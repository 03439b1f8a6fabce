#include "core/dist/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/dist/data_parallel.h"
#include "core/model/config.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

constexpr double kF32 = 4, kI32 = 4;
constexpr double kBucketsInFlight = kDefaultBucketsInFlight;  // BucketedReduction's
constexpr double kGiB = 1024.0 * 1024 * 1024;

// One rank's share of the model's tensors: what it holds, what its gradients are summed
// over, and the Adafactor state of each (second moments factored over the last two
// dimensions of a tensor of two or more, data_parallel.h and adafactor.h).
struct ParameterTally {
  double elements = 0;    // trainable and buffers
  double replicated = 0;  // trainable, summed over every replica of this model part
  double expert = 0;      // trainable, summed over the ranks holding the same experts
  double adafactor = 0;   // state elements
  void matrix(double count, double rows, double cols, bool is_expert = false) {
    const double n = count * rows * cols;
    elements += n;
    (is_expert ? expert : replicated) += n;
    adafactor += count * (rows + cols);
  }
  void vector(double n) {
    elements += n;
    replicated += n;
    adafactor += n;
  }
  double trainable() const { return replicated + expert; }
};

// The request's model and shapes on one rank of a layout.
struct Shapes {
  ModelConfig c;
  double d, inner, heads, ff, experts, vocab, k;
  bool gated;
  // This rank's: heads, inner width and d_ff (split by mp), local experts (split by ep).
  double heads_r, inner_r, ff_r, experts_r;
  // Sequences per micro-batch on this rank, encoder and decoder lengths.
  double seqs, te, td;
  double act;  // activation bytes per element
  double sparse_layers[2] = {0, 0}, layers[2] = {0, 0};
};

// The preset (none: the proto defaults) with the request's model fields over it.
ModelConfig resolve(const PlanRequest& r) {
  ModelConfig c = r.model_preset().empty() ? ModelConfig() : preset(r.model_preset());
  c.MergeFrom(r.model());
  validate(c);
  return c;
}

Shapes shapes_of(const PlanRequest& r, const ParallelLayout& l) {
  Shapes s;
  s.c = resolve(r);
  const ModelConfig& c = s.c;
  s.d = static_cast<double>(c.d_model());
  s.heads = static_cast<double>(c.num_heads());
  s.inner = s.heads * static_cast<double>(c.d_kv());
  s.ff = static_cast<double>(c.d_ff());
  s.experts = static_cast<double>(c.num_experts());
  s.vocab = static_cast<double>(c.vocab_size());
  s.k = static_cast<double>(c.num_selected_experts());
  s.gated = c.activation() == ModelConfig::GATED_GELU;
  const double mp = static_cast<double>(l.mp);
  s.heads_r = s.heads / mp;
  s.inner_r = s.inner / mp;
  s.ff_r = s.ff / mp;
  s.experts_r = s.experts / static_cast<double>(l.ep);
  s.seqs = static_cast<double>(r.batch_size()) / static_cast<double>(l.dp * l.ep) /
           static_cast<double>(r.micro_batches());
  s.te = static_cast<double>(r.input_length());
  s.td = static_cast<double>(r.target_length());
  s.act = r.dtype() == "bf16" ? 2 : kF32;
  for (Stack st : {Stack::kEncoder, Stack::kDecoder}) {
    const int i = static_cast<int>(st);
    s.layers[i] = static_cast<double>(num_layers(c, st));
    for (int64_t b = 0; b < num_layers(c, st); ++b) s.sparse_layers[i] += is_sparse_block(c, st, b);
  }
  return s;
}

ParameterTally tally_parameters(const Shapes& s) {
  const ModelConfig& c = s.c;
  ParameterTally t;
  const double tables = (c.separate_input_embeddings() ? 2 : 1) + (c.tie_word_embeddings() ? 0 : 1);
  t.matrix(tables, s.vocab, s.d);
  const double ffn_in = s.gated ? 2 : 1;  // wi, or wi_0 and wi_1
  for (Stack st : {Stack::kEncoder, Stack::kDecoder}) {
    const bool decoder = st == Stack::kDecoder;
    t.matrix(1, static_cast<double>(c.relative_attention_num_buckets()), s.heads);
    t.vector(s.d);  // final norm
    for (int64_t b = 0; b < num_layers(c, st); ++b) {
      for (int a = 0; a < (decoder ? 2 : 1); ++a) {
        t.matrix(3, s.inner_r, s.d);  // q, k, v: rows split
        t.matrix(1, s.d, s.inner_r);  // o: columns split
      }
      for (int n = 0; n < (decoder ? 3 : 2); ++n) t.vector(s.d);
      if (!is_sparse_block(c, st, b)) {
        t.matrix(ffn_in, s.ff_r, s.d);
        t.matrix(1, s.d, s.ff_r);
        continue;
      }
      t.matrix(1, s.experts, s.d);  // router
      for (int w = 0; w < ffn_in; ++w) t.matrix(s.experts_r, s.ff_r, s.d, true);
      t.matrix(s.experts_r, s.d, s.ff_r, true);
      if (c.router_bias_update_rate() > 0) t.elements += s.experts;  // choice bias, a buffer
    }
  }
  return t;
}

// Rows the local experts of one sparse layer run on, per micro-batch, for `tokens` routed
// tokens on this rank: k per token, capped by capacity (docs/MATH.md §2), times `load` (the
// busiest expert's tokens over the mean; 1 for a balanced layer).
double expert_rows(const Shapes& s, double tokens, double length, double load) {
  const ModelConfig& c = s.c;
  const double assignments = tokens * s.k;
  if (c.routing() == ModelConfig::EXPERT_CHOICE)  // each expert takes exactly its capacity
    return assignments * std::min(1.0, c.train_capacity_factor());
  const int64_t group =
      routing_group_size(c, static_cast<int64_t>(s.seqs), static_cast<int64_t>(length));
  const double per_expert_mean = static_cast<double>(group) * s.k / s.experts;
  const double capacity = static_cast<double>(expert_capacity(c, group, true));
  return assignments * std::min(load, capacity / per_expert_mean);
}

// Bytes one micro-batch keeps for the backward on this rank (block_forward's BlockCache,
// the stacks' final norms, position biases and logits), with `load` for the expert rows.
// With recomputation: each block's input, and one block's activations at a time (with the
// copy of its input it recomputes them from).
double activation_bytes(const Shapes& s, double load, bool recompute) {
  const double a = s.act, d = s.d;
  double total = 0, largest_block = 0, block_inputs = 0, stacks = 0;
  for (Stack st : {Stack::kEncoder, Stack::kDecoder}) {
    const bool decoder = st == Stack::kDecoder;
    const double t = decoder ? s.td : s.te, n = s.seqs * t;
    const double norm = n * d * a * 2 + n * kF32;  // the sublayer's input, normed, 1/rms
    const double attention = 4 * n * s.inner_r * a + s.seqs * s.heads_r * t * t * kF32;
    const double cross = 2 * n * s.inner_r * a + 2 * s.seqs * s.te * s.inner_r * a +
                         s.seqs * s.heads_r * t * s.te * kF32;
    const double dense = (s.gated ? 3 : 2) * n * s.ff_r * a;
    const double rows = expert_rows(s, n, t, load);
    const double sparse = n * d * a + n * d * kF32                         // output, router input
                          + 2 * n * s.experts * kF32 + 4 * n * s.k * kI32  // router, capacity
                          + 2 * rows * d * a + (s.gated ? 3 : 2) * rows * s.ff_r * a;
    for (int64_t b = 0; b < num_layers(s.c, st); ++b) {
      const double block = (decoder ? 3 : 2) * norm + attention + (decoder ? cross : 0) +
                           (is_sparse_block(s.c, st, b) ? sparse : dense);
      total += block;
      largest_block = std::max(largest_block, block + n * d * a);
      block_inputs += n * d * a;
    }
    stacks += s.heads_r * t * t * kF32 + n * d * a * 2 + n * kF32;  // bias, final norm, output
  }
  const double logits = s.seqs * s.td * s.vocab * kF32;
  if (recompute) return block_inputs + largest_block + stacks + logits;
  return total + stacks + logits;
}

// Of the activations: every Switch layer's dispatched rows and expert outputs.
double dispatch_bytes(const Shapes& s, double load) {
  double total = 0;
  for (Stack st : {Stack::kEncoder, Stack::kDecoder}) {
    const int i = static_cast<int>(st);
    const double t = st == Stack::kDecoder ? s.td : s.te;
    total += s.sparse_layers[i] * 2 * expert_rows(s, s.seqs * t, t, load) * s.d * s.act;
  }
  return total;
}

// Model FLOPs on this rank for one micro-batch, forward only (the backward is twice it).
double forward_flops(const Shapes& s) {
  double f = 0;
  const double ffn = (s.gated ? 3 : 2) * s.d * s.ff_r;  // per token, multiply-adds
  for (Stack st : {Stack::kEncoder, Stack::kDecoder}) {
    const bool decoder = st == Stack::kDecoder;
    const double t = decoder ? s.td : s.te, n = s.seqs * t;
    for (int64_t b = 0; b < num_layers(s.c, st); ++b) {
      f += 2 * n * 4 * s.d * s.inner_r + 4 * n * t * s.inner_r;  // projections, scores + PV
      if (decoder)
        f += 2 * n * 2 * s.d * s.inner_r + 2 * s.seqs * s.te * 2 * s.d * s.inner_r +
             4 * n * s.te * s.inner_r;
      if (is_sparse_block(s.c, st, b))
        f += 2 * n * s.d * s.experts + 2 * expert_rows(s, n, t, 1.0) * ffn;
      else
        f += 2 * n * ffn;
    }
  }
  return f + 2 * s.seqs * s.td * s.d * s.vocab;  // the LM head (not split)
}

// Whether a layout can hold this model and batch at all; empty when it can.
std::string layout_problem(const PlanRequest& r, const ModelConfig& c, const ParallelLayout& l) {
  char why[256] = "";
  const bool sparse = c.encoder_sparse_step() > 0 || c.decoder_sparse_step() > 0;
  if (l.ep > 1 && !sparse)
    std::snprintf(why, sizeof why, "ep=%lld: the model has no sparse layers to split",
                  static_cast<long long>(l.ep));
  else if (c.num_experts() % l.ep != 0)
    std::snprintf(why, sizeof why, "ep=%lld does not divide the %lld experts",
                  static_cast<long long>(l.ep), static_cast<long long>(c.num_experts()));
  else if (c.num_heads() % l.mp != 0 || c.d_ff() % l.mp != 0)
    std::snprintf(why, sizeof why, "mp=%lld does not divide num_heads %lld and d_ff %lld",
                  static_cast<long long>(l.mp), static_cast<long long>(c.num_heads()),
                  static_cast<long long>(c.d_ff()));
  else if (r.batch_size() % (l.dp * l.ep * r.micro_batches()) != 0)
    std::snprintf(why, sizeof why,
                  "%lld sequences do not split over %lld replicas x %lld micro-batches",
                  static_cast<long long>(r.batch_size()), static_cast<long long>(l.dp * l.ep),
                  static_cast<long long>(r.micro_batches()));
  if (why[0]) return why;
  // A fixed routing group must divide each stack's tokens per micro-batch.
  const int64_t seqs = r.batch_size() / (l.dp * l.ep * r.micro_batches());
  try {
    routing_group_size(c, seqs, r.input_length());
    routing_group_size(c, seqs, r.target_length());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The link a group of ranks spanning `span` consecutive ranks uses.
struct Link {
  double bytes_per_s, latency_s;
};
Link link_for(const ClusterRates& rates, int64_t span) {
  if (span <= rates.gpus_per_node())
    return {rates.intra_node_bytes_per_s(), rates.intra_node_latency_s()};
  return {rates.inter_node_bytes_per_s(), rates.inter_node_latency_s()};
}

// Bytes a rank sends summing `bytes` over `p` ranks (traffic.h's conventions).
double reduction_sent(double bytes, double p, bool rank_ordered) {
  if (p <= 1) return 0;
  return rank_ordered ? (p - 1) * bytes : 2 * (p - 1) / p * bytes;
}

ClusterRates rates_of(const PlanRequest& r) {
  if (r.has_rates()) {
    validate(r.rates());
    return r.rates();
  }
  return cluster_rates(r.gpu());
}

}  // namespace

void check_plan_request(const PlanRequest& r) {
  SW_CHECK_ARG(r.gpus() >= 1, "plan: gpus must be >= 1, got ", r.gpus());
  SW_CHECK_ARG(r.batch_size() >= 1, "plan: batch_size must be >= 1, got ", r.batch_size());
  SW_CHECK_ARG(r.input_length() >= 1 && r.target_length() >= 1,
               "plan: input_length and target_length must be >= 1, got ", r.input_length(), " and ",
               r.target_length());
  SW_CHECK_ARG(r.micro_batches() >= 1 && r.batch_size() % r.micro_batches() == 0,
               "plan: micro_batches ", r.micro_batches(), " must be >= 1 and divide batch_size ",
               r.batch_size());
  SW_CHECK_ARG(r.dtype() == "bf16" || r.dtype() == "f32", "plan: dtype '", r.dtype(),
               "' is not one of bf16, f32");
  SW_CHECK_ARG(r.gradient_bucket_bytes() >= 1, "plan: gradient_bucket_bytes must be >= 1, got ",
               r.gradient_bucket_bytes());
  SW_CHECK_ARG(std::isfinite(r.load_imbalance()) && r.load_imbalance() >= 1,
               "plan: load_imbalance must be >= 1 (the busiest expert over the mean), got ",
               r.load_imbalance());
  resolve(r);  // an unknown preset or a bad model field names itself
  rates_of(r);
  if (!r.layout().empty()) parse_parallel_layout(r.layout(), static_cast<int>(r.gpus()));
}

PlanRequest plan_request_from_text(const std::string& text) {
  PlanRequest r;
  parse_text(text, r, "PlanRequest");
  check_plan_request(r);
  return r;
}

LayoutPlan plan_layout(const PlanRequest& r, const ParallelLayout& l) {
  LayoutPlan p;
  p.set_dp(l.dp);
  p.set_ep(l.ep);
  p.set_mp(l.mp);
  const ModelConfig c = resolve(r);
  const std::string problem = layout_problem(r, c, l);
  if (!problem.empty()) {
    p.set_fits(false);
    p.set_why_not(problem);
    return p;
  }
  const ClusterRates rates = rates_of(r);
  const Shapes s = shapes_of(r, l);
  const ParameterTally t = tally_parameters(s);
  const bool bf16 = r.dtype() == "bf16";
  // f32 master weights, and a bf16 copy of the trainable ones to compute with.
  p.set_parameter_bytes(t.elements * kF32 + (bf16 ? t.trainable() * 2 : 0));
  p.set_gradient_bytes(t.trainable() * kF32);
  p.set_adafactor_bytes(t.adafactor * kF32);
  p.set_adamw_bytes(2 * t.trainable() * kF32);
  const double imbalance = r.load_imbalance();
  p.set_activation_bytes(activation_bytes(s, 1.0, false));
  p.set_recompute_activation_bytes(activation_bytes(s, 1.0, true));
  p.set_dispatch_bytes(dispatch_bytes(s, 1.0));
  // Summing gradients: a bucket packed, and an all-gather of it from every replica when
  // rank-ordered; the replicated tensors over every replica, the experts' over the ranks
  // holding the same ones (all together without expert parallelism). Not overlapped: after
  // the backward, when the activations are gone, one bucket at a time. Overlapped: every
  // bucket but the last starts during the backward (none when one bucket holds them all;
  // the replicated group's last holds at least the shared embedding table), up to
  // kBucketsInFlight of each group at once beside the activations; the last ones after.
  const double replicas = static_cast<double>(l.dp * l.ep);
  const bool overlap = r.overlap_reduction();
  const double bucket_bytes = static_cast<double>(r.gradient_bucket_bytes());
  struct Staging {
    double in_backward = 0, after = 0;
  };
  auto staging_for = [&](double grad_bytes, double ranks, double last_at_least) {
    Staging st;
    if (ranks <= 1) return st;
    const double copies = 1 + (r.rank_ordered_reduction() ? ranks : 0);
    if (!overlap) {
      st.after = std::min(bucket_bytes, grad_bytes) * copies;
      return st;
    }
    const double early = grad_bytes <= bucket_bytes ? 0 : grad_bytes - last_at_least;
    st.in_backward = std::min(kBucketsInFlight * bucket_bytes, std::max(0.0, early)) * copies;
    st.after = std::min(kBucketsInFlight * bucket_bytes, grad_bytes) * copies;
    return st;
  };
  const Staging replicated = staging_for((l.ep == 1 ? t.trainable() : t.replicated) * kF32,
                                         replicas, s.vocab * s.d * kF32);
  const Staging experts =
      l.ep == 1 ? Staging() : staging_for(t.expert * kF32, static_cast<double>(l.dp), 0);
  // During the backward both groups' buckets are in flight together; after it, the
  // replicated group finishes (the experts' early buckets still in flight), then the experts.
  const double in_backward = replicated.in_backward + experts.in_backward;
  const double after = std::max(replicated.after + experts.in_backward, experts.after);
  p.set_buffer_bytes(std::max(in_backward, after));
  const double optimizer =
      r.optimizer() == proto::TrainConfig::ADAMW ? p.adamw_bytes() : p.adafactor_bytes();
  const double resident = p.parameter_bytes() + optimizer + p.gradient_bytes();
  // From the second micro-batch on, its gradients are computed beside the running sum.
  const double micro_gradients = r.micro_batches() > 1 ? p.gradient_bytes() : 0;
  auto peak = [&](double load) {
    return resident +
           std::max(micro_gradients + activation_bytes(s, load, r.recompute()) + in_backward,
                    after);
  };
  p.set_peak_bytes(peak(1.0));
  p.set_worst_peak_bytes(peak(imbalance));

  // Traffic per step.
  const double micro = static_cast<double>(r.micro_batches());
  const double expert_replicas = static_cast<double>(l.dp);
  p.set_gradient_sent_bytes(
      reduction_sent(t.replicated * kF32, replicas, r.rank_ordered_reduction()) +
      reduction_sent(t.expert * kF32, expert_replicas, r.rank_ordered_reduction()));
  double expert_sent = 0, mp_sent = 0, mp_calls = 0, a2a_calls = 0;
  const double ep = static_cast<double>(l.ep), mp = static_cast<double>(l.mp);
  for (Stack st : {Stack::kEncoder, Stack::kDecoder}) {
    const int i = static_cast<int>(st);
    const double n = s.seqs * (st == Stack::kDecoder ? s.td : s.te);
    // Dispatch and combine, forward and backward: this rank's kept rows for other ranks.
    if (l.ep > 1) {
      expert_sent +=
          s.sparse_layers[i] * 4 * expert_rows(s, n, n / s.seqs, 1.0) * (ep - 1) / ep * s.d * s.act;
      a2a_calls += s.sparse_layers[i] * 4;
    }
    // Each sublayer's partial output in the forward and its input's gradient in the backward.
    if (l.mp > 1) {
      const double sublayers = s.layers[i] * (st == Stack::kDecoder ? 3 : 2);
      mp_sent += sublayers * 2 * reduction_sent(n * s.d * s.act, mp, false);
      mp_calls += sublayers * 2;
    }
  }
  if (l.mp > 1) {  // the encoder output's gradient from the decoder's cross-attention
    mp_sent += reduction_sent(s.seqs * s.te * s.d * s.act, mp, false);
    mp_calls += 1;
  }
  p.set_expert_sent_bytes(expert_sent * micro);
  p.set_model_parallel_sent_bytes(mp_sent * micro);

  // Time: compute at the achieved share of the GEMM rate, then each group's traffic over
  // its link (groups within a node use NVLink). Overlapped, the gradient sums run during
  // the backward (2/3 of the compute): only what it cannot hide adds to the step, and at
  // least the last bucket, whose tables (the shared embedding) are final only at its end.
  p.set_flops((r.recompute() ? 4 : 3) * forward_flops(s) * micro);
  const double rate = (bf16 ? rates.bf16_flops() : rates.f32_flops()) * rates.achieved_fraction();
  p.set_compute_seconds(p.flops() / rate);
  const Link mp_link = link_for(rates, l.mp), ep_link = link_for(rates, l.ep * l.mp),
             all_link = link_for(rates, l.dp * l.ep * l.mp);
  const double buckets = std::ceil(p.gradient_bytes() / bucket_bytes);
  const double gradient_comm = p.gradient_sent_bytes() / all_link.bytes_per_s +
                               (replicas > 1 ? buckets * all_link.latency_s : 0);
  double comm = gradient_comm;
  if (overlap && p.gradient_bytes() > 0) {
    const double last_bucket = std::max(bucket_bytes, s.vocab * s.d * kF32);
    comm = std::max(gradient_comm - 2.0 / 3.0 * p.compute_seconds(),
                    std::min(1.0, last_bucket / p.gradient_bytes()) * gradient_comm);
  }
  comm += p.expert_sent_bytes() / ep_link.bytes_per_s + a2a_calls * micro * ep_link.latency_s;
  comm +=
      p.model_parallel_sent_bytes() / mp_link.bytes_per_s + mp_calls * micro * mp_link.latency_s;
  p.set_communication_seconds(comm);
  p.set_step_seconds(p.compute_seconds() + comm);
  p.set_tokens_per_second(static_cast<double>(r.batch_size()) * (s.te + s.td) / p.step_seconds());

  p.set_fits(p.worst_peak_bytes() <= rates.memory_bytes());
  if (!p.fits()) {
    char why[160];
    std::snprintf(why, sizeof why, "needs %.1f GiB per GPU at load imbalance %.2g, has %.1f GiB",
                  p.worst_peak_bytes() / kGiB, imbalance, rates.memory_bytes() / kGiB);
    p.set_why_not(why);
  }
  return p;
}

Plan make_plan(const PlanRequest& request) {
  check_plan_request(request);
  Plan plan;
  *plan.mutable_request() = request;
  *plan.mutable_request()->mutable_model() = resolve(request);
  *plan.mutable_rates() = rates_of(request);
  std::vector<ParallelLayout> layouts;
  if (!request.layout().empty()) {
    layouts.push_back(parse_parallel_layout(request.layout(), static_cast<int>(request.gpus())));
  } else {
    const int64_t n = request.gpus();
    for (int64_t mp = 1; mp <= n; ++mp)
      for (int64_t ep = 1; ep * mp <= n; ++ep)
        if (n % (mp * ep) == 0) layouts.push_back({n / (mp * ep), ep, mp});
  }
  std::vector<LayoutPlan> plans;
  for (const ParallelLayout& l : layouts) plans.push_back(plan_layout(request, l));
  std::stable_sort(plans.begin(), plans.end(), [](const LayoutPlan& a, const LayoutPlan& b) {
    if (a.fits() != b.fits()) return a.fits();
    if (a.fits()) return a.step_seconds() < b.step_seconds();
    return a.has_peak_bytes() &&
           (!b.has_peak_bytes() || a.worst_peak_bytes() < b.worst_peak_bytes());
  });
  int64_t most_replicas = 0;
  for (LayoutPlan& p : plans) {
    if (p.why_not().empty() || p.has_peak_bytes())
      most_replicas = std::max(most_replicas, p.dp() * p.ep());
    *plan.add_layouts() = std::move(p);
  }
  if (request.rank_ordered_reduction() && most_replicas > 8)
    plan.add_notes(
        "gradients are summed in rank order (libswitch's default: an all-gather, each rank "
        "sending (R - 1) x its gradients over R replicas); --reduction all-reduce sends "
        "2 (R - 1) / R x, what a run this wide should use");
  if (request.dtype() == "bf16")
    plan.add_notes(
        "bf16 is the paper's recipe (f32 master weights, a bf16 copy, bf16 activations, f32 "
        "router and attention probabilities); libswitch trains so on a GPU under TrainConfig "
        "precision BF16, and emulates it on the cpu");
  if (request.recompute())
    plan.add_notes(
        "recomputation (TrainConfig recompute_activations): each block's forward runs again in "
        "the backward, counted as a fourth pass of the forward's FLOPs");
  plan.add_notes(
      "expert traffic and time assume balanced routing with every assignment kept; the worst "
      "case memory takes the busiest expert at the load imbalance, capped by capacity");
  plan.add_notes(
      request.overlap_reduction()
          ? "step time adds compute (at the achieved share of the GEMM rate) and communication "
            "(bytes over the slower link a group spans, plus a latency per collective); the "
            "gradient sums overlap the backward, the expert and model-parallel exchanges do not"
          : "step time adds compute (at the achieved share of the GEMM rate) and communication "
            "(bytes over the slower link a group spans, plus a latency per collective), none "
            "of it overlapped");
  return plan;
}

std::string plan_table(const Plan& plan) {
  const PlanRequest& r = plan.request();
  const ModelConfig& c = r.model();
  const ClusterRates& rates = plan.rates();
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "%s (%.3gB parameters, %lld experts) on %lld x %s, batch %lld x (%lld + %lld), "
                "%lld micro-batch%s, %s, %s%s, load imbalance %.2g\n",
                c.name().c_str(), static_cast<double>(count_parameters(c)) / 1e9,
                static_cast<long long>(c.num_experts()), static_cast<long long>(r.gpus()),
                rates.gpu().c_str(), static_cast<long long>(r.batch_size()),
                static_cast<long long>(r.input_length()), static_cast<long long>(r.target_length()),
                static_cast<long long>(r.micro_batches()), r.micro_batches() == 1 ? "" : "es",
                r.dtype().c_str(),
                r.optimizer() == proto::TrainConfig::ADAMW ? "AdamW" : "Adafactor",
                r.recompute() ? ", recomputation" : "", r.load_imbalance());
  out += line;
  std::snprintf(line, sizeof line,
                "rates: %.0f GiB, %.0f TFLOP/s %s x %.2f achieved, links %.0f GB/s in a node "
                "of %lld, %.0f GB/s between nodes\n",
                rates.memory_bytes() / kGiB,
                (r.dtype() == "bf16" ? rates.bf16_flops() : rates.f32_flops()) / 1e12,
                r.dtype().c_str(), rates.achieved_fraction(), rates.intra_node_bytes_per_s() / 1e9,
                static_cast<long long>(rates.gpus_per_node()),
                rates.inter_node_bytes_per_s() / 1e9);
  out += line;
  for (const std::string& s : rates.sources()) out += "  " + s + "\n";
  // Columns: title, width, decimals; "|" starts a group.
  struct Column {
    const char* title;
    int width, decimals;
  };
  const std::vector<Column> columns = {{"|GiB per GPU: params", 19, 2},
                                       {"grads", 6, 2},
                                       {"optim", 6, 2},
                                       {"activ", 7, 2},
                                       {"(dispatch)", 10, 2},
                                       {"staging", 7, 2},
                                       {"peak", 6, 1},
                                       {"worst", 6, 1},
                                       {"|MiB sent per step: grads", 24, 1},
                                       {"experts", 8, 1},
                                       {"mp", 8, 1},
                                       {"|step s", 7, 3},
                                       {"comm %", 6, 1},
                                       {"tokens/s", 9, -1}};
  out += "\n  dp   ep   mp ";
  // A group's first column opens with a bar (the row's first directly after the layout).
  auto separator = [&](size_t i) {
    return columns[i].title[0] != '|' ? " " : i == 0 ? "| " : " | ";
  };
  for (size_t i = 0; i < columns.size(); ++i) {
    const Column& c = columns[i];
    std::snprintf(line, sizeof line, "%s%*s", separator(i), c.width, c.title + (c.title[0] == '|'));
    out += line;
  }
  out += " | fits\n";
  for (const LayoutPlan& p : plan.layouts()) {
    std::snprintf(line, sizeof line, "%4lld %4lld %4lld ", static_cast<long long>(p.dp()),
                  static_cast<long long>(p.ep()), static_cast<long long>(p.mp()));
    out += line;
    if (!p.has_peak_bytes()) {
      out += "| " + p.why_not() + "\n";
      continue;
    }
    const double optimizer =
        r.optimizer() == proto::TrainConfig::ADAMW ? p.adamw_bytes() : p.adafactor_bytes();
    const double activations =
        r.recompute() ? p.recompute_activation_bytes() : p.activation_bytes();
    const double values[] = {p.parameter_bytes() / kGiB,
                             p.gradient_bytes() / kGiB,
                             optimizer / kGiB,
                             activations / kGiB,
                             p.dispatch_bytes() / kGiB,
                             p.buffer_bytes() / kGiB,
                             p.peak_bytes() / kGiB,
                             p.worst_peak_bytes() / kGiB,
                             p.gradient_sent_bytes() / (1 << 20),
                             p.expert_sent_bytes() / (1 << 20),
                             p.model_parallel_sent_bytes() / (1 << 20),
                             p.step_seconds(),
                             100 * p.communication_seconds() / p.step_seconds(),
                             p.tokens_per_second()};
    for (size_t i = 0; i < columns.size(); ++i) {
      const Column& c = columns[i];
      const char* sep = separator(i);
      if (c.decimals < 0)
        std::snprintf(line, sizeof line, "%s%*.3g", sep, c.width, values[i]);
      else
        std::snprintf(line, sizeof line, "%s%*.*f", sep, c.width, c.decimals, values[i]);
      out += line;
    }
    out += std::string(" | ") + (p.fits() ? "yes" : p.why_not()) + "\n";
  }
  if (plan.notes_size() > 0) out += "\nnotes:\n";
  for (const std::string& n : plan.notes()) out += "- " + n + "\n";
  return out;
}

}  // namespace sw
