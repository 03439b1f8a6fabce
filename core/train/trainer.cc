#include "core/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "core/dist/expert_parallel.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/softmax.h"
#include "core/ops/storage.h"
#include "core/train/gradient_clipping.h"

namespace sw {
namespace {

double seconds_between(std::chrono::steady_clock::time_point from,
                       std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Sums a micro-batch's routing into the step's per-layer loads (entropy weighted by tokens).
void add_layer_loads(const std::vector<LayerRouting>& routing, std::vector<LayerLoad>& loads) {
  if (loads.empty()) {
    for (const LayerRouting& r : routing) {
      LayerLoad l;
      l.stack = r.stack;
      l.block = r.block;
      l.tokens_per_expert.assign(r.stats.tokens_per_expert.size(), 0);
      l.kept_per_expert.assign(r.stats.kept_per_expert.size(), 0);
      l.choices = r.stats.choices;
      loads.push_back(l);
    }
  }
  SW_CHECK(loads.size() == routing.size(), Status::kInternal, "trainer: sparse layer count");
  for (size_t i = 0; i < routing.size(); ++i) {
    int64_t tokens = 0;
    for (size_t e = 0; e < routing[i].stats.tokens_per_expert.size(); ++e) {
      loads[i].tokens_per_expert[e] += routing[i].stats.tokens_per_expert[e];
      loads[i].kept_per_expert[e] += routing[i].stats.kept_per_expert[e];
      tokens += routing[i].stats.tokens_per_expert[e];
    }
    // Summed weighted by tokens here, divided by the total in finish_layer_loads.
    loads[i].router_entropy += routing[i].stats.router_entropy * static_cast<double>(tokens);
  }
}

void finish_layer_loads(std::vector<LayerLoad>& loads) {
  for (LayerLoad& l : loads) {
    int64_t tokens = 0, kept = 0;
    for (size_t e = 0; e < l.tokens_per_expert.size(); ++e)
      tokens += l.tokens_per_expert[e], kept += l.kept_per_expert[e];
    if (tokens == 0) continue;
    l.router_entropy /= static_cast<double>(tokens);
    l.dropped_fraction = 1.0 - static_cast<double>(kept) /
                                   static_cast<double>(tokens * std::max<int64_t>(l.choices, 1));
  }
}

// Sums this replica's share of the step's numbers with the others' (before the averages
// and ratios are taken), so every replica reports the global batch.
void reduce_metrics(Communicator& dp, TrainMetrics& m, int64_t& sparse_layers) {
  std::vector<double> v = {m.ce,
                           m.target,
                           m.aux,
                           m.z,
                           m.dropped_fraction,
                           static_cast<double>(m.tokens),
                           static_cast<double>(sparse_layers)};
  for (const LayerLoad& l : m.layers) {
    for (int64_t n : l.tokens_per_expert) v.push_back(static_cast<double>(n));
    for (int64_t n : l.kept_per_expert) v.push_back(static_cast<double>(n));
    v.push_back(l.router_entropy);
  }
  Tensor sums = Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())});
  dp.all_reduce_sum(sums);
  const double* s = sums.data<double>();
  m.ce = s[0], m.target = s[1], m.aux = s[2], m.z = s[3], m.dropped_fraction = s[4];
  m.tokens = static_cast<int64_t>(s[5]);
  sparse_layers = static_cast<int64_t>(s[6]);
  size_t i = 7;
  for (LayerLoad& l : m.layers) {
    for (int64_t& n : l.tokens_per_expert) n = static_cast<int64_t>(s[i++]);
    for (int64_t& n : l.kept_per_expert) n = static_cast<int64_t>(s[i++]);
    l.router_entropy = s[i++];
  }
}

}  // namespace

double LayerLoad::max_share() const {
  int64_t tokens = 0;
  for (int64_t n : tokens_per_expert) tokens += n;
  return tokens ? static_cast<double>(tokens_per_expert[busiest_expert()]) /
                      static_cast<double>(tokens)
                : 0.0;
}

int64_t LayerLoad::busiest_expert() const {
  return std::max_element(tokens_per_expert.begin(), tokens_per_expert.end()) -
         tokens_per_expert.begin();
}

