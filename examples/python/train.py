#!/usr/bin/env python3
"""Trains the `tiny` Switch Transformer on the demo's data (T5 span corruption over the
fortunes corpus) through the Python binding, with a progress bar, then saves a checkpoint
and a loss plot (matplotlib).

    python3 examples/python/train.py [--steps N] [--out DIR]
"""
import argparse
import os
import sys

import libswitch as sw

here = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="runs/python-train")
    parser.add_argument("--config",
                        default=os.path.join(here, "..", "train", "demo-switch.textproto"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    with open(args.config) as f:
        train = sw.TrainConfig(f.read())
    train["steps"] = args.steps
    train["batch_size"] = 8
    train["warmup_steps"] = min(10, args.steps)
    train["eval_batches"] = 2
    config = sw.Config.preset("tiny")
    config["vocab_size"] = 2176  # the demo tokenizer's 2000 pieces + 100 sentinels, padded
    config["routing_group"] = "GROUP_BATCH"

    print(f"libswitch {sw.__version__}: training tiny for {args.steps} steps")
    with sw.Model(config, seed=0) as model, sw.Trainer(model, train) as trainer:
        # The built-in data; tqdm's bar where it is installed, a line per tenth otherwise.
        losses = [m.loss for m in trainer.fit(args.steps)]
        held_out = trainer.evaluate()
        checkpoint = trainer.save(os.path.join(args.out, "checkpoints"))
    print(f"held-out loss {held_out.loss:.4f}; checkpoint {checkpoint}")

    try:
        import matplotlib
    except ImportError:  # a plain `pip install .`: the numbers without the picture
        print("no loss plot: matplotlib is not installed (pip install 'libswitch[plot]')")
        return 0 if losses[-1] < losses[0] else 1
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, label="train loss")
    ax.axhline(held_out.loss, color="gray", linestyle="--", label="held-out loss (end)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (CE + aux + z)")
    ax.set_title("tiny Switch Transformer through the Python binding")
    ax.legend()
    fig.tight_layout()
    plot = os.path.join(args.out, "loss.png")
    fig.savefig(plot, dpi=120)
    print(f"loss plot {plot}")
    return 0 if losses[-1] < losses[0] else 1


if __name__ == "__main__":
    sys.exit(main())
