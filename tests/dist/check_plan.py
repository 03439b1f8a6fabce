#!/usr/bin/env python3
"""`switch plan` against what `switch train` measures on the CPU.

For each case: train a few steps (under mpirun for a layout of several ranks), read each
rank's measured usage from summary.json (peak host tensor bytes in a step, bytes sent per
step by collective), ask `switch plan` for the same model, batch and layout (f32, the
run's optimizer), and compare: parameters exactly, peak memory and bytes sent within the
tolerance (0.10 unless given).

usage: check_plan.py SWITCH MPIRUN [--tolerance 0.1] [--keep DIR [--reuse]]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

SMALL = ["--set", "corpus=/usr/share/common-licenses/GPL-3", "--set", "tokenizer_vocab_size=400",
         "--set", "eval_batches=1", "--set", "steps=3"]

# (name, ranks, layout, extra train overrides)
CASES = [
    ("one process", 1, "", ["batch_size=8", "input_length=64", "target_length=16"]),
    ("one process, AdamW, 2 micro-batches", 1, "",
     ["batch_size=8", "input_length=64", "target_length=16", "optimizer=ADAMW", "micro_batches=2"]),
    ("one process, recomputation", 1, "",
     ["batch_size=8", "input_length=64", "target_length=16", "recompute_activations=true"]),
    ("one process, GEGLU, top-2, wide", 1, "",
     ["batch_size=4", "input_length=48", "target_length=16", "model.activation=GATED_GELU",
      "model.num_selected_experts=2", "model.d_ff=512"]),
    ("dp=2", 2, "dp=2", ["batch_size=8", "input_length=64", "target_length=16"]),
    ("dp=2, all-reduce after the backward", 2, "dp=2",
     ["batch_size=8", "input_length=64", "target_length=16", "gradient_reduction=ALL_REDUCE",
      "overlap_gradient_reduction=false"]),
    ("ep=2", 2, "ep=2", ["batch_size=8", "input_length=64", "target_length=16"]),
    ("mp=2", 2, "mp=2", ["batch_size=8", "input_length=64", "target_length=16"]),
    ("dp=2,ep=2", 4, "dp=2,ep=2", ["batch_size=8", "input_length=64", "target_length=16"]),
    ("dp=2,ep=2, 64 KiB buckets", 4, "dp=2,ep=2",
     ["batch_size=8", "input_length=64", "target_length=16", "gradient_bucket_bytes=65536"]),
    ("ep=2,mp=2", 4, "ep=2,mp=2", ["batch_size=8", "input_length=64", "target_length=16"]),
    ("ep=4", 4, "ep=4", ["batch_size=8", "input_length=64", "target_length=16"]),
]


def train(switch, mpirun, ranks, layout, overrides, out):
    cmd = [switch, "train", "--out", out] + SMALL
    for o in overrides:
        cmd += ["--set", o]
    if ranks > 1:
        cmd = mpirun + ["-np", str(ranks)] + cmd + ["--parallel", layout]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.load(open(os.path.join(out, "summary.json")))["ranks"]


def plan(switch, out, ranks, layout):
    """The plan for the run's own resolved config (train_config.textproto)."""
    text = open(os.path.join(out, "train_config.textproto")).read()
    model = re.search(r"^model \{\n(.*?)^\}", text, re.S | re.M).group(1)
    field = lambda name: re.search(rf"^{name}: (\S+)", text, re.M).group(1)

    def optional(name, default):
        found = re.search(rf"^{name}: (\S+)", text, re.M)
        return found.group(1) if found else default

    rank_ordered = optional("gradient_reduction", "RANK_ORDERED") == "RANK_ORDERED"
    recompute = optional("recompute_activations", "false") == "true"
    overlap = optional("overlap_gradient_reduction", "true") == "true"
    request = os.path.join(out, "plan_request.textproto")
    with open(request, "w") as f:
        f.write(f'model_preset: ""\nmodel {{\n{model}}}\ngpus: {ranks}\n'
                f"batch_size: {field('batch_size')}\ninput_length: {field('input_length')}\n"
                f"target_length: {field('target_length')}\n"
                f"micro_batches: {field('micro_batches')}\ndtype: \"f32\"\n"
                f"optimizer: {field('optimizer')}\n"
                f"rank_ordered_reduction: {str(rank_ordered).lower()}\n"
                f"overlap_reduction: {str(overlap).lower()}\n"
                f"recompute: {str(recompute).lower()}\n"
                f"gradient_bucket_bytes: {optional('gradient_bucket_bytes', 33554432)}\n")
        if layout:
            f.write(f'layout: "{layout}"\n')
    proto = subprocess.run([switch, "plan", "--request", request, "--format", "proto"],
                           check=True, capture_output=True, text=True).stdout
    values = dict(re.findall(r"^  (\w+): (\S+)", proto, re.M))
    return {k: float(v) for k, v in values.items() if re.match(r"^[-0-9.e+]+$", v)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("switch")
    ap.add_argument("mpirun", help="the launcher and its options, one argument")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--keep", help="leave the runs here")
    ap.add_argument("--reuse", action="store_true", help="plan against the runs under --keep")
    args = ap.parse_args()
    root = args.keep or tempfile.mkdtemp()
    failures = 0
    print(f"{'case':38} {'rank':>4} | {'peak MiB plan/run':>17} {'ratio':>6} | "
          f"{'sent KiB plan/run':>19} {'ratio':>6} | all-reduce+gather / all-to-all KiB (run)")
    for i, (name, ranks, layout, overrides) in enumerate(CASES):
        out = os.path.join(root, f"case{i}")
        if args.reuse:
            usage = json.load(open(os.path.join(out, "summary.json")))["ranks"]
        else:
            usage = train(args.switch, args.mpirun.split(), ranks, layout, overrides, out)
        p = plan(args.switch, out, ranks, layout)
        optimizer = "adamw_bytes" if "ADAMW" in " ".join(overrides) else "adafactor_bytes"
        for u in usage:
            sent = u["sent_per_step"]
            run_sent = sum(sent.values())
            plan_sent = p["gradient_sent_bytes"] + p["expert_sent_bytes"] + \
                p["model_parallel_sent_bytes"]
            peak_ratio = p["peak_bytes"] / u["peak_in_steps"]
            sent_ratio = plan_sent / run_sent if run_sent else (1.0 if plan_sent == 0 else 0)
            params_ok = p["parameter_bytes"] == u["parameter_bytes"]
            ok = params_ok and abs(peak_ratio - 1) <= args.tolerance and \
                abs(sent_ratio - 1) <= args.tolerance
            failures += not ok
            print(f"{name:38} {u['rank']:4} | {p['peak_bytes'] / 2**20:8.2f}/"
                  f"{u['peak_in_steps'] / 2**20:<8.2f} {peak_ratio:6.3f} | "
                  f"{plan_sent / 1024:9.1f}/{run_sent / 1024:<9.1f} {sent_ratio:6.3f} | "
                  f"{(sent['all_reduce'] + sent['all_gather']) / 1024:.1f} / "
                  f"{sent['all_to_all'] / 1024:.1f} (plan {p['expert_sent_bytes'] / 1024:.1f}) "
                  f"{'' if ok else '  <- OUTSIDE' + ('' if params_ok else ' (parameters differ: plan %d, run %d)' % (p['parameter_bytes'], u['parameter_bytes']))}")
            if i == 0 and u["rank"] == 0:
                print(f"{'':38}      | plan: params {p['parameter_bytes'] / 2**20:.2f} grads "
                      f"{p['gradient_bytes'] / 2**20:.2f} optimizer "
                      f"{p[optimizer] / 2**20:.2f} activations "
                      f"{p['activation_bytes'] / 2**20:.2f} MiB")
    print(f"{failures} outside the tolerance of {args.tolerance:.0%}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
