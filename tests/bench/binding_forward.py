"""Per-call cost of Model.forward through the Python binding on the input
tests/bench/capi_bench.cc's CApiForward/tiny_small times through the C ABI (tiny, seed 0,
1 x (16 + 4) tokens, logits copied out). Prints microseconds per call: the median of 5
rounds of 400 calls. Run by scripts/bench-bindings."""
import statistics
import time

import numpy as np

import libswitch as sw

inputs = (np.arange(16) * 7919 % 384).astype(np.int32)[None]
decoder = (np.arange(4) * 104729 % 384).astype(np.int32)[None]
with sw.Model(sw.Config.preset("tiny"), seed=0) as m:
    for _ in range(50):
        m.forward(inputs, decoder, labels=decoder)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(400):
            m.forward(inputs, decoder, labels=decoder)
        rounds.append((time.perf_counter() - start) / 400 * 1e6)
print(f"python {statistics.median(rounds):.1f}")
