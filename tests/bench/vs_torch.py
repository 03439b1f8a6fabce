#!/usr/bin/env python3
"""libswitch against PyTorch + transformers on the CPU, side by side: the same weights (a
preset initialised by libswitch, exported in HF's format for transformers), the same
inputs, the same number of threads. Every measurement runs in its own process, the two
sides interleaved (libswitch, torch, libswitch, torch, ...); the table gives each side's
median over the runs, its spread (min-max) and the ratio of the medians (> 1: libswitch
faster), with the target each ratio should reach.

  gemm            one f32 GEMM 2048^3 (ops::matmul through tests' sw_bench; torch.mm)
  forward-tiny    eval forward, tiny, 16 x (128 + 32)
  forward-base    eval forward, switch-base-8, 8 x (512 + 128)
  train-tiny      training step, tiny, 16 x (128 + 32)
  train-base      training step, switch-base-8, 2 x (128 + 32)
  generate-b1     greedy generation, switch-base-8, batch 1, 64 in, 32 new (forced)
  generate-b32    the same at batch 32
  ffn-e8          one Switch FFN layer's forward + backward (switch-base-8's shapes, d 768,
                  d_ff 3072), 8 x 256 tokens, capacity factor 1.25 per sequence, dropout
                  0.1, 8 experts (sw_train_bench's SwitchFfnTrain; transformers'
                  SwitchTransformersSparseMLP)
  ffn-e64         the same with 64 experts
  ffn-e256        the same with 256 experts

A training step is forward, backward, global-norm clipping to 1.0 and Adafactor (lr 0.01,
decay -0.8, no first moment, no parameter scale, update clipping 1.0: the paper's
settings; transformers' Adafactor on the torch side), with dropout 0.1, one warm-up step
before the timed ones.

usage: vs_torch.py [--work gemm,train-base,...] [--runs 3] [--threads 2] [--json FILE]
Needs the Python binding on PYTHONPATH, BUILD_DIR's tests/sw_bench for the GEMM, and torch +
transformers (scripts/bench-vs-torch makes a virtual environment with them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# work: (preset, batch, encoder length, decoder length, unit, target ratio)
WORK = {
    "gemm": (None, 2048, 0, 0, "GFLOP/s", 0.95),
    "forward-tiny": ("tiny", 16, 128, 32, "tokens/s", 1.2),
    "forward-base": ("switch-base-8", 8, 512, 128, "tokens/s", 1.0),
    "train-tiny": ("tiny", 16, 128, 32, "tokens/s", 1.2),
    "train-base": ("switch-base-8", 2, 128, 32, "tokens/s", 1.2),
    "generate-b1": ("switch-base-8", 1, 64, 32, "new tokens/s", 1.0),
    "generate-b32": ("switch-base-8", 32, 64, 32, "new tokens/s", 1.2),
    # (None, experts, sequences, sequence length, ...)
    "ffn-e8": (None, 8, 8, 256, "tokens/s", 1.0),
    "ffn-e64": (None, 64, 8, 256, "tokens/s", 1.0),
    "ffn-e256": (None, 256, 8, 256, "tokens/s", 1.0),
}


def inputs(vocab, batch, enc, dec, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(batch, enc), dtype=np.int32)
    labels = rng.integers(2, vocab, size=(batch, dec), dtype=np.int32)
    decoder = np.concatenate([np.zeros((batch, 1), np.int32), labels[:, :-1]], axis=1)
    return ids, decoder, labels


def median_seconds(f, repeats, warmup=1):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_libswitch(work, model_dir, threads, build):
    preset, batch, enc, dec, _, _ = WORK[work]
    if work == "gemm":
        out = subprocess.run([os.path.join(build, "tests", "sw_bench"),
                              "--benchmark_filter=SquareGemm/2048", "--benchmark_format=json"],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(threads))).stdout
        return json.loads(out)["benchmarks"][0]["GFLOP/s"]
    if work.startswith("ffn"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            # sw_train_bench prints its own table; the JSON goes to a file.
            subprocess.run([os.path.join(build, "tests", "sw_train_bench"),
                            f"--benchmark_filter=SwitchFfnTrain/E:{batch}/",
                            f"--benchmark_out={out.name}", "--benchmark_out_format=json"],
                           check=True, capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
            ms = json.load(out)["benchmarks"][0]["real_time"]  # per iteration, in ms
        return enc * dec / (ms / 1e3)
    import libswitch as sw
    model = sw.Model(sw.Config.preset(preset), seed=0)  # the weights model_dir holds
    with open(os.path.join(model_dir, "config.json")) as f:
        ids, decoder, labels = inputs(json.load(f)["vocab_size"], batch, enc, dec)
    if work.startswith("forward"):
        s = median_seconds(lambda: model.forward(ids, decoder), 3 if preset == "tiny" else 1)
        return batch * (enc + dec) / s
    if work.startswith("train"):
        config = sw.TrainConfig(f"batch_size: {batch} learning_rate: 0.01 grad_clip_norm: 1.0")
        trainer = sw.Trainer(model, config)
        step = {"input_ids": ids, "decoder_input_ids": decoder, "labels": labels}
        s = median_seconds(lambda: trainer.step(step), 5 if preset == "tiny" else 3)
        return batch * (enc + dec) / s
    s = median_seconds(lambda: model.generate(ids, max_new_tokens=dec, min_new_tokens=dec), 1)
    return batch * dec / s


def run_torch(work, model_dir, threads):
    import torch
    torch.set_num_threads(threads)
    preset, batch, enc, dec, _, _ = WORK[work]
    if work == "gemm":
        a = torch.randn(batch, batch)
        b = torch.randn(batch, batch)
        s = median_seconds(lambda: torch.mm(a, b), 5)
        return 2 * batch ** 3 / s / 1e9
    if work.startswith("ffn"):
        return torch_switch_ffn(batch, enc, dec)
    from transformers import SwitchTransformersForConditionalGeneration
    from transformers.optimization import Adafactor
    model = SwitchTransformersForConditionalGeneration.from_pretrained(model_dir)
    ids, decoder, labels = (torch.tensor(x, dtype=torch.long)
                            for x in inputs(model.config.vocab_size, batch, enc, dec))
    if work.startswith("forward"):
        model.eval()
        with torch.no_grad():
            s = median_seconds(lambda: model(input_ids=ids, decoder_input_ids=decoder),
                               3 if preset == "tiny" else 1)
        return batch * (enc + dec) / s
    if work.startswith("train"):
        model.train()
        opt = Adafactor(model.parameters(), lr=0.01, scale_parameter=False,
                        relative_step=False, warmup_init=False, clip_threshold=1.0,
                        decay_rate=-0.8, beta1=None)

        phases = {"forward": [], "backward": [], "clip": [], "optimizer": []}

        def step():
            marks = [time.perf_counter()]
            loss = model(input_ids=ids, decoder_input_ids=decoder, labels=labels).loss
            marks.append(time.perf_counter())
            loss.backward()
            marks.append(time.perf_counter())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            marks.append(time.perf_counter())
            opt.step()
            opt.zero_grad(set_to_none=True)
            marks.append(time.perf_counter())
            for (name, times), a, b in zip(phases.items(), marks, marks[1:]):
                times.append(b - a)
        s = median_seconds(step, 5 if preset == "tiny" else 3)
        print("phases (s, median): " + ", ".join(
            f"{k} {statistics.median(v[1:]):.3f}" for k, v in phases.items()), file=sys.stderr)
        return batch * (enc + dec) / s
    model.eval()
    with torch.no_grad():
        s = median_seconds(lambda: model.generate(input_ids=ids, do_sample=False, num_beams=1,
                                                  max_new_tokens=dec, min_new_tokens=dec), 1)
    return batch * dec / s


def torch_switch_ffn(experts, sequences, length):
    """transformers' Switch FFN layer (router, per-sequence capacity, experts with dropout)
    in training mode: forward + backward of a random output gradient; tokens/s."""
    import torch
    from transformers import SwitchTransformersConfig
    from transformers.models.switch_transformers import modeling_switch_transformers as hf
    capacity = max(1, round(1.25 * length / experts))  # T5X's rounding, as libswitch
    config = SwitchTransformersConfig(d_model=768, d_ff=3072, num_experts=experts,
                                      expert_capacity=capacity, dropout_rate=0.1)
    layer = hf.SwitchTransformersSparseMLP(config).train()
    x = torch.randn(sequences, length, 768, requires_grad=True)
    dy = torch.randn(sequences, length, 768)

    def step():
        out = layer(x.clone())  # the router's jitter scales its input in place
        (out[0] if isinstance(out, tuple) else out).backward(dy)
        layer.zero_grad(set_to_none=True)
        x.grad = None
    return sequences * length / median_seconds(step, 5)


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", default=",".join(WORK))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    p.add_argument("--one", nargs=3, metavar=("SIDE", "WORK", "MODEL_DIR"),
                   help=argparse.SUPPRESS)  # a child process: one measurement
    a = p.parse_args()
    if a.one:
        side, work, model_dir = a.one
        rate = (run_libswitch(work, model_dir, a.threads, a.build) if side == "libswitch"
                else run_torch(work, model_dir, a.threads))
        print(json.dumps({"rate": rate}))
        return
    # Each side runs with the environment this script was given: importing libswitch sets
    # a default GOMP_SPINCOUNT in this process, which the torch side must not inherit.
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    works = a.work.split(",")
    unknown = [w for w in works if w not in WORK]
    if unknown:
        sys.exit(f"vs_torch: unknown work {unknown[0]!r}; one of {', '.join(WORK)}")
    import libswitch as sw
    import torch
    import transformers
    print(f"libswitch {sw.__version__}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}; {a.threads} threads; {a.runs} interleaved runs "
          f"per side, each its own process", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for work in works:
            preset = WORK[work][0]
            if preset and preset not in dirs:
                dirs[preset] = os.path.join(tmp, preset)
                with sw.Model(sw.Config.preset(preset), seed=0) as m:
                    m.export_hf(dirs[preset], allow_routing_change=True)
        print(f"{'work':<14} {'unit':<13} {'libswitch':>10} {'spread':>17} {'torch':>10} "
              f"{'spread':>17} {'ratio':>6} {'target':>6}", flush=True)
        for work in works:
            rates = {"libswitch": [], "torch": []}
            for run in range(a.runs):
                for side in rates:
                    child = subprocess.run(
                        [sys.executable, __file__, "--threads", str(a.threads), "--build",
                         a.build, "--one", side, work, dirs.get(WORK[work][0], "-")],
                        check=True, capture_output=True, text=True, env=env)
                    rates[side].append(json.loads(child.stdout.strip().splitlines()[-1])["rate"])
                    phases = [l for l in child.stderr.splitlines() if l.startswith("phases")]
                    print(f"  {work} run {run + 1}/{a.runs} {side}: {rates[side][-1]:.4g}"
                          + "".join(f"; {p}" for p in phases), file=sys.stderr, flush=True)
            ours, theirs = (statistics.median(rates[s]) for s in ("libswitch", "torch"))
            unit, target = WORK[work][4], WORK[work][5]
            spread = {s: f"{fmt(min(r))}-{fmt(max(r))}" for s, r in rates.items()}
            print(f"{work:<14} {unit:<13} {fmt(ours):>10} {spread['libswitch']:>17} "
                  f"{fmt(theirs):>10} {spread['torch']:>17} {ours / theirs:>6.2f} "
                  f"{target:>6.2f}", flush=True)
            rows.append({"work": work, "unit": unit, "libswitch": rates["libswitch"],
                         "torch": rates["torch"], "ratio": ours / theirs, "target": target})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "runs": a.runs, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
