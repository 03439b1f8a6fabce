#!/usr/bin/env python3
"""The table of scripts/bench-precision: each run's losses against the f32 run at its
learning rate, from the runs' metrics.jsonl.

usage: precision_summary.py OUT_DIR NAME=RUN_DIR [NAME=RUN_DIR ...]
       (NAME is VARIANT-lrLR, VARIANT one of f32, bf16, bf16-router)

Writes OUT_DIR/summary.md and prints it; exits 1 when a run never stepped. Tolerance: a bf16 run tracks f32 when the mean of
its train loss over the last 50 steps is within 2% of the f32 run's. bf16 keeps 8
significant bits (a stored value is within 2^-9 = 0.2% of its f32 value), the loss and
optimizer stay f32, and the f32 masters keep updates smaller than a bf16 ulp; what remains
is rounding noise in the gradients and tokens whose expert flips on a near-tie, which move
the curve by well under 1% in the paper (Table 2: -1.716 vs -1.718 neg. log perplexity)
and between two f32 runs on different devices by about the same. A run diverges when a
step's loss or gradient norm is not finite, or its last-50 mean exceeds its first loss.
"""
import json
import math
import os
import sys

LAST = 50
TOLERANCE = 0.02


def load(run_dir):
    train, evals = [], []
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return train, evals
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            (train if record["kind"] == "train" else evals).append(record)
    return train, evals


def finite(x):
    return x is not None and math.isfinite(x)


def main():
    out_dir, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    rows, reference = [], {}
    for name, run_dir in runs:
        variant, lr = name.rsplit("-lr", 1)
        train, evals = load(run_dir)
        losses = [r["loss"] for r in train]
        last = [x for x in losses[-LAST:] if finite(x)]
        row = {
            "name": name, "variant": variant, "lr": lr, "steps": len(train),
            "first": losses[0] if losses else float("nan"),
            "last_mean": sum(last) / len(last) if last else float("nan"),
            "eval_ce": evals[-1]["ce"] if evals else float("nan"),
            "eval_z": evals[-1]["z"] if evals else float("nan"),
            "bad": sum(1 for r in train if not finite(r["loss"]) or not finite(r.get("grad_norm"))),
            "max_grad": max((r["grad_norm"] for r in train if finite(r.get("grad_norm"))), default=0),
        }
        row["diverged"] = row["bad"] > 0 or not finite(row["last_mean"]) or row["last_mean"] > row["first"]
        rows.append(row)
        if variant == "f32":
            reference[lr] = row
    lines = [
        "| run | steps | first loss | mean loss, last %d | vs f32 | final eval CE | final eval z-loss | max grad norm | bad steps | verdict |" % LAST,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = reference.get(r["lr"])
        if r["steps"] == 0:
            versus, verdict = "", "did not run (see its log)"
        elif r["variant"] == "f32" or ref is None or not finite(ref["last_mean"]):
            versus, verdict = "", "diverged" if r["diverged"] else "reference"
        else:
            rel = (r["last_mean"] - ref["last_mean"]) / ref["last_mean"]
            versus = "%+.2f%%" % (100 * rel) if finite(rel) else "n/a"
            verdict = "diverged" if r["diverged"] else (
                "tracks f32" if abs(rel) <= TOLERANCE else "off by more than %d%%" % (100 * TOLERANCE))
        lines.append("| %s | %d | %.4f | %.4f | %s | %.4f | %.4f | %.3f | %d | %s |" % (
            r["name"], r["steps"], r["first"], r["last_mean"], versus, r["eval_ce"], r["eval_z"],
            r["max_grad"], r["bad"], verdict))
    text = "\n".join(lines) + "\n"
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text)
    print(text, end="")
    # A run that diverged is a result; one that never stepped is a failure of the bench.
    return 1 if any(r["steps"] == 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
