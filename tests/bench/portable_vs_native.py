"""The portable library (what `pip install .` builds: -march=x86-64-v3, BLIS choosing its
GEMM kernels at run time) against the native one (scripts/build: -march=native) on the
same machine, in one run: each work in its own process, the two builds interleaved, the
median of --runs. Prints tokens/s and the ratio portable / native.

    python3 tests/bench/portable_vs_native.py --native build/bindings/python \\
        --portable <venv>/bin/python [--runs 3]

Run by scripts/bench-portable, which builds both first."""
import argparse
import os
import statistics
import subprocess
import sys

# One work per process: (name, preset, batch, input_len, target_len, kind).
WORKS = [
    ("forward tiny 16 x (128 + 32)", "tiny", 16, 128, 32, "forward"),
    ("training step tiny 16 x (128 + 32)", "tiny", 16, 128, 32, "train"),
    ("forward switch-base-8 4 x (256 + 64)", "switch-base-8", 4, 256, 64, "forward"),
    ("training step switch-base-8 2 x (128 + 32)", "switch-base-8", 2, 128, 32, "train"),
]

TIMING = r'''
import sys, time, numpy as np, libswitch as sw
preset, batch, n_in, n_out, kind = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
config = sw.Config.preset(preset)
vocab = min(config["vocab_size"], 30000)
rng = np.random.default_rng(0)
ids = rng.integers(2, vocab, (batch, n_in), dtype=np.int32)
dec = rng.integers(2, vocab, (batch, n_out), dtype=np.int32)
with sw.Model(config, seed=0) as m:
    if kind == "forward":
        run = lambda: m.forward(ids, dec, labels=dec)
    else:
        t = sw.Trainer(m, sw.TrainConfig(f"batch_size: {batch}"))
        run = lambda: t.step({"input_ids": ids, "decoder_input_ids": dec, "labels": dec})
    run()  # warm-up
    reps, start = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - start < 3.0:
        run()
        reps += 1
    print(batch * (n_in + n_out) * reps / (time.perf_counter() - start))
'''


def measure(python, env, work):
    _, preset, batch, n_in, n_out, kind = work
    out = subprocess.run([python, "-c", TIMING, preset, str(batch), str(n_in), str(n_out), kind],
                         env=env, check=True, capture_output=True, text=True, cwd="/")
    return float(out.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", required=True, help="folder holding the native build's "
                        "libswitch package (build/bindings/python)")
    parser.add_argument("--portable", required=True, help="python of a virtual environment "
                        "where `pip install .` installed libswitch")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    native_env = dict(os.environ, PYTHONPATH=os.path.abspath(args.native))
    portable_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    print(f"{'work':44} {'native tok/s':>13} {'portable':>10} {'ratio':>6}")
    for work in WORKS:
        native, portable = [], []
        for _ in range(args.runs):
            native.append(measure(sys.executable, native_env, work))
            portable.append(measure(args.portable, portable_env, work))
        n, p = statistics.median(native), statistics.median(portable)
        print(f"{work[0]:44} {n:13,.0f} {p:10,.0f} {p / n:6.2f}", flush=True)


if __name__ == "__main__":
    main()
