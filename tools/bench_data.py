#!/usr/bin/env python
"""Benchmark: a slow transform no longer adds its time to each training step.

A training loop (an MLP train step, Adam, batch 128) over a ``graphc.data.DataLoader`` whose
transform is slow, with the batches prepared synchronously (``prefetch=0``) and in background
threads (``prefetch=2`` with 1 worker, ``prefetch=4`` with 2). Two transforms: one that sleeps
(I/O or decoding, which release the GIL) and one that does NumPy work (augmentation). Before
timing, every configuration must yield exactly the batches of the synchronous one (a benchmark of
a wrong result is void). Prints ms per step beside the step alone and the transform alone.

    python tools/bench_data.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
from bench import System, time_interleaved  # beside this script, which Python puts first on sys.path

import graphc as gc

BATCH, D_IN, HIDDEN, CLASSES = 128, 784, 256, 10
CONFIGS = {"prefetch=0 (sync)": (0, 1), "prefetch=2 workers=1": (2, 1), "prefetch=4 workers=2": (4, 2)}


def sleep_transform(seconds: float):
    def transform(batch):
        time.sleep(seconds)  # reading or decoding files: the GIL is released meanwhile
        return batch

    transform.__name__ = f"sleep {seconds * 1e3:.0f} ms"
    return transform


def numpy_transform(repeats: int):
    def transform(batch):
        x, y = batch
        img = x.reshape(-1, 28, 28)
        for k in range(repeats):  # shifted copies, blurred and standardized: a deterministic augmentation
            img = np.roll(img, 1 if k % 2 else -1, axis=2)
            img = 0.5 * img + 0.25 * (np.roll(img, 1, axis=1) + np.roll(img, -1, axis=1))
            img = (img - img.mean(axis=(1, 2), keepdims=True)) / (img.std(axis=(1, 2), keepdims=True) + 1e-6)
        return img.reshape(len(x), D_IN).astype(np.float32), y

    transform.__name__ = f"numpy augment x{repeats}"
    return transform


def build_step():
    with gc.Graph("bench_data"):
        x = gc.placeholder((None, D_IN), name="x")
        y = gc.placeholder((None,), "int64", name="y")
        model = gc.nn.Sequential([gc.nn.Dense(HIDDEN, "relu"), gc.nn.Dense(HIDDEN, "relu"), gc.nn.Dense(CLASSES)])
        loss = gc.nn.losses.softmax_cross_entropy(model(x, training=True), y)
        updates = gc.optim.Adam(1e-3).minimize(loss)
    state = {v.name: v.value for v in model.variables}
    step = gc.compile(loss, inputs=[x, y], updates=updates)

    def reset():  # the same weights for every configuration
        for v in model.variables:
            v.value = state[v.name]

    return step, reset


def check_batches(loaders: dict, name: str) -> None:
    """Every configuration must yield exactly the synchronous loader's batches (else it is void)."""
    reference = list(loaders["prefetch=0 (sync)"])
    for config, loader in loaders.items():
        loader.set_epoch(0)
        for got, want in zip(loader, reference, strict=True):
            if not all(np.array_equal(a, b) for a, b in zip(got, want)):
                raise SystemExit(f"{config} with {name}: batches differ from the synchronous loader's")


def time_transform(transform, data, n_batches: int, reps: int, step, reset) -> dict:
    """Seconds per step of the step alone, the transform alone, and each loader configuration."""
    loaders = {name: gc.data.DataLoader(data, BATCH, seed=1, prefetch=p, workers=w, transform=transform)
               for name, (p, w) in CONFIGS.items()}  # fmt: skip
    check_batches(loaders, transform.__name__)
    order = loaders["prefetch=0 (sync)"].order(0)
    raw = [tuple(np.take(a, order[i * BATCH : (i + 1) * BATCH], axis=0) for a in data) for i in range(n_batches)]
    ready = [transform(b) for b in raw]

    def steps_alone():
        for b in ready:
            step(*b)

    def transform_alone():
        for b in raw:
            transform(b)

    def loop(loader):
        def go():
            for b in loader:
                step(*b)

        return go

    systems = {"step alone": System(steps_alone, prepare=reset), "transform alone": System(transform_alone)}
    systems.update({name: System(loop(loader), prepare=reset) for name, loader in loaders.items()})
    samples = time_interleaved(systems, reps, warmup=1, inner=1)  # rotating order: drift hits all alike
    return {name: statistics.median(ts) / n_batches for name, ts in samples.items()}


def run(quick: bool) -> dict:
    rng = np.random.default_rng(0)
    n_batches = 4 if quick else 20
    reps = 1 if quick else 9
    data = (rng.random((n_batches * BATCH, D_IN), dtype=np.float32), rng.integers(0, CLASSES, n_batches * BATCH))
    step, reset = build_step()
    transforms = (sleep_transform(0.004), numpy_transform(6 if quick else 12))
    return {t.__name__: time_transform(t, data, n_batches, reps, step, reset) for t in transforms}


def report(results: dict) -> str:
    cols = ["step alone", "transform alone", *CONFIGS]
    head = ["transform", *cols]
    rows = [[name, *(f"{row[c] * 1e3:.2f} ms" for c in cols)] for name, row in results.items()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("time per training step (median). Synchronous loading pays step + transform; with "
                 "prefetching the transform runs in background threads while the step computes, so a "
                 "step costs about max(step, transform / workers) when cores are free (2 here, shared "
                 "with BLAS and graphc's kernels).")  # fmt: skip
    for name, row in results.items():
        sync, pre = row["prefetch=0 (sync)"], min(row[c] for c in CONFIGS if c != "prefetch=0 (sync)")
        hidden = (sync - pre) / row["transform alone"]
        lines.append(f"  {name}: {hidden:.0%} of the transform's time hidden (sync {sync * 1e3:.2f} ms -> "
                     f"{pre * 1e3:.2f} ms per step, {sync / pre:.2f}x)")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few batches and repetitions: a smoke test")
    ap.add_argument("--json", metavar="PATH", help="write the numbers (seconds per step) to this file")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    results = run(args.quick)
    print(report(results))
    print(f"machine: {os.cpu_count()} cores; 1-minute load average {load_before:.1f} before the run, "
          f"{os.getloadavg()[0]:.1f} after (other processes take cores from the overlap)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "seconds_per_step": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
