#!/usr/bin/env python3
"""Plots and compares `switch train` runs from their metrics.jsonl and summary.json.

usage: plot_runs.py OUT_DIR LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Writes OUT_DIR/loss.png (held-out cross-entropy vs step, train CE faint behind it),
OUT_DIR/expert_load.png (for every sparse layer of each sparse run: the share of tokens
each expert received at each step, a heatmap over training) and OUT_DIR/summary.md, and
prints the side-by-side summary. The first run is the one compared against the others:
the step at which it first reached each other run's final held-out cross-entropy (the
language-modelling quality; the aux and z losses are training aids, reported apart).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(run_dir):
    train, evals = [], []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            (train if record["kind"] == "train" else evals).append(record)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    return train, evals, summary


def smooth(values, window=10):
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def first_step_reaching(evals, target):
    for record in evals:
        if record["step"] > 0 and record["ce"] <= target:
            return record["step"]
    return None


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    runs = []
    for arg in sys.argv[2:]:
        label, _, run_dir = arg.partition("=")
        runs.append((label, *load(run_dir)))
    os.makedirs(out_dir, exist_ok=True)

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (label, train, evals, _) in enumerate(runs):
        color = f"C{i}"
        steps = [r["step"] for r in train]
        ax.plot(steps[9:] if len(steps) >= 10 else steps, smooth([r["ce"] for r in train]),
                color=color, alpha=0.3, lw=1)
        ax.plot([r["step"] for r in evals], [r["ce"] for r in evals], color=color, lw=2,
                marker="o", ms=3, label=f"{label} (held-out)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (faint: train, 10-step mean)")
    ax.set_title("Span-corruption cross-entropy vs step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "loss.png"), dpi=120)

    sparse = [(label, train) for label, train, _, _ in runs if train and train[0]["layers"]]
    if sparse:
        label, train = sparse[0]
        layers = train[0]["layers"]
        fig, axes = plt.subplots(len(layers), 1, figsize=(9, 1.6 * len(layers) + 1), squeeze=False)
        steps = [r["step"] for r in train]
        for k, layer in enumerate(layers):
            load_matrix = np.array([r["layers"][k]["load"] for r in train]).T  # [experts, steps]
            ax = axes[k][0]
            image = ax.imshow(load_matrix, aspect="auto", cmap="viridis", vmin=0,
                              vmax=max(0.5, load_matrix.max()), interpolation="nearest",
                              extent=[steps[0] - 0.5, steps[-1] + 0.5, load_matrix.shape[0] - 0.5,
                                      -0.5])
            ax.set_ylabel(f"{layer['stack']}\nblock {layer['block']}\nexpert")
            fig.colorbar(image, ax=ax, pad=0.01, label="share")
        axes[-1][0].set_xlabel("step")
        fig.suptitle(f"{label}: share of each layer's tokens per expert (uniform = "
                     f"{1 / len(layers[0]['load']):.3f})")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "expert_load.png"), dpi=120)

    rows = [("model", "parameters", "held-out CE (+ aux + z)", "train tokens/s",
             "dropped (train / eval)")]
    for label, train, evals, s in runs:
        rows.append((label, f"{s['parameters'] / 1e6:.2f}M", f"{s['final_eval_ce']:.4f} ({s['final_eval_loss']:.4f})",
                     f"{s['tokens_per_s']:.0f}",
                     f"{100 * s['train_dropped']:.1f}% / {100 * s['eval_dropped']:.1f}%"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    label0, _, evals0, s0 = runs[0]
    for label, _, _, s in runs[1:]:
        step = first_step_reaching(evals0, s["final_eval_ce"])
        if step is None:
            lines.append(f"\n{label0} did not reach {label}'s final held-out CE "
                         f"{s['final_eval_ce']:.4f} in {s0['steps']} steps.")
        else:
            lines.append(f"\n{label0} reached {label}'s final held-out CE "
                         f"({s['final_eval_ce']:.4f} at step {s['steps']}) at step {step}: "
                         f"a {s['steps'] / step:.1f}x step speedup (the paper: 7.5x for "
                         f"Switch-Base vs T5-Base).")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
