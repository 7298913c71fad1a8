"""Shared test fixtures and helpers: a fresh default graph per test, finite differences, provenance."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import graphc as gc


@pytest.fixture(autouse=True)
def fresh_graph():
    """Every test builds into its own empty default graph, so node names and warnings never leak."""
    yield gc.reset_default_graph()
    gc.reset_default_graph()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar function ``f`` at ``x`` (float64)."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x.copy())
        x[i] = old - eps
        fm = f(x.copy())
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def next_line() -> int:
    """The caller's next source line: ``line = next_line()`` just above the statement under test."""
    return sys._getframe(1).f_lineno + 1


def assert_no_alias(a: np.ndarray, *others: np.ndarray) -> None:
    """``a`` shares no memory with any of ``others``."""
    for o in others:
        assert not np.shares_memory(a, o), "returned array aliases memory it must not"


def run_in_threads(work, n: int = 4) -> list:
    """Run ``work(i)`` for i in range(n) in n threads that start together; what they raised."""
    barrier = threading.Barrier(n)
    errors: list = []

    def target(i: int):
        try:
            barrier.wait()
            work(i)
        except Exception as e:  # surfaced to the test by the return value
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
