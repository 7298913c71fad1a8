#!/usr/bin/env python
"""Benchmark: graphc against hand-written NumPy on the BENCH.md workloads, in one process.

Takes command-line flags; prints one table plus the machine's limits (and writes JSON with
``--json``). A workload is a pair of functions, graphc and its NumPy baseline, over shared inputs
made by a data function, registered in ``WORKLOADS``. Every system is checked against a float64
NumPy reference before it is timed (a benchmark of a wrong result is void), then the systems of a
workload are timed interleaved, so drift on these shared machines hits them alike.

    python tools/bench.py [--quick] [--only W1,W3] [--json out.json] [--no-peers]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

import graphc as gc

F32 = np.float32
EPS32 = float(np.finfo(F32).eps)


# -- harness ------------------------------------------------------------------------------------
class CheckError(Exception):
    """A system's result differs from the reference: its timing would be void."""


@dataclass
class System:
    """One way to run a workload.

    ``run`` is the timed call. ``result`` resets any state, runs once and returns the named
    outputs to check (default: ``{"y": run()}``). ``prepare`` is untimed work done before every
    timed call (W5 builds a fresh graph there, so each timed compile is that graph's first).
    """

    run: Callable[[], object]
    result: Callable[[], dict] | None = None
    prepare: Callable[[], None] | None = None

    def outputs(self) -> dict:
        if self.result is not None:
            return self.result()
        if self.prepare is not None:
            self.prepare()
        return {"y": self.run()}


@dataclass(frozen=True)
class Workload:
    """A BENCH.md workload: shared inputs, the graphc system and its NumPy baseline."""

    id: str
    title: str
    unit: str  # how its times print: "us", "ms" or "s"
    data: Callable[[bool], dict]  # quick -> inputs, "ref" (float64 outputs), "tol" per output
    graphc: Callable[[dict], System]
    numpy: Callable[[dict], System] | None  # None: there is no NumPy equivalent (W5)
    extras: Callable[[dict], dict[str, System]] | None = None  # more NumPy baselines, one column each
    # work any implementation must do (W2: its GEMMs), timed with the systems; not a result, so
    # not checked: a floor under every system's time
    floors: Callable[[dict], dict[str, System]] | None = None
    reps: tuple[int, int] = (100, 5)  # timing samples per system: full run, --quick
    inner: int = 1  # calls per sample, for calls too short to time one at a time
    warmup: int = 3
    target_s: float | None = None  # an absolute goal in place of a baseline (W5)
    note: Callable[[dict, dict], str] | None = None  # (data, stats) -> extra text for the table


def check(system: str, got: dict, ref: dict, tol: dict) -> float:
    """The worst error as a fraction of its tolerance (<= 1); raises CheckError naming the output.

    ``tol[name]`` is ``(rtol, atol)``; ``atol`` may be an array (per-element rounding bounds).
    """
    worst = 0.0
    for name, want in ref.items():
        if name not in got:
            raise CheckError(f"{system}: output '{name}' missing: got outputs {sorted(got)}")
        have = np.asarray(got[name])
        if have.shape != want.shape:
            raise CheckError(f"{system}: output '{name}' has the wrong shape: got {have.shape}, expected {want.shape}")
        if have.dtype != F32:
            raise CheckError(f"{system}: output '{name}' has the wrong dtype: got {have.dtype}, expected float32")
        rtol, atol = tol[name]
        err = np.abs(have.astype(np.float64) - want)
        bound = atol + rtol * np.abs(want)
        frac = np.where(np.isfinite(err), err / bound, np.inf)
        i = np.unravel_index(int(np.argmax(frac)), frac.shape) if frac.ndim else ()
        if not frac[i] <= 1.0:
            raise CheckError(
                f"{system}: output '{name}' is wrong at index {tuple(int(k) for k in i)}: got {have[i]!r}, "
                f"expected {want[i]!r} (|error| {err[i]:.3g} > tolerance {np.broadcast_to(bound, err.shape)[i]:.3g}); "
                f"{int(np.sum(~(frac <= 1)))} of {frac.size} elements out of tolerance"
            )
        worst = max(worst, float(frac.max()) if frac.size else 0.0)
    return worst


def time_interleaved(systems: dict[str, System], reps: int, warmup: int, inner: int) -> dict[str, list[float]]:
    """Seconds per call, ``reps`` samples per system, taken in rotating order in one loop."""
    names = list(systems)
    for _ in range(warmup):
        for s in systems.values():
            if s.prepare is not None:
                s.prepare()
            s.run()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        k = r % len(names)  # rotate, so no system always runs right after another
        for name in names[k:] + names[:k]:
            s = systems[name]
            if s.prepare is not None:
                s.prepare()
            run = s.run
            t0 = time.perf_counter()
            for _ in range(inner):
                run()
            samples[name].append((time.perf_counter() - t0) / inner)
    return samples


