#!/usr/bin/env python3
"""Plots expert load per sparse layer from `switch forward --routing-csv`: tokens routed
to each expert (kept and dropped), against the layer's total capacity."""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(csv_path, png_path):
    layers = defaultdict(list)
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            layers[(row["stack"], int(row["block"]))].append(row)
    keys = sorted(layers, key=lambda k: (k[0] != "encoder", k[1]))
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.2 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        rows = layers[key]
        experts = [int(r["expert"]) for r in rows]
        kept = [int(r["kept"]) for r in rows]
        dropped = [int(r["tokens"]) - int(r["kept"]) for r in rows]
        ax.bar(experts, kept, color="tab:blue", label="kept")
        ax.bar(experts, dropped, bottom=kept, color="tab:red", label="dropped")
        ax.axhline(int(rows[0]["capacity_total"]), color="k", ls="--", lw=1, label="capacity, summed over groups")
        ax.set_title(f"{key[0]} block {key[1]}: {100 * float(rows[0]['dropped_fraction']):.1f}% dropped, "
                     f"router entropy {float(rows[0]['router_entropy']):.3f}", fontsize=9)
        ax.set_ylabel("tokens")
        ax.set_xticks(experts)
    axes[-1, 0].set_xlabel("expert")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"expert load plot written to {png_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot_routing.py ROUTING_CSV OUTPUT_PNG")
    main(sys.argv[1], sys.argv[2])
