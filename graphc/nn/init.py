"""Initializers: a variable's starting value as a NumPy array, drawn from a seeded Generator.

Every function takes ``(shape, seed=0, dtype="float32")``; ``seed`` is an int or a
``numpy.random.Generator``, so the same seed always gives the same array.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import GraphError

Seed = int | np.random.Generator | None


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(0 if seed is None else seed)


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: a Dense kernel is (in, out), a conv kernel (out, in, *window)."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    window = math.prod(shape[2:])
    return shape[1] * window, shape[0] * window


def zeros(shape, seed: Seed = 0, dtype="float32") -> np.ndarray:
    """All zeros (``seed`` is ignored)."""
    return np.zeros(shape, dtype)


def ones(shape, seed: Seed = 0, dtype="float32") -> np.ndarray:
    """All ones (``seed`` is ignored)."""
    return np.ones(shape, dtype)


def normal(shape, seed: Seed = 0, dtype="float32", std: float = 1.0) -> np.ndarray:
    """Normal with mean 0 and standard deviation ``std`` (PyTorch's ``nn.Embedding`` default)."""
    return (_rng(seed).standard_normal(shape) * std).astype(dtype)


def uniform(shape, seed: Seed = 0, dtype="float32", limit: float = 0.05) -> np.ndarray:
    """Uniform on ``[-limit, limit)`` (Keras' ``Embedding`` default)."""
    return _rng(seed).uniform(-limit, limit, shape).astype(dtype)


def glorot_uniform(shape, seed: Seed = 0, dtype="float32") -> np.ndarray:
    """Uniform on ``[-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot and Bengio, 2010)."""
    fan_in, fan_out = fans(shape)
    return uniform(shape, seed, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(shape, seed: Seed = 0, dtype="float32") -> np.ndarray:
    """Normal with ``std = sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    return normal(shape, seed, dtype, math.sqrt(2.0 / (fan_in + fan_out)))


def he_normal(shape, seed: Seed = 0, dtype="float32") -> np.ndarray:
    """Normal with ``std = sqrt(2 / fan_in)``, for ReLU networks (He et al., 2015)."""
    return normal(shape, seed, dtype, math.sqrt(2.0 / fans(shape)[0]))


def he_uniform(shape, seed: Seed = 0, dtype="float32") -> np.ndarray:
    """Uniform on ``[-a, a)`` with ``a = sqrt(6 / fan_in)``."""
    return uniform(shape, seed, dtype, math.sqrt(6.0 / fans(shape)[0]))


INITIALIZERS: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f for f in (zeros, ones, normal, uniform, glorot_uniform, glorot_normal, he_normal, he_uniform)
}


def get(init) -> Callable[..., np.ndarray]:
    """An initializer by name (``"he_normal"``) or a callable ``(shape, seed, dtype) -> array`` as is."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except (KeyError, TypeError):
        known = sorted(INITIALIZERS)
        raise GraphError(f"unknown initializer {init!r}: expected a callable or one of {known}") from None