Trainer::Trainer(SwitchTransformer& model, const TrainOptions& options)
    : model_(model), options_(options) {
  options_.schedule.validate();
  SW_CHECK_ARG(options.grad_clip_norm >= 0, "trainer: grad_clip_norm must be >= 0, got ",
               options.grad_clip_norm);
  optimizer_ = options.optimizer == TrainOptions::OptimizerKind::kAdafactor
                   ? make_adafactor(options.adafactor)
                   : make_adamw(options.adamw);
  if (const SwitchTransformer* t = options.teacher) {
    SW_CHECK_ARG(options.teacher_weight >= 0 && options.teacher_weight <= 1,
                 "trainer: teacher_weight must be in [0, 1], got ", options.teacher_weight);
    SW_CHECK_ARG(t->config().vocab_size() == model.config().vocab_size(),
                 "trainer: the teacher's vocabulary (", t->config().vocab_size(),
                 ") is not the student's (", model.config().vocab_size(), ")");
    SW_CHECK(t->device().is_cpu() && model.device().is_cpu(), Status::kUnsupported,
             "trainer: distillation runs on the cpu in this version (teacher on ",
             t->device().str(), ", student on ", model.device().str(), ")");
  }
  if (options.fixed_expert_capacity)
    check_fixed_expert_capacity(model.config(), model.device(),
                                model.expert_group() && model.expert_group()->size() > 1);
  if (options.bf16) {
    SW_CHECK_ARG(model.dtype() == DType::f32,
                 "trainer: bf16 mixed precision updates an f32 model "
                 "(the master weights), got a ",
                 dtype_name(model.dtype()), " one");
    const bool cpu = model.device().is_cpu();
    SW_CHECK(cpu || model.config().router_dtype() == ModelConfig::ROUTER_FLOAT32,
             Status::kUnsupported,
             "trainer: router_dtype ROUTER_BFLOAT16 trains on the cpu in this version (a GPU's "
             "router kernels are f32)");
    // The copy that computes: on the cpu an f32 model in bf16 storage (core/ops/storage.h);
    // on a GPU a bf16 model, whose router weight is f32 and whose gradients are f32.
    bf16_twin_ = std::make_unique<SwitchTransformer>(SwitchTransformer::without_initial_values(
        model.config(), model.seed(), cpu ? DType::f32 : DType::bf16, model.device(),
        model.expert_group(), model.model_group()));
    const auto& masters = model.parameters().entries();
    const auto& copies = bf16_twin_->parameters().entries();
    SW_CHECK(masters.size() == copies.size(), Status::kInternal, "trainer: the bf16 twin has ",
             copies.size(), " parameters, the model ", masters.size());
    for (size_t i = 0; i < masters.size(); ++i)
      SW_CHECK(masters[i].name == copies[i].name, Status::kInternal, "trainer: bf16 twin ",
               copies[i].name, " is not ", masters[i].name);
  }
}

const SwitchTransformer& Trainer::compute_model() const {
  if (!bf16_twin_) return model_;
  const bool router_bf16 = model_.config().router_dtype() == ModelConfig::ROUTER_BFLOAT16;
  const auto& masters = model_.parameters().entries();
  const auto& copies = bf16_twin_->parameters().entries();
  for (size_t i = 0; i < masters.size(); ++i) {
    Tensor copy = copies[i].tensor;
    if (copy.dtype() != masters[i].tensor.dtype()) {  // a GPU's bf16 copy
      copy.copy_from(masters[i].tensor.to(copy.dtype()));
      continue;
    }
    copy.copy_from(masters[i].tensor);
    // The router's weight and its balancing bias stay f32 under selective precision (a
    // GPU's bf16 model keeps them f32 too).
    const bool router = masters[i].name.find(".router.") != std::string::npos;
    if (copy.device().is_cpu() && (!router || router_bf16)) ops::round_to_bf16_(copy);
  }
  return *bf16_twin_;
}

std::vector<std::pair<std::string, Tensor>> Trainer::accumulate(
    const std::vector<Batch>& micro_batches, TrainMetrics& metrics) const {
  return accumulate_into(micro_batches, metrics, nullptr);
}

