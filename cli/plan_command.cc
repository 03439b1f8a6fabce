// switch plan [--preset NAME | --config FILE | --request FILE] [--gpus N] [--gpu h200|h100|a100]
//             [--rates FILE] [--tokens-per-batch T] [--input-length L] [--target-length L]
//             [--micro-batches M] [--capacity-factor C] [--dtype bf16|f32]
//             [--optimizer adafactor|adamw] [--recompute] [--load-imbalance F]
//             [--reduction rank-ordered|all-reduce] [--no-overlap] [--layout dp=..,ep=..,mp=..]
//             [--set key=value]... [--format table|proto] [--print-rates]
//     how a model trains on N GPUs, before a run (core/dist/plan.h): for every dp x ep x mp
//     layout, memory per GPU, bytes sent per step and an estimated step time, ranked, the
//     layouts that do not fit marked and why; --print-rates writes the GPU's rates as a
//     file to edit and pass back with --rates
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/dist/plan.h"
#include "core/model/config.h"

namespace sw::cli {
namespace {

// A flag's value that must be one of `allowed` (an error names the nearest).
std::string choice(const Flags& flags, const std::string& name, const std::string& fallback,
                   const std::vector<std::string>& allowed) {
  const std::string v = flags.value(name, fallback);
  for (const std::string& a : allowed)
    if (v == a) return v;
  throw UsageError("--" + name + " " + v + ": not one of its values (did you mean " +
                   nearest_name(v, allowed) + "?)");
}

sw::PlanRequest request_from(const Flags& flags) {
  sw::PlanRequest r;
  if (flags.has("request")) sw::parse_text(read_file(flags.value("request")), r, "PlanRequest");
  if (flags.has("preset") && flags.has("config"))
    throw UsageError("plan: give --preset or --config, not both");
  if (flags.has("preset")) r.set_model_preset(flags.value("preset"));
  if (flags.has("config")) {  // a whole ModelConfig, standing alone
    r.set_model_preset("");
    *r.mutable_model() = sw::config_from_text(read_file(flags.value("config")));
  }
  if (flags.has("gpus")) r.set_gpus(flags.int_value("gpus", 0));
  if (flags.has("gpu")) r.set_gpu(flags.value("gpu"));
  if (flags.has("rates"))
    *r.mutable_rates() = sw::cluster_rates_from_text(read_file(flags.value("rates")));
  if (flags.has("input-length")) r.set_input_length(flags.int_value("input-length", 0));
  if (flags.has("target-length")) r.set_target_length(flags.int_value("target-length", 0));
  if (flags.has("tokens-per-batch")) {
    const int64_t tokens = flags.int_value("tokens-per-batch", 0);
    if (tokens < 1 || tokens % r.input_length() != 0)
      throw sw::Error(sw::Status::kInvalidArgument,
                      "plan: --tokens-per-batch " + std::to_string(tokens) +
                          " is not a positive multiple of the input length " +
                          std::to_string(r.input_length()));
    r.set_batch_size(tokens / r.input_length());
  }
  if (flags.has("micro-batches")) r.set_micro_batches(flags.int_value("micro-batches", 0));
  if (flags.has("capacity-factor"))
    r.mutable_model()->set_train_capacity_factor(flags.double_value("capacity-factor", 0));
  if (flags.has("dtype")) r.set_dtype(choice(flags, "dtype", "bf16", {"bf16", "f32"}));
  if (flags.has("optimizer"))
    r.set_optimizer(choice(flags, "optimizer", "adafactor", {"adafactor", "adamw"}) == "adamw"
                        ? sw::proto::TrainConfig::ADAMW
                        : sw::proto::TrainConfig::ADAFACTOR);
  if (flags.has("recompute")) r.set_recompute(true);
  if (flags.has("load-imbalance")) r.set_load_imbalance(flags.double_value("load-imbalance", 0));
  if (flags.has("reduction"))
    r.set_rank_ordered_reduction(choice(flags, "reduction", "rank-ordered",
                                        {"rank-ordered", "all-reduce"}) == "rank-ordered");
  if (flags.has("no-overlap")) r.set_overlap_reduction(false);
  if (flags.has("layout")) r.set_layout(flags.value("layout"));
  for (const std::string& kv : flags.values("set")) {
    const std::string key = kv.substr(0, kv.find('='));
    if (key.rfind("model.", 0) == 0)
      sw::merge_override(*r.mutable_model(), kv.substr(6));
    else
      sw::merge_override(r, kv);
  }
  return r;
}

int run_plan(const Flags& flags) {
  const sw::PlanRequest request = request_from(flags);
  if (flags.has("print-rates")) {
    sw::check_plan_request(request);
    const sw::ClusterRates rates =
        request.has_rates() ? request.rates() : sw::cluster_rates(request.gpu());
    std::printf("%s", sw::text_with_defaults(rates).c_str());
    return 0;
  }
  const sw::Plan plan = sw::make_plan(request);
  const std::string format = choice(flags, "format", "table", {"table", "proto"});
  std::printf("%s", format == "table" ? sw::plan_table(plan).c_str()
                                      : sw::text_with_defaults(plan).c_str());
  return 0;
}

}  // namespace

Command plan_command() {
  return {"plan",
          "memory, traffic and step time of every dp x ep x mp layout on N GPUs",
          {{"preset", "NAME", "the model preset (default switch-base-8)"},
           {"config", "FILE", "a ModelConfig in protobuf text format instead of a preset"},
           {"request", "FILE", "a PlanRequest in protobuf text format (flags override it)"},
           {"gpus", "N", "GPUs in the cluster (default 8)"},
           {"gpu", "NAME", "built-in rates: h200 (default), h100, a100"},
           {"rates", "FILE", "a ClusterRates file instead (see --print-rates)"},
           {"tokens-per-batch", "T", "input tokens per step (default 2048 x 512)"},
           {"input-length", "L", "encoder tokens per sequence (default 512)"},
           {"target-length", "L", "decoder tokens per sequence (default 114)"},
           {"micro-batches", "M", "micro-batches per step (default 1)"},
           {"capacity-factor", "C", "the training capacity factor"},
           {"dtype", "D", "bf16 (default: f32 master weights) or f32"},
           {"optimizer", "O", "adafactor (default) or adamw"},
           {"recompute", "", "keep only each block's input for the backward"},
           {"load-imbalance", "F", "busiest expert over the mean for the worst case (default 2)"},
           {"reduction", "R", "gradient sums: rank-ordered (default) or all-reduce"},
           {"no-overlap", "", "gradient sums after the backward, not overlapped with it"},
           {"layout", "LAYOUT", "only this layout, e.g. dp=2,ep=4,mp=1"},
           {"set", "KEY=VALUE", "a PlanRequest field, or model.FIELD (repeatable)"},
           {"format", "F", "table (default) or proto (the Plan message as text)"},
           {"print-rates", "", "print the GPU's rates as a ClusterRates file and stop"}},
          "",
          run_plan};
}

}  // namespace sw::cli
