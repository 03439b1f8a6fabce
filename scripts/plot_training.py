#!/usr/bin/env python3
"""Plots a training run from `switch train --loss-csv`: the cross-entropy, the auxiliary
(load-balancing + z) losses and the fraction of tokens dropped by capacity, per step."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(csv_path, png_path):
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    step = [int(r["step"]) for r in rows]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    top.plot(step, [float(r["ce"]) for r in rows], color="tab:blue")
    top.set_ylabel("cross-entropy")
    top.set_title("training")
    middle.plot(step, [float(r["aux"]) for r in rows], label="load balancing", color="tab:orange")
    middle.plot(step, [float(r["z"]) for r in rows], label="router z", color="tab:green")
    middle.set_ylabel("aux losses")
    middle.legend(fontsize=8)
    bottom.plot(step, [100 * float(r["dropped_fraction"]) for r in rows], color="tab:red")
    bottom.set_ylabel("tokens dropped %")
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"training curves written to {png_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot_training.py LOSS_CSV OUTPUT_PNG")
    main(sys.argv[1], sys.argv[2])