std::vector<std::pair<std::string, Tensor>> Trainer::accumulate_into(
    const std::vector<Batch>& micro_batches, TrainMetrics& metrics, GradientBuffer* buffers) const {
  const auto start = std::chrono::steady_clock::now();
  SW_CHECK_ARG(!micro_batches.empty(), "trainer: a step needs at least one micro-batch");
  auto counted_labels = [](const Batch& b) {
    const int32_t* labels = b.labels.data<int32_t>();
    return static_cast<int64_t>(std::count_if(labels, labels + b.labels.numel(),
                                              [](int32_t l) { return l != ops::kIgnoreIndex; }));
  };
  int64_t label_tokens = 0, sequences = 0;
  for (const Batch& b : micro_batches) {
    SW_CHECK_ARG(b.labels.defined(), "trainer: every micro-batch needs labels");
    SW_CHECK_ARG(b.labels.device().is_cpu(), "trainer: labels must be on the cpu, got ",
                 b.labels.str());
    label_tokens += counted_labels(b);
    sequences += b.input_ids.defined() ? b.input_ids.dim(0) : 0;
  }
  // This replica's first example in the global batch: its shard follows the lower ranks'.
  int64_t first_example = 0;
  Communicator* dp = options_.data_parallel;
  if (dp && dp->size() > 1) {  // shares of the global batch
    std::vector<int64_t> counts(2 + dp->size(), 0);
    counts[0] = label_tokens;
    counts[1] = sequences;
    counts[2 + dp->rank()] = sequences;
    Tensor sums = Tensor::from_vector<int64_t>(counts, {static_cast<int64_t>(counts.size())});
    dp->all_reduce_sum(sums);
    const int64_t* total = sums.data<int64_t>();
    label_tokens = total[0];
    sequences = total[1];
    for (int r = 0; r < dp->rank(); ++r) first_example += total[2 + r];
  }
  SW_CHECK_ARG(label_tokens > 0, "trainer: the batch has no label that is not ignored");
  ForwardOptions run;
  run.train = true;
  run.step = static_cast<uint64_t>(steps_ + 1);
  run.recompute = options_.recompute_activations;
  run.fixed_expert_capacity = options_.fixed_expert_capacity;
  std::vector<std::pair<std::string, Tensor>> total;
  int64_t sparse_layers = 0;
  const SwitchTransformer& compute = compute_model();
  // The sums over the replicas: experts over the ranks holding the same ones (under expert
  // parallelism), everything else over every replica.
  const bool replicated = dp && dp->size() > 1;
  Communicator* ep = options_.expert_parallel;
  const bool split_experts = replicated && ep && ep->size() > 1;
  if (split_experts && !expert_replicas_) expert_replicas_ = dp->split(ep->rank(), dp->rank());
  std::unique_ptr<BucketedReduction> shared_sums, expert_sums;
  if (replicated) {
    shared_sums = std::make_unique<BucketedReduction>(*dp, options_.gradient_reduction,
                                                      options_.gradient_bucket_bytes);
    if (split_experts)
      expert_sums = std::make_unique<BucketedReduction>(
          *expert_replicas_, options_.gradient_reduction, options_.gradient_bucket_bytes);
  }
  auto sum_over_replicas = [&](const std::string& name, const Tensor& grad) {
    (split_experts && is_expert_parameter(name) ? *expert_sums : *shared_sums).add(grad);
  };
  // With overlap, the last micro-batch's gradients are added to the earlier ones' and
  // handed to the sums as the backward finishes them.
  std::unordered_map<std::string, size_t> position;
  auto hand_over = [&](const std::vector<std::pair<std::string, Tensor>>& ready) {
    const ops::Bf16Storage f32_sums(false);  // gradients and their sums stay f32
    for (const auto& [name, grad] : ready) {
      if (total.empty()) {
        sum_over_replicas(name, grad);
        continue;
      }
      Tensor& acc = total[position.at(name)].second;
      ops::add_(acc, grad);
      sum_over_replicas(name, acc);
    }
    shared_sums->progress();
    if (expert_sums) expert_sums->progress();
  };
  const bool overlap = replicated && options_.overlap_reduction;
  for (size_t m = 0; m < micro_batches.size(); ++m) {
    const Batch& b = micro_batches[m];
    const bool last = m + 1 == micro_batches.size();
    if (overlap && last) {
      for (size_t i = 0; i < total.size(); ++i) position[total[i].first] = i;
      run.gradients_final = hand_over;
    }
    const int64_t counted = counted_labels(b);
    run.first_example = static_cast<uint64_t>(first_example);
    first_example += b.input_ids.dim(0);
    LossScales scales;
    scales.ce = static_cast<double>(counted) / static_cast<double>(label_tokens);
    scales.aux = scales.z =
        static_cast<double>(b.input_ids.dim(0)) / static_cast<double>(sequences);
    std::vector<std::pair<std::string, Tensor>> grads;
    // Distillation: the teacher's probabilities at every decoder position (eval mode).
    Tensor teacher_probs;
    if (options_.teacher) {
      const Tensor logits = options_.teacher->forward(b).logits;
      teacher_probs = ops::softmax(logits.view({logits.dim(0) * logits.dim(1), logits.dim(2)}))
                          .to(model_.dtype());
      run.teacher_probs = &teacher_probs;
      run.teacher_weight = options_.teacher_weight;
    }
    GradientBuffer* buffer = buffers ? &buffers[total.empty() ? 0 : 1] : nullptr;
    ForwardOutput out;
    {
      const ops::Bf16Storage precision(bf16_twin_ != nullptr);  // the sums below stay f32
      out = compute.forward_backward(b, run, grads, scales, buffer);
    }
    metrics.ce += scales.ce * out.ce_loss;
    metrics.target += scales.ce * out.target_loss;
    metrics.aux += scales.aux * out.aux_loss;
    metrics.z += scales.z * out.z_loss;
    metrics.tokens += b.input_ids.numel() + b.decoder_input_ids.numel();
    for (const LayerRouting& r : out.routing) metrics.dropped_fraction += r.stats.dropped_fraction;
    sparse_layers += static_cast<int64_t>(out.routing.size());
    add_layer_loads(out.routing, metrics.layers);
    if (total.empty()) {
      total = std::move(grads);
    } else if (!(overlap && last)) {  // with overlap, hand_over has added them
      for (size_t i = 0; i < total.size(); ++i) ops::add_(total[i].second, grads[i].second);
    }
  }
  const auto reduce_start = std::chrono::steady_clock::now();
  metrics.phases.forward_backward = seconds_between(start, reduce_start);
  if (replicated) {
    if (!overlap)
      for (const auto& [name, grad] : total) sum_over_replicas(name, grad);
    shared_sums->finish();
    if (expert_sums) expert_sums->finish();
    reduce_metrics(*dp, metrics, sparse_layers);
  }
  metrics.phases.reduce = seconds_between(reduce_start, std::chrono::steady_clock::now());
  metrics.loss = metrics.target + metrics.aux + metrics.z;
  if (sparse_layers) metrics.dropped_fraction /= static_cast<double>(sparse_layers);
  finish_layer_loads(metrics.layers);
  return total;
}

