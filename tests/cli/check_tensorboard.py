#!/usr/bin/env python3
"""`switch train` writes TensorBoard event files that TensorBoard's own reader (the
`tensorboard` package's EventAccumulator, which checks every record's CRC) reads back
with the values of metrics.jsonl: every train and eval scalar (as the float32 an event
holds), each layer's router entropy and dropped fraction, and each layer's expert-load
histogram (bucket i = expert i's tokens, the same shares as metrics.jsonl's "load"). A
run resumed from a checkpoint older than its last logged steps (as after a crash) adds a
second event file, and the reader shows each step once, the resumed run's; a record with a
flipped bit is refused by the reader.

usage: check_tensorboard.py SWITCH_BINARY"""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from tensorboard.backend.event_processing import event_accumulator, event_file_loader

SMALL = ["--set", "corpus=/usr/share/common-licenses/GPL-3", "--set", "tokenizer_vocab_size=400",
         "--set", "batch_size=4", "--set", "input_length=32", "--set", "target_length=12",
         "--set", "eval_batches=1", "--set", "eval_interval=2"]


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def train(switch, out, steps, resume=False, extra=()):
    subprocess.run([switch, "train", "--out", out, *SMALL, "--set", f"steps={steps}", *extra]
                   + (["--resume"] if resume else []), check=True, stdout=subprocess.DEVNULL)


def accumulated(run):
    acc = event_accumulator.EventAccumulator(run, size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def check_against_metrics(run, acc):
    lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    trains = [l for l in lines if l["kind"] == "train"]
    evals = [l for l in lines if l["kind"] == "eval"]
    assert trains and evals, "the run logged no train or eval lines"
    events = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag, values in events.items():
        steps = [s for s, _ in values]
        assert len(set(steps)) == len(steps), f"{tag}: a step logged twice: {steps}"
    scalars = {tag: dict(values) for tag, values in events.items()}
    checked = 0

    def same(tag, step, value):
        nonlocal checked
        got = scalars.get(tag, {}).get(step)
        assert got is not None, f"{tag} at step {step}: not in the event file"
        assert got == f32(value), f"{tag} at step {step}: event {got}, metrics.jsonl {value}"
        checked += 1

    for l in trains:
        for key, tag in [("loss", "loss"), ("ce", "ce"), ("target", "target"), ("aux", "aux"),
                         ("z", "z"), ("grad_norm", "grad_norm"), ("lr", "lr"),
                         ("tokens_per_s", "tokens_per_s"), ("dropped", "dropped")]:
            same("train/" + tag, l["step"], l[key])
        for layer in l["layers"]:
            name = f"{layer['stack']}.{layer['block']}"
            same(f"router/{name}/entropy", l["step"], layer["entropy"])
            same(f"router/{name}/dropped", l["step"], layer["dropped"])
            histos = {h.step: h.histogram_value for h in acc.Histograms("load/" + name)}
            h = histos[l["step"]]
            assert list(h.bucket_limit) == [i + 0.5 for i in range(len(layer["load"]))], h
            total = sum(h.bucket)
            assert total == h.num and total > 0, h
            for i, share in enumerate(layer["load"]):
                assert abs(h.bucket[i] / total - share) < 1e-12, (name, i, h.bucket[i], share)
            checked += 1
    for l in evals:
        for key in ("loss", "ce", "aux", "z", "dropped"):
            same("eval/" + key, l["step"], l[key])
    steps = sorted(scalars["train/loss"])
    assert steps == [l["step"] for l in trains], (steps, [l["step"] for l in trains])
    return checked


def main():
    switch = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        straight, resumed = os.path.join(tmp, "straight"), os.path.join(tmp, "resumed")
        train(switch, straight, 4)
        n = check_against_metrics(straight, accumulated(straight))
        # Checkpoints at 2 and 4, then the one at 4 lost (a crash after logging step 4 but
        # before its checkpoint): the resumed run logs 3 and 4 again, and the reader keeps
        # those, not the first run's.
        train(switch, resumed, 4, extra=["--set", "checkpoint_interval=2"])
        shutil.rmtree(os.path.join(resumed, "checkpoints", "step-00000004"))
        with open(os.path.join(resumed, "checkpoints", "latest"), "w") as f:
            f.write("step-00000002\n")
        train(switch, resumed, 4, resume=True)
        files = glob.glob(os.path.join(resumed, "events.out.tfevents.*"))
        assert len(files) == 2, files
        n += check_against_metrics(resumed, accumulated(resumed))
        # A flipped bit in the second record: the reader stops before it.
        path = glob.glob(os.path.join(straight, "events.out.tfevents.*"))[0]
        data = bytearray(open(path, "rb").read())
        second = struct.unpack("<Q", data[:8])[0] + 16  # after the version record
        third = second + struct.unpack("<Q", data[second:second + 8])[0] + 16  # the start
        data[third + 12 + 3] ^= 0x01  # in the first step's record
        bad = os.path.join(tmp, "events.out.tfevents.bad")
        open(bad, "wb").write(data)
        good = sum(1 for _ in event_file_loader.LegacyEventFileLoader(path).Load())
        read = sum(1 for _ in event_file_loader.LegacyEventFileLoader(bad).Load())
        assert read == 2 and good > 3, (read, good)
    print(f"tensorboard: {n} values equal metrics.jsonl's; a corrupted record is refused")


if __name__ == "__main__":
    main()
