#!/usr/bin/env python3
"""The reference for the GPU Switch FFN benchmark: an HF-style Switch FFN layer in PyTorch
eager mode (the structure of transformers' SwitchTransformersSparseMLP: an f32 router,
one-hot capacity masks from a cumulative sum per sequence, then a Python loop over experts
with boolean-mask gathers), in bf16 on the same GPU and shapes as
switch_ffn_gpu_bench.cc. Prints a table; --csv FILE writes it."""
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv")
    args = parser.parse_args()
    d, ff, seq = 768, 3072, 512
    gen = torch.Generator(device="cuda").manual_seed(0)
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