EvalMetrics Trainer::evaluate(const std::vector<Batch>& batches) const {
  SW_CHECK_ARG(!batches.empty(), "evaluate: no batches");
  EvalMetrics e;
  double ce_sum = 0;
  int64_t layers = 0;
  const SwitchTransformer& compute = compute_model();
  const ops::Bf16Storage precision(bf16_twin_ != nullptr);
  for (const Batch& b : batches) {
    SW_CHECK_ARG(b.labels.defined(), "evaluate: every batch needs labels");
    ForwardOptions eval;  // eval mode
    eval.fixed_expert_capacity = options_.fixed_expert_capacity;
    const ForwardOutput out = compute.forward(b, eval);
    ce_sum += out.ce_loss * static_cast<double>(out.label_tokens);
    e.label_tokens += out.label_tokens;
    e.aux += out.aux_loss / static_cast<double>(batches.size());
    e.z += out.z_loss / static_cast<double>(batches.size());
    e.tokens += b.input_ids.numel() + b.decoder_input_ids.numel();
    for (const LayerRouting& r : out.routing) e.dropped_fraction += r.stats.dropped_fraction;
    layers += static_cast<int64_t>(out.routing.size());
  }
  SW_CHECK_ARG(e.label_tokens > 0, "evaluate: the batches have no label that is not ignored");
  e.ce = ce_sum / static_cast<double>(e.label_tokens);
  e.loss = e.ce + e.aux + e.z;
  if (layers) e.dropped_fraction /= static_cast<double>(layers);
  return e;
}

void Trainer::update_balancing_biases(const std::vector<LayerLoad>& layers) {
  const double rate = model_.config().router_bias_update_rate();
  if (rate == 0) return;
  for (const LayerLoad& l : layers) {
    Tensor bias = model_.routing_choice_bias(l.stack, l.block);
    SW_CHECK(bias.defined() && bias.device().is_cpu(), Status::kInternal,
             "trainer: no balancing bias on the cpu for ", stack_name(l.stack), " block ", l.block);
    double mean = 0;
    for (int64_t n : l.tokens_per_expert) mean += static_cast<double>(n);
    mean /= static_cast<double>(l.tokens_per_expert.size());
    // Towards the under-loaded experts: b_e += rate * sign(mean load - load_e).
    auto move = [&](auto* b) {
      using T = std::remove_pointer_t<decltype(b)>;
      for (size_t e = 0; e < l.tokens_per_expert.size(); ++e) {
        const double gap = mean - static_cast<double>(l.tokens_per_expert[e]);
        b[e] = static_cast<T>(b[e] + rate * ((gap > 0) - (gap < 0)));
      }
    };
    if (bias.dtype() == DType::f64)
      move(bias.data<double>());
    else
      move(bias.data<float>());
  }
}