@contextlib.contextmanager
def _environ(**values):
    """Environment variables set for the duration (graphc reads GRAPHC_NATIVE when compiling)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_workload(w: Workload, quick: bool, use_peers: bool) -> dict:
    """Check, then time, every system of one workload; a failed check voids the workload."""
    out: dict = {"title": w.title, "unit": w.unit, "checked": False, "error": None}
    try:
        d = w.data(quick)
        systems = {"graphc": w.graphc(d)}
        if w.numpy is not None:
            systems["numpy"] = w.numpy(d)
        systems.update(w.extras(d) if w.extras is not None else {})
        if w.numpy is not None:  # graphc without its native C kernels: fused kernels as NumPy ufuncs
            with _environ(GRAPHC_NATIVE="0"):
                systems["graphc_numpy_tier"] = w.graphc(d)
        errors = {}
        for name, s in systems.items():
            errors[name] = check(name, s.outputs(), d["ref"], d["tol"])
        floors = w.floors(d) if w.floors is not None else {}
        errors.update({name: 0.0 for name in floors})
        systems.update(floors)
    except CheckError as e:
        out["error"] = f"wrong result, workload not timed: {e}"
        return out
    except Exception as e:  # a crash in graphc (or in the harness) voids the workload, loudly
        traceback.print_exc()
        out["error"] = f"crashed, workload not timed: {type(e).__name__}: {e}"
        return out
    out["checked"] = True
    reps, warmup = w.reps[quick], (min(1, w.warmup) if quick else w.warmup)

    def timed(systems: dict) -> dict:
        samples = time_interleaved(systems, reps, warmup, w.inner)
        return {
            name: {"median_s": statistics.median(ts), "min_s": min(ts), "samples": len(ts), "inner": w.inner,
                   "max_error_over_tolerance": errors[name]}
            for name, ts in samples.items()
        }  # fmt: skip

    stats = timed(systems)
    g = stats["graphc"]["median_s"]
    out["systems"] = stats
    out["ratios"] = {name: s["median_s"] / g for name, s in stats.items() if name != "graphc"}
    out["floors"] = sorted(floors)
    # Peers get a pass of their own beside graphc: their thread pools (OpenMP, XLA) keep spinning
    # after a call and would slow the graphc/NumPy samples they were interleaved with.
    out["peers"], out["skipped_peers"] = {}, {}
    peers = {"graphc": systems["graphc"]}
    if use_peers:
        import bench_peers  # beside this script, which Python puts first on sys.path

        for name, factory in bench_peers.for_workload(w.id).items():
            try:
                run, result = factory(d)
                s = System(run, result)
                errors[name] = check(name, s.outputs(), d["ref"], d["tol"])
                peers[name] = s
            except Exception as e:  # peers are optional: one that fails is left out, not fatal
                out["skipped_peers"][name] = f"{type(e).__name__}: {e}"
    if len(peers) > 1:
        pstats = timed(peers)
        gp = pstats.pop("graphc")
        for name, s in pstats.items():
            out["peers"][name] = {
                **s,
                "graphc_median_s_same_pass": gp["median_s"],
                "ratio": s["median_s"] / gp["median_s"],
            }
    if "bytes_moved" in d:
        out["bytes_moved"] = d["bytes_moved"]
    if w.target_s is not None:
        out["target_s"] = w.target_s
        out["ratio"] = w.target_s / g
    else:
        out["ratio"] = out["ratios"].get("numpy")
    out["note"] = w.note(d, stats) if w.note is not None else ""
    return out


# -- W1: inference, batch 1 ----------------------------------------------------------------------
def softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def w1_data(quick: bool) -> dict:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 784)).astype(F32)
    p = {
        "w1": (rng.standard_normal((784, 128)) * np.sqrt(2 / 784)).astype(F32),
        "b1": (rng.standard_normal(128) * 0.1).astype(F32),
        "w2": (rng.standard_normal((128, 10)) * np.sqrt(2 / 128)).astype(F32),
        "b2": (rng.standard_normal(10) * 0.1).astype(F32),
    }
    q = {k: v.astype(np.float64) for k, v in p.items()}
    y = softmax64(np.maximum(x @ q["w1"] + q["b1"], 0) @ q["w2"] + q["b2"])
    return {"x": x, "params": p, "ref": {"y": y}, "tol": {"y": (1e-4, 1e-6)}}


def w1_graphc(d: dict) -> System:
    with gc.Graph("bench_w1"):
        x = gc.placeholder(d["x"].shape, "float32", name="x")
        v = {k: gc.variable(a, name=k) for k, a in d["params"].items()}
        y = gc.softmax(gc.relu(x @ v["w1"] + v["b1"]) @ v["w2"] + v["b2"])
    fn = gc.compile(y)
    xv = d["x"]
    return System(lambda: fn(x=xv))


def w1_numpy(d: dict) -> System:
    x, p = d["x"], d["params"]
    w1, b1, w2, b2 = p["w1"], p["b1"], p["w2"], p["b2"]

    def run():
        h = x @ w1
        h += b1
        np.maximum(h, 0, out=h)
        z = h @ w2
        z += b2
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    return System(run)


# -- W2: training step ---------------------------------------------------------------------------
W2_LR = 0.05
W2_SHAPES = {"w1": (784, 256), "b1": (256,), "w2": (256, 256), "b2": (256,), "w3": (256, 10), "b3": (10,)}


def w2_reference(p: dict, x: np.ndarray, labels: np.ndarray, lr: float) -> tuple[float, dict]:
    """One SGD step of the MLP in float64, written plainly: the loss and each parameter's new value."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    x = x.astype(np.float64)
    n = len(labels)
    z1 = x @ p["w1"] + p["b1"]
    h1 = np.maximum(z1, 0)
    z2 = h1 @ p["w2"] + p["b2"]
    h2 = np.maximum(z2, 0)
    z3 = h2 @ p["w3"] + p["b3"]
    prob = softmax64(z3)
    loss = -np.mean(np.log(prob[np.arange(n), labels]))
    dz3 = (prob - np.eye(10)[labels]) / n
    dh2 = dz3 @ p["w3"].T
    dz2 = dh2 * (z2 > 0)
    dz1 = (dz2 @ p["w2"].T) * (z1 > 0)
    g = {"w3": h2.T @ dz3, "b3": dz3.sum(0), "w2": h1.T @ dz2, "b2": dz2.sum(0), "w1": x.T @ dz1, "b1": dz1.sum(0)}
    return loss, {k: p[k] - lr * g[k] for k in p}


def w2_data(quick: bool) -> dict:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 784)).astype(F32)
    labels = rng.integers(0, 10, 128).astype(np.int64)
    p = {}
    for k, shape in W2_SHAPES.items():
        scale = np.sqrt(2 / shape[0]) if len(shape) == 2 else 0.1
        p[k] = (rng.standard_normal(shape) * scale).astype(F32)
    loss, new = w2_reference(p, x, labels, W2_LR)
    # Check each update (new - old), which carries the gradient, rather than the new value, which
    # the old one dominates; the float32 update itself is rounded to about eps * |new value|.
    ref = {"loss": np.float64(loss), **{f"d_{k}": new[k] - p[k] for k in p}}
    tol = {"loss": (1e-5, 1e-6)}
    for k in p:
        tol[f"d_{k}"] = (1e-3, 1e-4 * np.abs(ref[f"d_{k}"]).max() + 2 * EPS32 * np.abs(new[k]))
    return {"x": x, "labels": labels, "params": p, "lr": W2_LR, "ref": ref, "tol": tol}


def sgd_step_graphc(d: dict, name: str, logits_of) -> System:
    """A graphc SGD training step on softmax cross-entropy of ``logits_of(x, variables)`` (W2, W4T);
    its check starts from, and leaves, the initial parameters."""
    with gc.Graph(name):
        x = gc.placeholder(d["x"].shape, "float32", name="x")
        labels = gc.placeholder(d["labels"].shape, "int64", name="labels")
        v = {k: gc.variable(a, name=k) for k, a in d["params"].items()}
        loss = gc.mean(gc.softmax_cross_entropy(logits_of(x, v), labels), name="loss")
        grads = gc.grad(loss, list(v.values()))
        lr = d["lr"]
    step = gc.compile(loss, updates=[(var, var - lr * g) for var, g in zip(v.values(), grads)])
    xv, lv = d["x"], d["labels"]

    def result():
        for k, var in v.items():
            var.value = d["params"][k]
        out = {"loss": np.asarray(step(x=xv, labels=lv))}
        out.update({f"d_{k}": var.value - d["params"][k] for k, var in v.items()})
        for k, var in v.items():  # time from the same starting point as every other system
            var.value = d["params"][k]
        return out

    return System(lambda: step(x=xv, labels=lv), result)


