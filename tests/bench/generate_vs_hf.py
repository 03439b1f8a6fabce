#!/usr/bin/env python3
"""Generation on the CPU: libswitch's `Model.generate` (KV cache) against PyTorch +
transformers `generate` on the same weights, the same inputs and the same threads, in one
process. The model is a preset initialised by libswitch and exported in HF's format, which
transformers loads; greedy decoding forced to the full length (min_new_tokens), so both
produce the same number of tokens. Prints a table and how many generated ids agree.

usage: generate_vs_hf.py [--presets tiny,switch-base-8] [--batches 1,32] [--input-len 64]
                         [--new-tokens 32] [--threads 2]
Needs the Python binding on PYTHONPATH (build/bindings/python) and torch + transformers
(scripts/bench-generate-hf makes a virtual environment with them).
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
import transformers
from transformers import SwitchTransformersForConditionalGeneration

import libswitch as sw


def timed(f, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--presets", default="tiny,switch-base-8")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"libswitch {sw.__version__}, {a.threads} threads, input {a.input_len}, "
          f"{a.new_tokens} new tokens (greedy, forced to full length)")
    print(f"{'model':<15} {'batch':>5} {'libswitch tok/s':>16} {'HF tok/s':>10} "
          f"{'ratio':>6} {'ids agree':>10}")
    for preset in a.presets.split(","):
        with tempfile.TemporaryDirectory() as d:
            model = sw.Model(sw.Config.preset(preset), seed=0)
            model.export_hf(d, allow_routing_change=True)  # short inputs: nothing dropped
            hf = SwitchTransformersForConditionalGeneration.from_pretrained(d).eval()
            vocab = hf.config.vocab_size
            for batch in map(int, a.batches.split(",")):
                rng = np.random.default_rng(batch)
                ids = rng.integers(2, vocab, size=(batch, a.input_len), dtype=np.int32)
                repeats = 3 if preset == "tiny" else 1
                ours_s, ours = timed(lambda: model.generate(
                    ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens), repeats)
                with torch.no_grad():
                    hf_s, theirs = timed(lambda: hf.generate(
                        input_ids=torch.tensor(ids, dtype=torch.long), do_sample=False,
                        num_beams=1, max_new_tokens=a.new_tokens,
                        min_new_tokens=a.new_tokens), repeats)
                theirs = theirs[:, 1:].numpy()  # without the decoder start token
                agree = np.mean([np.array_equal(ours[i], theirs[i]) for i in range(batch)])
                tokens = batch * a.new_tokens
                print(f"{preset:<15} {batch:>5} {tokens / ours_s:>16.1f} {tokens / hf_s:>10.1f} "
                      f"{hf_s / ours_s:>5.2f}x {100 * agree:>9.0f}%", flush=True)
            model.close()


if __name__ == "__main__":
    main()