void Trainer::restore(int64_t steps_done,
                      const std::vector<std::pair<std::string, Tensor>>& state) {
  SW_CHECK_ARG(steps_done >= 0, "trainer: steps_done must be >= 0, got ", steps_done);
  std::vector<std::pair<std::string, Tensor>> parameters;  // those the optimizer steps
  for (const auto& e : model_.parameters().entries())
    if (e.trainable) parameters.push_back({e.name, e.tensor});
  // A run saved before its first step has no optimizer state yet.
  if (!state.empty() || steps_done > 0) optimizer_->load_state(parameters, state);
  steps_ = steps_done;
}

std::vector<Batch> split_micro_batches(const Batch& b, int64_t parts) {
  const int64_t n = b.input_ids.dim(0);
  SW_CHECK_ARG(parts >= 1 && parts <= n, "micro_batches: ", parts, " cannot split a batch of ", n,
               " sequences");
  std::vector<Batch> out;
  for (int64_t k = 0; k < parts; ++k) {
    const int64_t lo = k * n / parts, hi = (k + 1) * n / parts;
    // Masks and labels are optional: an absent one stays absent.
    auto rows = [&](const Tensor& t) { return t.defined() ? t.slice(lo, hi) : Tensor(); };
    out.push_back({rows(b.input_ids), rows(b.attention_mask), rows(b.decoder_input_ids),
                   rows(b.decoder_attention_mask), rows(b.labels)});
  }
  return out;
}

TrainMetrics Trainer::step(const std::vector<Batch>& micro_batches) {
  const auto start = std::chrono::steady_clock::now();
  TrainMetrics m;
  std::vector<std::pair<std::string, Tensor>> grads =
      accumulate_into(micro_batches, m, step_gradients_);
  std::vector<ParameterGradient> pairs;
  const auto& entries = model_.parameters().entries();
  Communicator* ep = options_.expert_parallel;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!entries[i].trainable) continue;  // buffers move by their own rule (below)
    ParameterGradient pg{grads[i].first, entries[i].tensor, grads[i].second};
    if (!entries[i].split.whole()) {  // model parallelism: a part of the tensor
      pg.shard_group = model_.model_group();
      pg.split_axis = entries[i].split.axis;
      if (ep && ep->size() > 1 && is_expert_parameter(pg.name)) pg.expert_group = ep;
    } else if (ep && ep->size() > 1 && is_expert_parameter(pg.name)) {
      pg.shard_group = ep;  // expert parallelism: one of the experts
    }
    pairs.push_back(std::move(pg));
  }
  const auto clip_start = std::chrono::steady_clock::now();
  m.grad_norm = clip_gradient_norm(pairs, options_.grad_clip_norm);
  const auto clip_end = std::chrono::steady_clock::now();
  m.phases.clip = seconds_between(clip_start, clip_end);
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    // Nothing is updated: the parameters, the optimizer state and the step count stay.
    m.skipped = true;
    m.skipped_steps = ++skipped_;
    m.step = steps_;
    SW_CHECK(++bad_in_a_row_ < options_.max_bad_steps, Status::kNumeric,
             "training stopped: ", bad_in_a_row_, " steps in a row after step ", steps_,
             " had a non-finite loss or gradient (loss ", m.loss, ", gradient norm ", m.grad_norm,
             "); the parameters are those of step ", steps_);
    m.seconds = seconds_between(start, std::chrono::steady_clock::now());
    return m;
  }
  bad_in_a_row_ = 0;
  m.skipped_steps = skipped_;
  m.step = ++steps_;
  m.learning_rate = options_.schedule.rate(m.step);
  optimizer_->step(pairs, m.learning_rate, m.step);
  update_balancing_biases(m.layers);
  const auto end = std::chrono::steady_clock::now();
  m.phases.optimizer = seconds_between(clip_end, end);
  m.seconds = seconds_between(start, end);
  return m;
}

}  // namespace sw
