#!/usr/bin/env python3
"""The reference for sw_generate_gpu_bench: transformers' generate on the same exported
weights (DIR/hf) and the same inputs (DIR/input_<batch>.i32), bf16 on the same GPU,
greedy, exactly 128 new tokens; eager, and with the static cache where the installed
transformers offers it for this model. Prints a table with libswitch's tokens/s beside
(from --ours, sw_generate_gpu_bench's CSV) and how many rows' ids agree with ours
(DIR/ours_<batch>.i32; the exported model routes like ours only when no token is dropped,
so disagreement there is reported, not a failure). --csv FILE writes the table.

usage: hf_generate_gpu_bench.py --dir DIR [--ours CSV] [--csv FILE]
"""
import argparse
import csv
import os
import time

import numpy as np
import torch
from transformers import SwitchTransformersForConditionalGeneration

INPUT_LEN, NEW_TOKENS = 512, 128


def timed(fn, reps=2):
    fn()  # warm-up
    torch.cuda.synchronize()
    best, out = float("inf"), None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--ours")
    p.add_argument("--csv")
    a = p.parse_args()
    model = SwitchTransformersForConditionalGeneration.from_pretrained(
        os.path.join(a.dir, "hf"), torch_dtype=torch.bfloat16).cuda().eval()
    ours = {}
    if a.ours and os.path.exists(a.ours):
        with open(a.ours) as f:
            ours = {int(r["batch"]): float(r["tokens_per_s"]) for r in csv.DictReader(f)}
    rows = []
    for batch in (1, 8, 64):
        ids = np.fromfile(os.path.join(a.dir, f"input_{batch}.i32"), dtype=np.int32)
        ids = torch.tensor(ids.reshape(batch, INPUT_LEN), dtype=torch.long, device="cuda")
        results = {}
        for mode in ("eager", "static"):
            kwargs = dict(do_sample=False, num_beams=1, max_new_tokens=NEW_TOKENS,
                          min_new_tokens=NEW_TOKENS)
            if mode == "static":
                kwargs["cache_implementation"] = "static"
            try:
                with torch.no_grad():
                    seconds, out = timed(lambda: model.generate(input_ids=ids, **kwargs))
                results[mode] = (batch * NEW_TOKENS / seconds, out[:, 1:].cpu().numpy())
            except Exception as e:  # noqa: BLE001 - an unsupported cache is reported
                print(f"batch {batch}, {mode} cache: not available ({type(e).__name__}: {e})")
        agree = "n/a"
        path = os.path.join(a.dir, f"ours_{batch}.i32")
        if "eager" in results and os.path.exists(path):
            mine = np.fromfile(path, dtype=np.int32).reshape(batch, NEW_TOKENS)
            theirs = results["eager"][1]
            agree = f"{np.mean([np.array_equal(mine[i], theirs[i]) for i in range(batch)]):.0%}"
        rows.append((batch, ours.get(batch), results.get("eager", (None,))[0],
                     results.get("static", (None,))[0], agree))
    fmt = lambda v: f"{v:.0f}" if v else "n/a"  # noqa: E731
    print("\n| batch | libswitch tok/s | transformers eager tok/s | static cache tok/s | "
          "libswitch / best | rows with equal ids |\n|---|---|---|---|---|---|")
    for batch, mine, eager, static, agree in rows:
        best = max(v for v in (eager, static, 0.0) if v is not None)
        ratio = f"{mine / best:.2f}x" if mine and best else "n/a"
        print(f"| {batch} | {fmt(mine)} | {fmt(eager)} | {fmt(static)} | {ratio} | {agree} |")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("batch,libswitch_tokens_per_s,hf_eager_tokens_per_s,hf_static_tokens_per_s\n")
            for batch, mine, eager, static, _ in rows:
                f.write(f"{batch},{mine or ''},{eager or ''},{static or ''}\n")


if __name__ == "__main__":
    main()
