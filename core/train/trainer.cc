#include "core/train/trainer.h"

#include <chrono>

#include "core/ops/elementwise.h"

namespace sw {

Trainer::Trainer(SwitchTransformer& model, const TrainOptions& options)
    : model_(model), options_(options) {
  options_.schedule.validate();
  SW_CHECK_ARG(options.grad_clip_norm >= 0, "trainer: grad_clip_norm must be >= 0, got ",
               options.grad_clip_norm);
  optimizer_ = options.optimizer == TrainOptions::OptimizerKind::kAdafactor
                   ? make_adafactor(options.adafactor)
                   : make_adamw(options.adamw);
}

std::vector<std::pair<std::string, Tensor>> Trainer::accumulate(
    const std::vector<Batch>& micro_batches, TrainMetrics& metrics) const {
  SW_CHECK_ARG(!micro_batches.empty(), "trainer: a step needs at least one micro-batch");
  int64_t label_tokens = 0, sequences = 0;
  for (const Batch& b : micro_batches) {
    SW_CHECK_ARG(b.labels.defined(), "trainer: every micro-batch needs labels");
    for (int64_t i = 0; i < b.labels.numel(); ++i)
      label_tokens += b.labels.data<int32_t>()[i] != -100;
    sequences += b.input_ids.defined() ? b.input_ids.dim(0) : 0;
  }
  SW_CHECK_ARG(label_tokens > 0, "trainer: the batch has no label that is not ignored");
  ForwardOptions run;
  run.train = true;
  run.step = static_cast<uint64_t>(steps_ + 1);
  std::vector<std::pair<std::string, Tensor>> total;
  int64_t sparse_layers = 0;
  for (const Batch& b : micro_batches) {
    int64_t counted = 0;
    for (int64_t i = 0; i < b.labels.numel(); ++i) counted += b.labels.data<int32_t>()[i] != -100;
    LossScales scales;
    scales.ce = static_cast<double>(counted) / static_cast<double>(label_tokens);
    scales.aux = scales.z =
        static_cast<double>(b.input_ids.dim(0)) / static_cast<double>(sequences);
    std::vector<std::pair<std::string, Tensor>> grads;
    const ForwardOutput out = model_.forward_backward(b, run, grads, scales);
    metrics.ce += scales.ce * out.ce_loss;
    metrics.aux += scales.aux * out.aux_loss;
    metrics.z += scales.z * out.z_loss;
    metrics.tokens += b.input_ids.numel() + b.decoder_input_ids.numel();
    for (const LayerRouting& r : out.routing) metrics.dropped_fraction += r.stats.dropped_fraction;
    sparse_layers += static_cast<int64_t>(out.routing.size());
    if (total.empty()) {
      total = std::move(grads);
    } else {
      for (size_t i = 0; i < total.size(); ++i) ops::add_(total[i].second, grads[i].second);
    }
  }
  metrics.loss = metrics.ce + metrics.aux + metrics.z;
  if (sparse_layers) metrics.dropped_fraction /= static_cast<double>(sparse_layers);
  return total;
}

TrainMetrics Trainer::step(const std::vector<Batch>& micro_batches) {
  const auto start = std::chrono::steady_clock::now();
  TrainMetrics m;
  std::vector<std::pair<std::string, Tensor>> grads = accumulate(micro_batches, m);
  std::vector<ParameterGradient> pairs;
  const auto& entries = model_.parameters().entries();
  for (size_t i = 0; i < grads.size(); ++i)
    pairs.push_back({grads[i].first, entries[i].tensor, grads[i].second});
  m.grad_norm = clip_gradient_norm(pairs, options_.grad_clip_norm);
  m.step = ++steps_;
  m.learning_rate = options_.schedule.rate(m.step);
  optimizer_->step(pairs, m.learning_rate, m.step);
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

}  // namespace sw
