#!/usr/bin/env python3
"""The reference for the GPU Switch FFN benchmark: an HF-style Switch FFN layer in PyTorch
eager mode (the structure of transformers' SwitchTransformersSparseMLP: an f32 router,
one-hot capacity masks from a cumulative sum per sequence, then a Python loop over experts
with boolean-mask gathers), in bf16 on the same GPU and shapes as
switch_ffn_gpu_bench.cc; with --train, its forward + backward in f32 (TF32 off, then on)
and in bf16 (router f32) at the shapes of train_gpu_bench.cc. Prints a table; --csv FILE writes it."""
import argparse
import math

import torch


def switch_layer(x, router_w, wi, wo, capacity):
    """x [B, T, d] bf16; router_w [E, d] f32; wi [E, ff, d], wo [E, d, ff] bf16."""
    logits = x.float() @ router_w.t()
    probs = torch.softmax(logits, dim=-1)
    index = probs.argmax(dim=-1)
    mask = torch.nn.functional.one_hot(index, router_w.shape[0])
    priority = torch.cumsum(mask, dim=-2)  # per sequence
    mask = mask * (priority <= capacity)
    gate = probs.max(dim=-1).values.unsqueeze(-1)
    out = torch.zeros_like(x)
    for e in range(router_w.shape[0]):
        chosen = mask[:, :, e].bool()
        h = torch.relu(x[chosen] @ wi[e].t())
        out[chosen] = (h @ wo[e].t()).to(out.dtype)
    return (gate * out.float()).to(x.dtype)


def median_ms(fn, reps=15):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def inference_rows(gen):
    d, ff, seq = 768, 3072, 512
    rows = []
    for experts in (8, 32, 128):
        for tokens in (16384, 65536):
            x = torch.randn(tokens // seq, seq, d, device="cuda", generator=gen).bfloat16()
            router_w = torch.randn(experts, d, device="cuda", generator=gen) * 0.05
            wi = (torch.randn(experts, ff, d, device="cuda", generator=gen) / math.sqrt(d)).bfloat16()
            wo = (torch.randn(experts, d, ff, device="cuda", generator=gen) / math.sqrt(ff)).bfloat16()
            capacity = max(1, round(1.25 * seq / experts))
            with torch.no_grad():
                ms = median_ms(lambda: switch_layer(x, router_w, wi, wo, capacity))
            rows.append((experts, tokens, ms))
    return rows


def train_rows(gen):
    """Forward + backward (every weight and the input need gradients): in f32 with TF32 off
    and on, and in bf16 with the router in f32 (bf16 experts and activations)."""
    d, ff, seq = 768, 3072, 512
    rows = []
    for mode in ("no TF32", "TF32", "bf16"):
        torch.backends.cuda.matmul.allow_tf32 = mode == "TF32"
        dt = torch.bfloat16 if mode == "bf16" else torch.float32
        for experts in ((8, 32, 128) if mode == "bf16" else (8, 128)):
            for tokens in (16384, 65536):
                x = torch.randn(tokens // seq, seq, d, device="cuda", generator=gen).to(dt)
                router_w = torch.randn(experts, d, device="cuda", generator=gen) * 0.05
                wi = (torch.randn(experts, ff, d, device="cuda", generator=gen) / math.sqrt(d)).to(dt)
                wo = (torch.randn(experts, d, ff, device="cuda", generator=gen) / math.sqrt(ff)).to(dt)
                dy = (torch.randn(tokens // seq, seq, d, device="cuda", generator=gen) * 1e-3).to(dt)
                for t in (x, router_w, wi, wo):
                    t.requires_grad_(True)
                capacity = max(1, round(1.25 * seq / experts))

                def step():
                    for t in (x, router_w, wi, wo):
                        t.grad = None
                    switch_layer(x, router_w, wi, wo, capacity).backward(dy)

                rows.append((mode, experts, tokens, median_ms(step, reps=9)))
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv")
    parser.add_argument("--train", action="store_true",
                        help="forward + backward (f32 and bf16) instead of the bf16 forward")
    args = parser.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    if args.train:
        rows = train_rows(gen)
        print("\n| precision | E | tokens | PyTorch eager HF-style layer fwd+bwd ms |\n|---|---|---|---|")
        for mode, experts, tokens, ms in rows:
            print(f"| {mode} | {experts} | {tokens} | {ms:.3f} |")
        if args.csv:
            with open(args.csv, "w") as f:
                f.write("mode,experts,tokens,torch_eager_fwd_bwd_ms\n")
                for mode, experts, tokens, ms in rows:
                    f.write(f"{mode},{experts},{tokens},{ms:.4f}\n")
        return
    rows = inference_rows(gen)
    print("\n| E | tokens | PyTorch eager HF-style layer ms |\n|---|---|---|")
    for experts, tokens, ms in rows:
        print(f"| {experts} | {tokens} | {ms:.3f} |")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("experts,tokens,torch_eager_ms\n")
            for experts, tokens, ms in rows:
                f.write(f"{experts},{tokens},{ms:.4f}\n")


if __name__ == "__main__":
    main()
