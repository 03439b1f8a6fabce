#!/usr/bin/env python3
"""The reference for sw_train_gpu_bench's whole-model rows: transformers'
SwitchTransformersForConditionalGeneration with switch-base-8's shapes (randomly
initialised from its config, nothing downloaded), on the same GPU, batch 8 x (512 + 128)
random tokens as train_gpu_bench.cc:
  - the eval forward (with labels, no gradients), the model in bf16;
  - a training step: forward, backward and Adafactor (transformers', lr 0.01, no relative
    step, as libswitch's defaults) with f32 weights under torch.autocast(bfloat16), the
    usual PyTorch mixed precision and the counterpart of libswitch's bf16 training;
each eager and torch.compile'd (a mode that fails is reported with its error). Joined
with libswitch's rows from --ours (train_gpu_bench's _steps.csv: switch-base-8, bf16, no
recomputation). Prints a table; --csv FILE writes it.

usage: hf_train_gpu_bench.py [--ours STEPS_CSV] [--csv FILE] [--batch N]
"""
import argparse
import csv
import time

import torch
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration
from transformers.optimization import Adafactor

INPUT_LEN, TARGET_LEN = 512, 128


def switch_base_8():
    """switch-base-8's shapes (core/presets/switch-base-8.textproto)."""
    return SwitchTransformersConfig(
        vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12,
        num_decoder_layers=12, num_experts=8, encoder_sparse_step=2, decoder_sparse_step=2,
        expert_capacity=64, router_jitter_noise=0.01, dropout_rate=0.1,
        router_dtype="float32", feed_forward_proj="relu")


def median_ms(fn, reps=5, warm=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def batch(batch_size, vocab, gen):
    ids = lambda n: torch.randint(2, vocab, (batch_size, n), device="cuda", generator=gen)  # noqa: E731
    return ids(INPUT_LEN), ids(TARGET_LEN), ids(TARGET_LEN)


def forward_ms(model, inputs, decoder_inputs, labels):
    def run():
        with torch.no_grad():
            model(input_ids=inputs, decoder_input_ids=decoder_inputs, labels=labels)
    return median_ms(run)


def step_ms(model, optimizer, inputs, decoder_inputs, labels):
    def run():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=inputs, decoder_input_ids=decoder_inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
    return median_ms(run)


def measure(name, fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a mode that does not work is reported, not fatal
        print(f"{name}: not available ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ours")
    p.add_argument("--csv")
    p.add_argument("--batch", type=int, default=8)
    a = p.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    config = switch_base_8()
    inputs, decoder_inputs, labels = batch(a.batch, config.vocab_size, gen)
    tokens = a.batch * (INPUT_LEN + TARGET_LEN)
    results = {}
    for mode in ("eager", "compile"):
        torch.manual_seed(0)
        model = SwitchTransformersForConditionalGeneration(config).cuda()
        runner = torch.compile(model) if mode == "compile" else model
        model.train()
        optimizer = Adafactor(model.parameters(), lr=0.01, relative_step=False,
                              scale_parameter=False, warmup_init=False)
        results[("step", mode)] = measure(
            f"training step, {mode}", lambda: step_ms(runner, optimizer, inputs, decoder_inputs, labels))
        del optimizer
        model.eval()
        model.to(torch.bfloat16)
        results[("forward", mode)] = measure(
            f"forward, {mode}", lambda: forward_ms(runner, inputs, decoder_inputs, labels))
        del model, runner
        torch.cuda.empty_cache()
    ours = {}
    if a.ours:
        with open(a.ours) as f:
            for r in csv.DictReader(f):
                if r["model"] == "switch-base-8" and r["precision"] == "bf16" and r["recompute"] == "0":
                    ours = {"step": float(r["step_ms"]), "forward": float(r["forward_ms"])}
    rows = []
    for what in ("forward", "step"):
        mine = ours.get(what)
        eager, compiled = results[(what, "eager")], results[(what, "compile")]
        rows.append((what, mine, eager, compiled))
    fmt = lambda v: f"{v:.1f}" if v else "n/a"  # noqa: E731
    ratio = lambda theirs, mine: f"{theirs / mine:.2f}x" if theirs and mine else "n/a"  # noqa: E731
    print(f"\n| switch-base-8, bf16, {a.batch} x ({INPUT_LEN} + {TARGET_LEN}) | libswitch ms | "
          "transformers eager ms | torch.compile ms | vs eager | vs compile |")
    print("|---|---|---|---|---|---|")
    for what, mine, eager, compiled in rows:
        label = "eval forward" if what == "forward" else "training step (Adafactor)"
        print(f"| {label} | {fmt(mine)} | {fmt(eager)} | {fmt(compiled)} | {ratio(eager, mine)} | "
              f"{ratio(compiled, mine)} |")
    print(f"({tokens} tokens per batch)")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("what,libswitch_ms,transformers_eager_ms,transformers_compile_ms\n")
            for what, mine, eager, compiled in rows:
                f.write(f"{what},{mine or ''},{eager or ''},{compiled or ''}\n")


if __name__ == "__main__":
    main()
