"""A data-dependent loop in a static graph: Newton's method iterates until it has converged.

``cube_root`` solves x**3 = a for every element of ``a`` with Newton steps
``x <- x - (x**3 - a) / (3 x**2)``, repeated while the largest step is above a tolerance: the
number of iterations depends on the data, as in a Python loop, yet the loop is one graph node
(``graphc.while_loop``), compiled once. It is differentiable too (``max_iterations`` bounds the
stored iterations): the gradient through the loop matches d cbrt(a)/da = 1 / (3 cbrt(a)**2).
Run ``python graphs/recursive.py`` to compare it with the same loop written in Python.
"""

from __future__ import annotations

import numpy as np

import graphc as gc

TOLERANCE = 1e-12
MAX_ITERATIONS = 100


def cube_root(a, tolerance: float = TOLERANCE, max_iterations: int = MAX_ITERATIONS):
    """(x, iterations): x**3 = a elementwise, by Newton steps from x = 1 + |a| / 3 until the
    largest step is at most ``tolerance``."""

    def not_converged(x, step, i):
        return gc.max(gc.abs(step)) > tolerance

    def newton(x, step, i):
        step = (x * x * x - a) / (3.0 * x * x)
        return x - step, step, i + 1

    x0 = 1.0 + gc.abs(a) / 3.0
    inf = gc.zeros_like(a) + np.inf  # the first step is "not converged"
    x, _, iterations = gc.while_loop(not_converged, newton, (x0, inf, 0), max_iterations=max_iterations)
    return x, iterations


def python_cube_root(a: np.ndarray, tolerance: float = TOLERANCE, max_iterations: int = MAX_ITERATIONS):
    """The same loop, written in Python: the reference."""
    x, i = 1.0 + np.abs(a) / 3.0, 0
    step = np.full_like(a, np.inf)
    while np.max(np.abs(step)) > tolerance and i < max_iterations:
        step = (x**3 - a) / (3 * x**2)
        x, i = x - step, i + 1
    return x, i


def build(dtype="float64"):
    """The loop, the gradient of sum(cbrt(a)) through it, and the compiled solver, in a fresh graph."""
    with gc.Graph("recursive") as graph:
        a = gc.placeholder((None,), dtype, name="a")
        x, iterations = cube_root(a)
        grad = gc.grad(gc.sum(x), a)  # backwards through every Newton step
        step = gc.compile([x, iterations, grad], inputs=[a])
    return dict(graph=graph, a=a, x=x, iterations=iterations, grad=grad, step=step)


def main() -> None:
    net = build()
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e3, 1e6):
        a = rng.uniform(-scale, scale, 5)
        x, n, g = net["step"](a)
        ref, n_ref = python_cube_root(a)
        print(f"|a| <= {scale:g}: {int(n)} iterations (Python: {n_ref}), max |x - python| = "
              f"{np.abs(x - ref).max():.1e}, max |x - cbrt(a)| = {np.abs(x - np.cbrt(a)).max():.1e}, "
              f"gradient error {np.abs(g - 1 / (3 * np.cbrt(a) ** 2)).max():.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
