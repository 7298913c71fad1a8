"""Every example in graphs/: each compiled function its build() returns, saved and loaded, computes
what the live one computes, and a training function keeps training in lockstep with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
EXAMPLES = sorted(p for p in GRAPHS.glob("*.py") if not p.name.startswith("_"))


def _build(path: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def _feeds(fn, rng) -> dict:
    """Values for every placeholder: unknown dims 3, floats in [0.5, 2) (valid for every example's
    domain), integers in {0, 1} (valid labels), booleans at random."""
    feeds = {}
    for name, t in fn._placeholders:
        shape = tuple(3 if d is None else d for d in t.shape)
        if t.dtype.kind == "f":
            feeds[name] = rng.uniform(0.5, 2.0, shape).astype(t.dtype)
        elif t.dtype.kind in "iu":
            feeds[name] = rng.integers(0, 2, shape).astype(t.dtype)
        else:
            feeds[name] = rng.random(shape) < 0.5
    return feeds


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), strict=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_function_of_every_example_round_trips(path, tmp_path):
    built = _build(path)
    functions = {k: v for k, v in built.items() if isinstance(v, gc.Function)}
    assert functions, f"{path.name}: build() returns no compiled function"
    rng = np.random.default_rng(0)
    for key, fn in functions.items():
        loaded = gc.load(gc.save(fn, tmp_path / f"{path.stem}_{key}.json"))
        feeds = _feeds(fn, rng)
        calls = 3 if fn.program.updates else 1  # a training step: the two copies of its state move in lockstep
        for _ in range(calls):
            _same(loaded(**feeds), fn(**feeds))
        for name, _ in fn.program.updates:
            np.testing.assert_array_equal(loaded.graph.variables[name], fn.graph.variables[name], strict=True)
