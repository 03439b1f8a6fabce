#!/usr/bin/env python3
"""Lines of the scripts/gpu-check summary that join its outputs:
  --parity XML           the parity cases passed, failed and skipped (GoogleTest XML)
  --train LAYER TORCH    the Switch FFN forward+backward against PyTorch eager, per shape
                         (train_gpu_bench's _layer.csv and hf_switch_layer_bench --train's)
A missing file is reported as missing, not as a result."""
import csv
import os
import sys
import xml.etree.ElementTree as ET


def parity(path):
    if not os.path.exists(path):
        return f"{path} missing (the parity binary did not finish)"
    cases = ET.parse(path).getroot().iter("testcase")
    passed = failed = skipped = 0
    for c in cases:
        if c.find("failure") is not None:
            failed += 1
        elif c.get("result") == "skipped" or c.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return f"{passed} passed, {failed} failed, {skipped} skipped"


def train(layer_path, torch_path):
    for p in (layer_path, torch_path):
        if not os.path.exists(p):
            print(f"{p} missing: no libswitch-vs-PyTorch training table")
            return
    torch_ms = {}
    with open(torch_path) as f:
        for r in csv.DictReader(f):
            torch_ms[(r["mode"], int(r["experts"]), int(r["tokens"]))] = float(
                r["torch_eager_fwd_bwd_ms"])
    print("\n| precision | E | tokens | libswitch Switch FFN fwd+bwd ms | PyTorch eager ms | speedup |")
    print("|---|---|---|---|---|---|")
    with open(layer_path) as f:
        for r in csv.DictReader(f):
            key = (r["mode"], int(r["experts"]), int(r["tokens"]))
            ours = float(r["layer_ms"])
            theirs = torch_ms.get(key)
            ratio = f"{theirs / ours:.2f}x" if theirs else "n/a"
            print(f"| {key[0]} | {key[1]} | {key[2]} | {ours:.3f} | "
                  f"{theirs if theirs else 'n/a'} | {ratio} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--parity":
        print(parity(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--train":
        train(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