def w2_mlp(x, v: dict):
    h1 = gc.relu(x @ v["w1"] + v["b1"])
    h2 = gc.relu(h1 @ v["w2"] + v["b2"])
    return h2 @ v["w3"] + v["b3"]


def w2_graphc(d: dict) -> System:
    return sgd_step_graphc(d, "bench_w2", w2_mlp)


def w2_numpy(d: dict) -> System:
    """Forward, backward and in-place SGD, as a careful NumPy programmer writes them."""
    x, labels, lr = d["x"], d["labels"], d["lr"]
    n = len(labels)
    rows = np.arange(n)
    p = {k: v.copy() for k, v in d["params"].items()}
    w1, b1, w2, b2, w3, b3 = (p[k] for k in W2_SHAPES)
    h1, h2 = np.empty((n, 256), F32), np.empty((n, 256), F32)
    z3 = np.empty((n, 10), F32)
    dw1, dw2, dw3 = np.empty_like(w1), np.empty_like(w2), np.empty_like(w3)
    dh1, dh2 = np.empty((n, 256), F32), np.empty((n, 256), F32)

    def run():
        # (ufuncs with out= rather than augmented assignment, which would rebind the closure's names)
        np.matmul(x, w1, out=h1)
        np.add(h1, b1, out=h1)
        np.maximum(h1, 0, out=h1)
        np.matmul(h1, w2, out=h2)
        np.add(h2, b2, out=h2)
        np.maximum(h2, 0, out=h2)
        np.matmul(h2, w3, out=z3)
        np.add(z3, b3, out=z3)
        np.subtract(z3, z3.max(axis=1, keepdims=True), out=z3)  # stable softmax cross-entropy
        e = np.exp(z3)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - z3[rows, labels])
        e /= s  # softmax; its gradient w.r.t. the logits is (p - onehot) / n
        e[rows, labels] -= 1
        e *= 1 / n
        np.matmul(h2.T, e, out=dw3)
        db3 = e.sum(0)
        np.matmul(e, w3.T, out=dh2)
        np.multiply(dh2, h2 > 0, out=dh2)  # relu'(z) from the relu output: h > 0 exactly where z > 0
        np.matmul(h1.T, dh2, out=dw2)
        db2 = dh2.sum(0)
        np.matmul(dh2, w2.T, out=dh1)
        np.multiply(dh1, h1 > 0, out=dh1)
        np.matmul(x.T, dh1, out=dw1)
        db1 = dh1.sum(0)
        for w, g in ((w1, dw1), (b1, db1), (w2, dw2), (b2, db2), (w3, dw3), (b3, db3)):
            g *= lr
            w -= g
        return loss

    def result():
        for k in p:
            np.copyto(p[k], d["params"][k])
        out = {"loss": np.asarray(run())}
        out.update({f"d_{k}": p[k] - d["params"][k] for k in p})
        for k in p:
            np.copyto(p[k], d["params"][k])
        return out

    return System(run, result)


def w2_gemms(d: dict) -> dict[str, System]:
    """The step's eight GEMMs alone, as the baseline calls them: no system calling the same BLAS
    can take less time, so NumPy / this bounds every system's ratio."""
    x, p = d["x"], d["params"]
    n = x.shape[0]
    w1, w2, w3 = p["w1"], p["w2"], p["w3"]
    h1, h2, dh1, dh2 = (np.empty((n, 256), F32) for _ in range(4))
    z, e = np.empty((n, 10), F32), np.full((n, 10), 0.1, F32)
    dw1, dw2, dw3 = np.empty_like(w1), np.empty_like(w2), np.empty_like(w3)

    def run():
        np.matmul(x, w1, out=h1)
        np.matmul(h1, w2, out=h2)
        np.matmul(h2, w3, out=z)
        np.matmul(h2.T, e, out=dw3)
        np.matmul(e, w3.T, out=dh2)
        np.matmul(h1.T, dh2, out=dw2)
        np.matmul(dh2, w2.T, out=dh1)
        np.matmul(x.T, dh1, out=dw1)

    return {"gemms_only": System(run)}


def w2_note(d: dict, stats: dict) -> str:
    return "steps/s: " + ", ".join(f"{name} {1 / stats[name]['median_s']:,.0f}" for name in ("graphc", "numpy"))


# -- W3: elementwise chain -----------------------------------------------------------------------
W3_A, W3_B = 0.75, -0.3


def w3_data(quick: bool) -> dict:
    n = 1_000_000 if quick else 4_000_000
    x = (np.random.default_rng(3).standard_normal(n) * 2).astype(F32)
    x64 = x.astype(np.float64)
    y = np.tanh(W3_A * x64 + W3_B) / (1 + np.exp(-x64)) + 0.5 * x64 * x64 - 1.0
    return {"x": x, "a": W3_A, "b": W3_B, "ref": {"y": y}, "tol": {"y": (1e-5, 1e-5)}, "bytes_moved": 2 * x.nbytes}


def w3_graphc(d: dict) -> System:
    with gc.Graph("bench_w3"):
        x = gc.placeholder(d["x"].shape, "float32", name="x")
        a, b = d["a"], d["b"]
        y = gc.tanh(a * x + b) * gc.sigmoid(x) + 0.5 * x * x - 1.0
    fn = gc.compile(y)
    xv = d["x"]
    return System(lambda: fn(x=xv))


def w3_numpy(d: dict) -> System:
    x, a, b = d["x"], d["a"], d["b"]
    return System(lambda: np.tanh(a * x + b) * (1 / (1 + np.exp(-x))) + 0.5 * x * x - 1.0)


def w3_extras(d: dict) -> dict[str, System]:
    """NumPy with preallocated ``out=`` buffers: no allocation, the same passes over memory."""
    x, a, b = d["x"], d["a"], d["b"]
    t, u, y = np.empty_like(x), np.empty_like(x), np.empty_like(x)

    def run():
        np.multiply(x, a, out=t)
        np.add(t, b, out=t)
        np.tanh(t, out=t)
        np.negative(x, out=u)
        np.exp(u, out=u)
        np.add(u, 1, out=u)
        np.divide(t, u, out=t)  # tanh(a x + b) * sigmoid(x)
        np.multiply(x, x, out=u)
        np.multiply(u, 0.5, out=u)
        np.add(t, u, out=t)
        np.subtract(t, 1.0, out=y)
        return y

    return {"numpy_out": System(run)}


