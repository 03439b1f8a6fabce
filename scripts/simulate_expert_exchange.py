#!/usr/bin/env python3
"""The expert all-to-all at scale, simulated from a real run's routing.

`switch train` writes each step's per-expert load (the share of a sparse layer's tokens
each expert was chosen by) to metrics.jsonl. Scaled by the number of experts, each load
is an expert's tokens over the mean. This pools those ratios from the run's later steps
(the router has settled) and, for ep = 8 ... 2048 ranks holding one expert each, draws
the experts' loads from the pool (a bootstrap, renormalised to mean 1) many times. For
each draw: what every rank sends (its tokens, (ep - 1) / ep of them to other ranks), what
the busiest rank receives and computes (its expert's tokens), and what a capacity factor
would drop. The all-to-all and the expert GEMMs wait for the busiest rank, so its share
over the mean is the step's slowdown from imbalance.

Assumes experts' loads are independent draws from the run's distribution: a real router
at 2048 experts may be better or worse balanced than one with the run's expert count.

usage: simulate_expert_exchange.py METRICS.jsonl [--tokens-per-rank 4096] [--d-model 768]
           [--bytes 2] [--draws 200] [--settled-after 0.5] [--png FILE] [--csv FILE]
"""
import argparse
import json
import math
import sys

import numpy as np

EPS = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
CAPACITY_FACTORS = [1.0, 1.25, 2.0]


def load_ratios(path, settled_after):
    steps = [json.loads(line) for line in open(path)]
    steps = [s for s in steps if s.get("kind") == "train" and s.get("layers")]
    if not steps:
        sys.exit(f"{path}: no train steps with per-layer loads (a sparse model's metrics.jsonl?)")
    last = steps[-1]["step"]
    ratios, experts = [], None
    for s in steps:
        if s["step"] < settled_after * last:
            continue
        for layer in s["layers"]:
            load = np.asarray(layer["load"], dtype=float)
            experts = len(load)
            if load.sum() > 0:
                ratios.append(load / load.sum() * len(load))
    return np.concatenate(ratios), experts, len(steps)


def simulate(pool, ep, tokens, draws, rng):
    """Per draw: the busiest rank's received tokens over the mean, and dropped shares."""
    loads = rng.choice(pool, size=(draws, ep), replace=True)
    loads /= loads.mean(axis=1, keepdims=True)
    slowest = loads.max(axis=1)
    dropped = {cf: np.maximum(loads - cf, 0).sum(axis=1) / ep for cf in CAPACITY_FACTORS}
    return slowest, dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("metrics")
    ap.add_argument("--tokens-per-rank", type=int, default=4096,
                    help="routed tokens per rank per sparse layer (default 4096)")
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--bytes", type=int, default=2, help="bytes per element sent (bf16: 2)")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--settled-after", type=float, default=0.5,
                    help="use steps after this fraction of the run (default 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", help="plot the busiest rank's share and the drops against ep")
    ap.add_argument("--csv", help="write the table as CSV")
    args = ap.parse_args()
    pool, experts, steps = load_ratios(args.metrics, args.settled_after)
    rng = np.random.default_rng(args.seed)
    print(f"{args.metrics}: {steps} train steps, {experts} experts per layer, "
          f"{len(pool)} expert loads pooled (steps after {args.settled_after:.0%} of the run); "
          f"their max / mean per layer-step: {pool.reshape(-1, experts).max(axis=1).mean():.2f}")
    print(f"{args.tokens_per_rank} tokens per rank per layer, d_model {args.d_model}, "
          f"{args.bytes} bytes per element; {args.draws} draws per ep; one expert per rank\n")
    header = ("ep", "sent MiB/rank", "busiest recv MiB", "busiest/mean p50", "p95",
              *[f"dropped% cf={cf:g}" for cf in CAPACITY_FACTORS])
    print(" | ".join(f"{h:>16}" for h in header))
    rows = []
    row_bytes = args.d_model * args.bytes
    for ep in EPS:
        slowest, dropped = simulate(pool, ep, args.tokens_per_rank, args.draws, rng)
        sent = args.tokens_per_rank * (ep - 1) / ep * row_bytes
        recv = np.median(slowest) * args.tokens_per_rank * (ep - 1) / ep * row_bytes
        row = (ep, sent / 2**20, recv / 2**20, float(np.median(slowest)),
               float(np.percentile(slowest, 95)),
               *[100 * float(np.mean(dropped[cf])) for cf in CAPACITY_FACTORS])
        rows.append(row)
        print(" | ".join(f"{v:>16}" if isinstance(v, int) else f"{v:>16.2f}" for v in row))
    if args.csv:
        with open(args.csv, "w") as f:
            f.write(",".join(h.replace(" ", "_") for h in header) + "\n")
            for row in rows:
                f.write(",".join(f"{v:g}" for v in row) + "\n")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        eps = [r[0] for r in rows]
        a.plot(eps, [r[3] for r in rows], "o-", label="median")
        a.plot(eps, [r[4] for r in rows], "s--", label="95th percentile")
        a.set_xscale("log", base=2)
        a.set_xlabel("expert-parallel ranks (one expert each)")
        a.set_ylabel("busiest rank's tokens / mean")
        a.set_title("slowest rank in the expert all-to-all")
        a.legend()
        for i, cf in enumerate(CAPACITY_FACTORS):
            b.plot(eps, [r[5 + i] for r in rows], "o-", label=f"capacity factor {cf:g}")
        b.set_xscale("log", base=2)
        b.set_xlabel("expert-parallel ranks (one expert each)")
        b.set_ylabel("tokens dropped (%)")
        b.set_title("what capacity drops at that imbalance")
        b.legend()
        fig.suptitle(f"expert loads drawn from {experts}-expert routing of a trained run", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"\nplot written to {args.png}")
    return 0 if all(math.isfinite(v) for r in rows for v in r) else 1


if __name__ == "__main__":
    sys.exit(main())
