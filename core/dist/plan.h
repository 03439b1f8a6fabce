// `switch plan`: how a Switch model trains on a cluster, before a run. For every
// dp x ep x mp layout of the GPUs (core/dist/layout.h): memory per GPU (parameters,
// gradients, optimizer state, the activations the backward keeps, dispatch and collective
// buffers, and the worst case under a stated load imbalance), the bytes each rank sends
// per step by collective (counted as core/dist/traffic.h counts a real run), and a step
// time from compute rates and link bandwidths (core/dist/cluster_rates.h); ranked, with
// the layouts that do not fit marked and why (docs/MATH.md §6).
//
// The figures follow libswitch's own implementation: the tensors its layers keep for the
// backward, its gradient buckets, its expert exchange. Tests check them against what
// `switch train` measures on the CPU (peak host tensor bytes and sent bytes per rank).
#pragma once

#include <string>

#include "core/dist/cluster_rates.h"
#include "core/dist/layout.h"
#include "core/proto/libswitch.pb.h"

namespace sw {

using PlanRequest = proto::PlanRequest;
using LayoutPlan = proto::LayoutPlan;
using Plan = proto::Plan;

// A request from protobuf text, checked (check_plan_request); errors name the field.
PlanRequest plan_request_from_text(const std::string& text);
// Rejects a request that makes no sense (gpus < 1, a batch the micro-batches do not divide,
// an unknown dtype or preset, a layout that is not of `gpus` ranks), naming the field.
void check_plan_request(const PlanRequest& request);

// One layout's figures. The layout must be valid for the model and batch (a layout that
// is not is returned with fits = false and why_not saying why).
LayoutPlan plan_layout(const PlanRequest& request, const ParallelLayout& layout);

// Every layout of the request's GPUs (or its one layout): those that fit, fastest first,
// then those that do not.
Plan make_plan(const PlanRequest& request);

// The plan as a table for a terminal: the request, the rates and their sources, one row per
// layout.
std::string plan_table(const Plan& plan);

}  // namespace sw