# -- W4: small CNN, inference and a training step ------------------------------------------------
W4_LR = 0.05
W4_SHAPES = {"k1": (8, 1, 3, 3), "b1": (8,), "k2": (16, 8, 3, 3), "b2": (16,), "w3": (16 * 5 * 5, 10), "b3": (10,)}


def w4_conv64(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Valid cross-correlation, NCHW by OIHW, as a sum over the kernel taps (the float64 check)."""
    _, _, kh, kw = k.shape
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    return sum(np.einsum("nchw,oc->nohw", x[:, :, r : r + ho, q : q + wo], k[:, :, r, q])
               for r in range(kh) for q in range(kw))  # fmt: skip


def w4_pool64(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pooling (an odd last row or column is dropped): the maxima and each window's first argmax."""
    n, c, hh, ww = h.shape
    ho, wo = hh // 2, ww // 2
    win = h[:, :, : 2 * ho, : 2 * wo].reshape(n, c, ho, 2, wo, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, 4)
    arg = win.argmax(axis=-1)[..., None]
    return np.take_along_axis(win, arg, -1)[..., 0], arg


def w4_unpool64(g: np.ndarray, arg: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of w4_pool64: each window's gradient at its first argmax, zero elsewhere."""
    n, c, ho, wo = g.shape
    win = np.zeros((n, c, ho, wo, 4))
    np.put_along_axis(win, arg, g[..., None], -1)
    dh = np.zeros(shape)
    dh[:, :, : 2 * ho, : 2 * wo] = (
        win.reshape(n, c, ho, wo, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * ho, 2 * wo)
    )
    return dh


def w4_reference(p: dict, x: np.ndarray, labels: np.ndarray | None, lr: float = 0.0):
    """The CNN in float64, written plainly: the logits, or (labels given) the loss and each
    parameter's value after one SGD step, with the backward pass derived by hand."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    x = x.astype(np.float64)
    n = len(x)
    z1 = w4_conv64(x, p["k1"]) + p["b1"][:, None, None]
    h1, arg1 = w4_pool64(np.maximum(z1, 0))
    z2 = w4_conv64(h1, p["k2"]) + p["b2"][:, None, None]
    h2, arg2 = w4_pool64(np.maximum(z2, 0))
    f = h2.reshape(n, -1)
    logits = f @ p["w3"] + p["b3"]
    if labels is None:
        return logits
    prob = softmax64(logits)
    loss = -np.mean(np.log(prob[np.arange(n), labels]))
    dlogits = (prob - np.eye(10)[labels]) / n
    g = {"w3": f.T @ dlogits, "b3": dlogits.sum(0)}
    dz2 = w4_unpool64((dlogits @ p["w3"].T).reshape(h2.shape), arg2, z2.shape) * (z2 > 0)
    dh1 = np.zeros(h1.shape)
    g["k2"], g["b2"] = np.zeros(p["k2"].shape), dz2.sum((0, 2, 3))
    ho, wo = dz2.shape[2:]
    for r in range(3):
        for q in range(3):
            dh1[:, :, r : r + ho, q : q + wo] += np.einsum("nohw,oc->nchw", dz2, p["k2"][:, :, r, q])
            g["k2"][:, :, r, q] = np.einsum("nohw,nchw->oc", dz2, h1[:, :, r : r + ho, q : q + wo])
    dz1 = w4_unpool64(dh1, arg1, z1.shape) * (z1 > 0)
    g["k1"], g["b1"] = np.zeros(p["k1"].shape), dz1.sum((0, 2, 3))
    ho, wo = dz1.shape[2:]
    for r in range(3):
        for q in range(3):
            g["k1"][:, :, r, q] = np.einsum("nohw,nchw->oc", dz1, x[:, :, r : r + ho, q : q + wo])
    return loss, {k: p[k] - lr * g[k] for k in p}


def w4_params(rng: np.random.Generator) -> dict:
    """He-initialized weights (fan-in: C*kh*kw, or the dense layer's inputs), small random biases."""
    p = {}
    for k, shape in W4_SHAPES.items():
        scale = np.sqrt(2 / np.prod(shape[1:] if len(shape) == 4 else shape[:1])) if len(shape) > 1 else 0.1
        p[k] = (rng.standard_normal(shape) * scale).astype(F32)
    return p


def w4_inputs(quick: bool) -> tuple:
    """Images, labels and parameters, the same for inference and the training step."""
    rng = np.random.default_rng(4)
    batch = 8 if quick else 64
    x = rng.standard_normal((batch, 1, 28, 28)).astype(F32)
    labels = rng.integers(0, 10, batch).astype(np.int64)
    return x, labels, w4_params(rng)


def w4_data(quick: bool) -> dict:
    x, _, p = w4_inputs(quick)
    y = w4_reference(p, x, None)
    return {"x": x, "params": p, "ref": {"y": y}, "tol": {"y": (1e-4, 1e-5 * np.abs(y).max())}}


def w4t_data(quick: bool) -> dict:
    x, labels, p = w4_inputs(quick)
    loss, new = w4_reference(p, x, labels, W4_LR)
    ref = {"loss": np.float64(loss), **{f"d_{k}": new[k] - p[k] for k in p}}  # updates, as in W2
    tol = {"loss": (1e-5, 1e-6)}
    for k in p:
        tol[f"d_{k}"] = (1e-3, 1e-4 * np.abs(ref[f"d_{k}"]).max() + 2 * EPS32 * np.abs(new[k]))
    return {"x": x, "labels": labels, "params": p, "lr": W4_LR, "ref": ref, "tol": tol}


def w4_model(x, v: dict):
    """The CNN's logits as graphc ops (NCHW, PyTorch's conv2d and max_pool2d)."""
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, v["k1"]) + gc.reshape(v["b1"], (8, 1, 1))), 2)
    h = gc.max_pool2d(gc.relu(gc.conv2d(h, v["k2"]) + gc.reshape(v["b2"], (16, 1, 1))), 2)
    return gc.flatten(h) @ v["w3"] + v["b3"]


def w4_graphc(d: dict) -> System:
    with gc.Graph("bench_w4"):
        x = gc.placeholder(d["x"].shape, "float32", name="x")
        y = w4_model(x, {k: gc.variable(a, name=k) for k, a in d["params"].items()})
    fn = gc.compile(y)
    xv = d["x"]
    return System(lambda: fn(x=xv))


def w4t_graphc(d: dict) -> System:
    return sgd_step_graphc(d, "bench_w4t", w4_model)


