"""Compares the train losses of two metrics.jsonl files at the first one's steps: exit
status 1 when one of them is missing from the second or differs by more than the
relative tolerance."""
import json
import sys


def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if r["kind"] == "train"}


a, b, tolerance = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
worst = max(abs(a[s] - b[s]) / abs(b[s]) for s in a) if a and a.keys() <= b.keys() else float("inf")
print(f"{len(a)} steps, largest relative difference {worst:.2e} (tolerance {tolerance:g})")
sys.exit(0 if worst <= tolerance else 1)