class W4Layers:
    """The NumPy CNN's buffers and layers, as a careful NumPy programmer writes them: im2col as one
    copy of a sliding-window view, one GEMM per convolution (batched over the images, written
    straight into NCHW order), bias and relu in place, and 2x2 max pooling on a reshaped view.

    Pooling takes the maximum of the window's four strided taps with np.maximum: the textbook
    ``h.reshape(n, c, ho, 2, wo, 2).max(axis=(3, 5))`` is the same result but NumPy reduces two
    length-2 strided axes about 30x slower (7 ms for the first layer alone on these machines).
    """

    def __init__(self, p: dict, x: np.ndarray):
        n = len(x)
        self.p, self.x = p, x
        self.k1, self.k2 = p["k1"].reshape(8, -1), p["k2"].reshape(16, -1)  # views: SGD updates them in place
        self.cols1 = np.empty((n, 1, 3, 3, 26, 26), F32)
        self.z1 = np.empty((n, 8, 26, 26), F32)
        self.h1 = np.empty((n, 8, 13, 13), F32)
        self.cols2 = np.empty((n, 8, 3, 3, 11, 11), F32)
        self.z2 = np.empty((n, 16, 11, 11), F32)
        self.h2 = np.empty((n, 16, 5, 5), F32)
        self.logits = np.empty((n, 10), F32)

    @staticmethod
    def im2col(x: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """cols[n, c, r, q, i, j] = x[n, c, i + r, j + q], as the (N, C*3*3, Ho*Wo) GEMM operand."""
        win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (N, C, Ho, Wo, 3, 3)
        np.copyto(cols, win.transpose(0, 1, 4, 5, 2, 3))
        n, c = x.shape[:2]
        return cols.reshape(n, c * 9, -1)

    @staticmethod
    def windows(h: np.ndarray) -> list:
        """The four taps of every 2x2 window (each (N, C, H//2, W//2)), from a reshaped view of h."""
        n, c, hh, ww = h.shape
        if hh % 2 or ww % 2:  # an odd last row or column is dropped (a view: a reshape would copy)
            h = h[:, :, : hh // 2 * 2, : ww // 2 * 2]
            sn, sc, sh, sw = h.strides
            v = np.lib.stride_tricks.as_strided(h, (n, c, hh // 2, 2, ww // 2, 2), (sn, sc, 2 * sh, sh, 2 * sw, sw))
        else:
            v = h.reshape(n, c, hh // 2, 2, ww // 2, 2)
        return [v[:, :, :, r, :, q] for r in (0, 1) for q in (0, 1)]

    def pool(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        a, b, c, d = self.windows(z)
        np.maximum(a, b, out=out)
        np.maximum(out, c, out=out)
        np.maximum(out, d, out=out)
        return out

    def forward(self) -> np.ndarray:
        p, n = self.p, len(self.x)
        np.matmul(self.k1, self.im2col(self.x, self.cols1), out=self.z1.reshape(n, 8, -1))
        np.add(self.z1, p["b1"][:, None, None], out=self.z1)
        np.maximum(self.z1, 0, out=self.z1)
        self.pool(self.z1, self.h1)
        np.matmul(self.k2, self.im2col(self.h1, self.cols2), out=self.z2.reshape(n, 16, -1))
        np.add(self.z2, p["b2"][:, None, None], out=self.z2)
        np.maximum(self.z2, 0, out=self.z2)
        self.pool(self.z2, self.h2)
        np.matmul(self.h2.reshape(n, -1), p["w3"], out=self.logits)
        np.add(self.logits, p["b3"], out=self.logits)
        return self.logits


def w4_numpy(d: dict) -> System:
    net = W4Layers(d["params"], d["x"])
    return System(lambda: net.forward().copy())


def w4t_numpy(d: dict) -> System:
    """Forward, backward by hand and in-place SGD: the relu masks from the relu outputs, the pooling
    gradient to where a window's input equals its maximum (ties: only windows of zeros after the
    relu, whose gradient the relu mask then drops), col2im as one strided add per kernel tap."""
    x, labels, lr = d["x"], d["labels"], d["lr"]
    n = len(labels)
    rows = np.arange(n)
    p = {k: v.copy() for k, v in d["params"].items()}
    net = W4Layers(p, x)
    dz1, dz2 = np.empty_like(net.z1), np.empty_like(net.z2)
    dh1 = np.empty_like(net.h1)
    g = {k: np.empty_like(v) for k, v in p.items()}

    def unpool(z, h, dh, dz):
        """dz = dh routed to each window's maximum of z, times relu'(z) (z is the relu output)."""
        dz.fill(0)  # an odd last row or column gets no gradient
        for tap, dtap in zip(net.windows(z), net.windows(dz)):
            np.multiply(tap == h, dh, out=dtap)
        np.multiply(dz, z > 0, out=dz)

    def run():
        z = net.forward()
        z -= z.max(axis=1, keepdims=True)  # stable softmax cross-entropy
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - z[rows, labels])
        e /= s  # softmax; its gradient w.r.t. the logits is (p - onehot) / n
        e[rows, labels] -= 1
        e *= 1 / n
        np.matmul(net.h2.reshape(n, -1).T, e, out=g["w3"])
        np.sum(e, axis=0, out=g["b3"])
        unpool(net.z2, net.h2, (e @ p["w3"].T).reshape(net.h2.shape), dz2)
        np.sum(dz2, axis=(0, 2, 3), out=g["b2"])
        flat2 = dz2.reshape(n, 16, -1)
        cols2 = net.cols2.reshape(n, 72, -1)
        g["k2"][...] = np.tensordot(flat2, cols2, axes=([0, 2], [0, 2])).reshape(g["k2"].shape)  # one GEMM
        dcols = np.matmul(net.k2.T, flat2).reshape(n, 8, 3, 3, 11, 11)  # col2im:
        dh1.fill(0)
        for r in range(3):
            for q in range(3):
                dh1[:, :, r : r + 11, q : q + 11] += dcols[:, :, r, q]
        unpool(net.z1, net.h1, dh1, dz1)
        np.sum(dz1, axis=(0, 2, 3), out=g["b1"])
        g["k1"][...] = np.tensordot(dz1.reshape(n, 8, -1), net.cols1.reshape(n, 9, -1),
                                    axes=([0, 2], [0, 2])).reshape(g["k1"].shape)  # fmt: skip
        for k, w in p.items():
            gk = g[k]
            gk *= lr
            w -= gk
        return loss

    def result():
        for k in p:
            np.copyto(p[k], d["params"][k])
        out = {"loss": np.asarray(run(), F32)}
        out.update({f"d_{k}": p[k] - d["params"][k] for k in p})
        for k in p:
            np.copyto(p[k], d["params"][k])
        return out

    return System(run, result)


# -- W5: compile time ----------------------------------------------------------------------------
def w5_data(quick: bool) -> dict:
    layers, width = (30 if quick else 300), 16
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, width)).astype(F32)
    # gain 1.05: at 1.0 a 300-layer tanh chain decays to ~1e-6 (gradients ~1e-11); from ~1.2 on it
    # turns chaotic, amplifying float32 rounding in the first layers' gradients past 1e-4
    ws = (rng.standard_normal((layers, width, width)) * (1.05 / np.sqrt(width))).astype(F32)
    hs = [x.astype(np.float64)]  # float64 reference: forward, then backward by hand
    for w in ws.astype(np.float64):
        hs.append(np.tanh(hs[-1] @ w))
    loss = np.mean(hs[-1] ** 2)
    dh = 2 * hs[-1] / hs[-1].size
    dws = np.empty(ws.shape)
    for i in reversed(range(layers)):
        dz = dh * (1 - hs[i + 1] ** 2)
        dws[i] = hs[i].T @ dz
        dh = dz @ ws[i].astype(np.float64).T
    ref = {"loss": np.float64(loss), "dw": dws}
    tol = {"loss": (1e-4, 1e-7), "dw": (1e-3, 1e-4 * np.abs(dws).max(axis=(1, 2), keepdims=True))}
    return {"x": x, "ws": ws, "layers": layers, "ref": ref, "tol": tol, "splits": []}


def w5_graphc(d: dict) -> System:
    state: dict = {}

    def prepare():  # untimed: graph construction and gc.grad
        with gc.Graph("bench_w5") as graph:
            h = x = gc.placeholder(d["x"].shape, "float32", name="x")
            ws = [gc.variable(w, name=f"w{i}") for i, w in enumerate(d["ws"])]
            for w in ws:
                h = gc.tanh(h @ w)
            loss = gc.mean(h * h, name="loss")
            forward = len(graph.nodes)
            grads = gc.grad(loss, ws)
        state.update(outputs=[loss, *grads], x=x, nodes=(forward, len(graph.nodes)))

    def run():  # timed: from a built graph to the first result
        t0 = time.perf_counter()
        fn = gc.compile(state["outputs"])
        t1 = time.perf_counter()
        out = fn({state["x"]: d["x"]})
        d["splits"].append((t1 - t0, time.perf_counter() - t1))
        d["nodes"] = state["nodes"]
        return out

    def result():
        prepare()
        loss, *grads = run()
        d["splits"].pop()  # the check's run is not one of the timed ones
        return {"loss": np.asarray(loss), "dw": np.stack(grads)}

    return System(run, result, prepare)


def w5_note(d: dict, stats: dict) -> str:
    compile_s = statistics.median(s[0] for s in d["splits"])
    call_s = statistics.median(s[1] for s in d["splits"])
    forward, total = d["nodes"]
    return (f"{d['layers']} layers, {forward} nodes, {total} with gradients; compile {fmt_time(compile_s, 's')} "
            f"+ first call {fmt_time(call_s, 'ms')}")  # fmt: skip


# -- W6: recurrent network, scan and its gradient ------------------------------------------------
W6_T, W6_B, W6_D, W6_H = 50, 32, 64, 128  # steps, batch, input, hidden


def w6_reference(p: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Forward and backpropagation through time in float64, written plainly (the check)."""
    wx, wh, b = (p[k].astype(np.float64) for k in ("wx", "wh", "b"))
    x, y = x.astype(np.float64), y.astype(np.float64)
    steps, batch, _ = x.shape
    hs = np.zeros((steps + 1, batch, wh.shape[0]))
    for t in range(steps):
        hs[t + 1] = np.tanh(x[t] @ wx + hs[t] @ wh + b)
    d = (hs[1:] - y) / batch
    loss = 0.5 * np.sum((hs[1:] - y) ** 2) / batch
    g = {"wx": np.zeros_like(wx), "wh": np.zeros_like(wh), "b": np.zeros_like(b)}
    dh = np.zeros_like(hs[0])
    for t in reversed(range(steps)):
        da = (dh + d[t]) * (1 - hs[t + 1] ** 2)
        g["wx"] += x[t].T @ da
        g["wh"] += hs[t].T @ da
        g["b"] += da.sum(0)
        dh = da @ wh.T
    return loss, g


def w6_data(quick: bool) -> dict:
    rng = np.random.default_rng(6)
    steps = 10 if quick else W6_T
    x = rng.standard_normal((steps, W6_B, W6_D)).astype(F32)
    y = (rng.uniform(-0.9, 0.9, (steps, W6_B, W6_H))).astype(F32)
    p = {"wx": (rng.standard_normal((W6_D, W6_H)) / np.sqrt(W6_D)).astype(F32),
         "wh": (rng.standard_normal((W6_H, W6_H)) * (0.9 / np.sqrt(W6_H))).astype(F32),
         "b": (rng.standard_normal(W6_H) * 0.1).astype(F32)}  # fmt: skip
    loss, g = w6_reference(p, x, y)
    ref = {"loss": np.float64(loss), **{f"d_{k}": v for k, v in g.items()}}
    tol = {"loss": (1e-4, 1e-6), **{f"d_{k}": (1e-3, 1e-4 * np.abs(v).max()) for k, v in g.items()}}
    return {"x": x, "y": y, "params": p, "ref": ref, "tol": tol}


def w6_graphc(d: dict) -> System:
    """The RNN as one scan; its gradient is the reverse scan graphc derives (BPTT)."""
    x0, batch = d["x"], d["x"].shape[1]
    with gc.Graph("bench_w6"):
        x = gc.placeholder(x0.shape, "float32", name="x")
        y = gc.placeholder(d["y"].shape, "float32", name="y")
        v = {k: gc.variable(a, name=k) for k, a in d["params"].items()}
        h0 = gc.constant(np.zeros((batch, W6_H), F32))

        def cell(h, xt):
            h = gc.tanh(xt @ v["wx"] + h @ v["wh"] + v["b"])
            return h, h

        _, hs = gc.scan(cell, h0, x)
        loss = gc.sum(gc.square(hs - y)) * (0.5 / batch)
        grads = gc.grad(loss, list(v.values()))
    fn = gc.compile({"loss": loss, **{f"d_{k}": g for k, g in zip(v, grads)}})
    xv, yv = d["x"], d["y"]
    return System(lambda: fn(x=xv, y=yv), lambda: fn(x=xv, y=yv))


def w6_numpy(d: dict) -> System:
    """Forward and BPTT as in CS231n's rnn_forward/rnn_backward, with buffers allocated once."""
    x, y = d["x"], d["y"]
    wx, wh, b = (d["params"][k] for k in ("wx", "wh", "b"))
    steps, batch, _ = x.shape
    hs = np.zeros((steps + 1, batch, W6_H), F32)
    z, tmp, da, dh = (np.empty((batch, W6_H), F32) for _ in range(4))
    dwx, dwh, db = np.empty_like(wx), np.empty_like(wh), np.empty_like(b)

    def run():
        for t in range(steps):
            np.matmul(x[t], wx, out=z)
            np.matmul(hs[t], wh, out=tmp)
            np.add(z, tmp, out=z)
            np.add(z, b, out=z)
            np.tanh(z, out=hs[t + 1])
        diff = hs[1:] - y
        loss = 0.5 * np.sum(diff * diff) / batch
        diff *= 1 / batch
        dwx.fill(0)
        dwh.fill(0)
        db.fill(0)
        dh.fill(0)
        for t in reversed(range(steps)):
            np.add(dh, diff[t], out=dh)
            np.multiply(hs[t + 1], hs[t + 1], out=da)
            np.subtract(1, da, out=da)
            np.multiply(da, dh, out=da)
            np.add(dwx, x[t].T @ da, out=dwx)  # (ufuncs with out=: += would rebind the closure's names)
            np.add(dwh, hs[t].T @ da, out=dwh)
            np.add(db, da.sum(0), out=db)
            np.matmul(da, wh.T, out=dh)
        return {"loss": np.asarray(loss, F32), "d_wx": dwx.copy(), "d_wh": dwh.copy(), "d_b": db.copy()}

    return System(run, run)


def w6_extras(d: dict) -> dict[str, System]:
    """NumPy rearranged by hand beyond a step-by-step BPTT: x @ wx for all steps in one GEMM, the
    input-weight gradient as one GEMM after the loop, a contiguous copy of wh.T."""
    x, y = d["x"], d["y"]
    wx, wh, b = (d["params"][k] for k in ("wx", "wh", "b"))
    steps, batch, n_in = x.shape
    hs = np.zeros((steps + 1, batch, W6_H), F32)
    das = np.empty((steps, batch, W6_H), F32)
    tmp, dh = np.empty((batch, W6_H), F32), np.empty((batch, W6_H), F32)
    dwh, db = np.empty_like(wh), np.empty_like(b)

    def run():
        zx = (x.reshape(-1, n_in) @ wx).reshape(steps, batch, W6_H)
        zx += b
        for t in range(steps):
            np.matmul(hs[t], wh, out=tmp)
            np.add(tmp, zx[t], out=tmp)
            np.tanh(tmp, out=hs[t + 1])
        diff = hs[1:] - y
        loss = 0.5 * np.sum(diff * diff) / batch
        diff *= 1 / batch
        wht = np.ascontiguousarray(wh.T)
        dwh.fill(0)
        dh.fill(0)
        for t in reversed(range(steps)):
            np.add(dh, diff[t], out=dh)
            da = das[t]
            np.multiply(hs[t + 1], hs[t + 1], out=da)
            np.subtract(1, da, out=da)
            np.multiply(da, dh, out=da)
            np.add(dwh, hs[t].T @ da, out=dwh)
            np.matmul(da, wht, out=dh)
        flat = das.reshape(-1, W6_H)
        np.sum(flat, axis=0, out=db)
        dwx = x.reshape(-1, n_in).T @ flat
        return {"loss": np.asarray(loss, F32), "d_wx": dwx, "d_wh": dwh.copy(), "d_b": db.copy()}

    return {"numpy_batched": System(run, run)}


# -- the table of workloads ---------------------------------------------------------------------
WORKLOADS = [
    Workload("W1", "inference b=1, 784-128-10", "us", w1_data, w1_graphc, w1_numpy,
             reps=(300, 20), inner=20, warmup=50),
    Workload("W2", "train step b=128, 784-256-256-10", "ms", w2_data, w2_graphc, w2_numpy,
             reps=(150, 5), warmup=5, note=w2_note, floors=w2_gemms),
    Workload("W3", "elementwise chain, 4M f32", "ms", w3_data, w3_graphc, w3_numpy, w3_extras,
             reps=(30, 3), warmup=2, note=lambda d, stats: f"n = {d['x'].size:,}"),
    Workload("W4", "CNN inference b=64, 28x28: 2 x (conv 3x3, relu, pool 2), dense", "ms", w4_data, w4_graphc,
             w4_numpy, reps=(100, 5), warmup=5),
    Workload("W4T", "CNN train step b=64 (W4's net), softmax CE, SGD", "ms", w4t_data, w4t_graphc, w4t_numpy,
             reps=(60, 5), warmup=3, note=w2_note),
    Workload("W5", "compile 300 dense tanh + grads", "s", w5_data, w5_graphc, None,
             reps=(21, 2), warmup=0, target_s=0.1, note=w5_note),  # (a fresh graph each: 21 for a steady median)
    Workload("W6", "tanh RNN h=128 x=64, 50 steps, b=32: forward + BPTT", "ms", w6_data, w6_graphc, w6_numpy,
             w6_extras, reps=(60, 5), warmup=3),
]  # fmt: skip


# -- machine limits and settings ----------------------------------------------------------------
def machine_limits(quick: bool) -> dict:
    """Memory bandwidth (one and all threads copying) and the float32 matmul ceiling."""
    n = (16 if quick else 64) << 20  # float32 elements: 64 MiB or 256 MiB per array
    src, dst = np.ones(n, F32), np.empty(n, F32)
    threads = os.cpu_count() or 1
    parts = [(slice(i * n // threads, (i + 1) * n // threads)) for i in range(threads)]
    reps = 3 if quick else 10

    def best(fn) -> float:
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    t1 = best(lambda: np.copyto(dst, src))
    with ThreadPoolExecutor(threads) as pool:  # NumPy copies release the GIL
        tn = best(lambda: list(pool.map(lambda s: np.copyto(dst[s], src[s]), parts)))
    m = 1024
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((m, m)).astype(F32), rng.standard_normal((m, m)).astype(F32), np.empty((m, m), F32)
    tm = best(lambda: np.matmul(a, b, out=c))
    bw1, bwn = 2 * n * 4 / t1, 2 * n * 4 / tn
    return {"copy_bytes": 2 * n * 4, "bandwidth_1thread_Bps": bw1, f"bandwidth_{threads}threads_Bps": bwn,
            "bandwidth_Bps": max(bw1, bwn), "matmul_1024_GFLOPs": 2 * m**3 / tm / 1e9}  # fmt: skip


def thread_settings() -> dict:
    env = ("GRAPHC_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
           "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # fmt: skip
    out: dict = {"cpu_count": os.cpu_count(), "env": {k: os.environ.get(k) for k in env}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        out["blas"] = None
    else:
        out["blas"] = [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
            for i in threadpool_info()
        ]
    return out


# -- output --------------------------------------------------------------------------------------
UNITS = {"us": (1e6, "µs"), "ms": (1e3, "ms"), "s": (1.0, "s")}


def fmt_time(seconds: float, unit: str) -> str:
    scale, label = UNITS[unit]
    v = seconds * scale
    return f"{v:.3g} {label}" if v < 100 else f"{v:,.0f} {label}"


def cell(stats: dict, unit: str) -> str:
    return f"{fmt_time(stats['median_s'], unit)} ({fmt_time(stats['min_s'], unit)})"


def report(results: dict, limits: dict, settings: dict) -> str:
    head = ["workload", "graphc median (min)", "baseline median (min)", "ratio", "other systems: median (ratio)"]
    rows = []
    for wid, r in results.items():
        name = f"{wid} {r['title']}"
        if not r["checked"]:
            rows.append([name, "VOID", "", "", r["error"]])
            continue
        unit, st = r["unit"], r["systems"]
        if "target_s" in r:
            base = f"target <= {fmt_time(r['target_s'], unit)}"
        else:
            base = "NumPy " + cell(st["numpy"], unit)
        others = [f"{n} {fmt_time(s['median_s'], unit)} ({r['ratios'][n]:.2f}x)"
                  for n, s in st.items() if n not in ("graphc", "numpy", *r["floors"])]  # fmt: skip
        for n in r["floors"]:  # the best ratio any system doing this work could reach
            best = st["numpy"]["median_s"] / st[n]["median_s"]
            others.append(f"{n} {fmt_time(st[n]['median_s'], unit)} (NumPy / this: {best:.2f}x at most)")
        if "bandwidth_limit_s" in r:
            t = r["bandwidth_limit_s"]
            others.append(f"bandwidth limit {fmt_time(t, unit)} ({t / st['graphc']['median_s']:.2f}x)")
        others += [f"{n} {fmt_time(s['median_s'], unit)} ({s['ratio']:.2f}x, own pass)" for n, s in r["peers"].items()]
        others += [f"{n} skipped ({e})" for n, e in r["skipped_peers"].items()]
        if r["note"]:
            others.append(r["note"])
        rows.append([name, cell(st["graphc"], unit), base, f"{r['ratio']:.2f}x", "; ".join(others)])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("ratio = baseline median / graphc median: above 1 means graphc is faster "
                 "(W5: target / graphc median). Quote ratios: these machines are shared and noisy.")  # fmt: skip
    if any(r.get("peers") for r in results.values()):
        lines.append(
            "peers (PyTorch, JAX) are timed in a pass of their own beside graphc: their thread pools keep "
            "spinning between calls and slow what runs next on these 2 cores, so their ratios are rough."
        )

    gb = 1e9
    th = f"bandwidth_{settings['cpu_count']}threads_Bps"
    lines += [
        "",
        "machine limits:",
        f"  memory bandwidth {limits['bandwidth_Bps'] / gb:.1f} GB/s (bytes read + written by a "
        f"{limits['copy_bytes'] / 2**21:.0f} MiB NumPy copy; 1 thread {limits['bandwidth_1thread_Bps'] / gb:.1f}, "
        f"{settings['cpu_count']} threads {limits.get(th, 0) / gb:.1f})",
    ]
    if "W3" in results and "bandwidth_limit_s" in results["W3"]:
        lines.append(f"  W3 at that bandwidth (read x once, write y once): "
                     f"{fmt_time(results['W3']['bandwidth_limit_s'], 'ms')}")  # fmt: skip
    lines.append(f"  float32 matmul 1024^3: {limits['matmul_1024_GFLOPs']:.1f} GFLOP/s")
    lines.append("thread settings:")
    env = settings["env"]
    graphc_threads = env["GRAPHC_NUM_THREADS"] or f"unset (graphc uses os.cpu_count() = {settings['cpu_count']})"
    lines.append(f"  os.cpu_count() {settings['cpu_count']}; GRAPHC_NUM_THREADS {graphc_threads}")
    if settings["blas"] is None:
        lines.append("  BLAS threads: unknown (pip install threadpoolctl to see them)")
    for lib in settings["blas"] or ():
        kernel = f", kernel {lib['architecture']}" if lib["architecture"] else ""
        lines.append(f"  {lib['internal_api']} {lib['version'] or ''} ({os.path.basename(lib['filepath'])}): "
                     f"{lib['num_threads']} threads{kernel}")  # fmt: skip
    lines.append(f"  OPENBLAS_CORETYPE {env['OPENBLAS_CORETYPE'] or 'unset'} (set on some of these machines, "
                 "where it selects an older, slower OpenBLAS kernel; left as found)")  # fmt: skip
    for k in ("OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if env[k] is not None:
            lines.append(f"  {k} {env[k]}")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions and small sizes: a smoke test")
    ap.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    ap.add_argument(
        "--only", metavar="IDS", help="comma-separated workload ids, e.g. W1,W3 (W4 also selects its training row W4T)"
    )
    ap.add_argument("--no-peers", action="store_true", help="skip PyTorch/JAX columns even when installed")
    args = ap.parse_args(argv)
    chosen = WORKLOADS
    if args.only:
        ids = [s.strip().upper() for s in args.only.split(",") if s.strip()]

        def selects(i: str, wid: str) -> bool:  # a BENCH.md id selects its rows: W4 -> W4, W4T
            return wid == i or (wid.startswith(i) and wid[len(i)].isalpha())

        unknown = [i for i in ids if not any(selects(i, w.id) for w in WORKLOADS)]
        if unknown:
            known = sorted(w.id for w in WORKLOADS)
            ap.error(f"--only: unknown or not yet implemented workloads {unknown}: expected some of {known}")
        chosen = [w for w in WORKLOADS if any(selects(i, w.id) for i in ids)]

    results = {}
    for w in chosen:
        print(f"{w.id} {w.title} ...", file=sys.stderr, flush=True)
        results[w.id] = run_workload(w, args.quick, not args.no_peers)
        if results[w.id]["error"]:
            print(f"{w.id}: {results[w.id]['error']}", file=sys.stderr, flush=True)
    limits = machine_limits(args.quick)
    settings = thread_settings()  # after the workloads, so peers' thread pools are listed too
    for r in results.values():  # the time to read the inputs and write the output once
        if "bytes_moved" in r:
            r["bandwidth_limit_s"] = r["bytes_moved"] / limits["bandwidth_Bps"]
    print(report(results, limits, settings))
    if args.json:
        doc = {"quick": args.quick, "numpy": np.__version__, "graphc": gc.__version__, "python": sys.version,
               "settings": settings, "machine": limits, "workloads": results}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, default=float)
    failed = [wid for wid, r in results.items() if not r["checked"]]
    if failed:
        print(f"\nVOID (wrong result or crash): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
