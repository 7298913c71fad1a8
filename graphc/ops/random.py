"""Random ops: random_uniform, random_normal and dropout, counter-based and reproducible.

Each random op reads its own int64 counter variable and draws from Philox keyed by (seed, stream)
at counter position ``counter << 128``: its numbers are a pure function of (seed, stream,
counter, shape). Building the op registers the implicit update ``counter := counter + 1``, so
every call of a function that computes it draws fresh numbers, and the generator state is an
ordinary variable (saved by ``gc.save`` and checkpoints). The stream is a hash of the counter's
name, so ops built with the same seed still draw independent numbers.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..dtypes import as_dtype
from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Tensor, TensorType, get_default_graph
from ..ir.types import fmt_shape
from .elementwise import identity, where
from .registry import OPAQUE, OpDef, apply, register
from .state import _check_shape, as_tensor, constant, variable

_U64 = (1 << 64) - 1


def _generator(seed: int, stream: int, counter) -> np.random.Generator:
    """Philox-4x64 with key (seed, stream); the call counter sits in the counter's third word, so
    one call may draw 2**128 blocks before reaching the next call's numbers. (NumPy-only: a CuPy
    backend draws on the host and copies.)"""
    return np.random.Generator(np.random.Philox(key=seed | stream << 64, counter=(int(counter) & _U64) << 128))


def _random_infer(counter: TensorType, *ref: TensorType, dtype, seed, stream, shape=None, **params) -> TensorType:
    if len(ref) > 1 or (ref and shape is not None) or (not ref and shape is None):
        raise GraphError(f"a random op takes its shape from one tensor or from its 'shape' attribute: "
                         f"got {len(ref)} tensors and shape={shape}")  # fmt: skip
    if counter.shape != () or counter.dtype != np.int64:
        raise DTypeError(f"the generator counter must be an int64 scalar: got {counter}")
    if dtype.kind != "f":
        raise DTypeError(f"random values must have a float dtype: got {dtype}")
    return TensorType(ref[0].shape if ref else shape, dtype)


def _draw(kind):
    def kernel(xp, counter, *ref, dtype, seed, stream, shape=None, **params):
        shape = ref[0].shape if ref else shape
        gen = _generator(seed, stream, counter)
        work = dtype if dtype.itemsize >= 4 else np.dtype(np.float32)  # Generator draws float32/64
        if kind == "uniform":
            low, high = params["low"], params["high"]
            out = gen.random(shape, dtype=work)
            out *= high - low
            out += low
            out = out.astype(dtype, copy=False)
            np.minimum(out, np.nextafter(dtype.type(high), dtype.type(low)), out=out)  # rounding never gives high
        else:
            out = gen.standard_normal(shape, dtype=work)
            out *= params["stddev"]
            out += params["mean"]
            out = out.astype(dtype, copy=False)
        return xp.asarray(out)

    return kernel


register(OpDef("random_uniform", OPAQUE, _random_infer, _draw("uniform"), differentiable=False,
               doc="Uniform numbers on [low, high), a function of (seed, stream, counter)."))  # fmt: skip
register(OpDef("random_normal", OPAQUE, _random_infer, _draw("normal"), differentiable=False,
               doc="Normal numbers (mean, stddev), a function of (seed, stream, counter)."))  # fmt: skip


def _random(op: str, shape, dtype, seed, name, **params) -> Tensor:
    """Build a random op with a fresh counter variable and its implicit ``counter += 1``."""
    dtype = as_dtype(dtype)
    if dtype.kind != "f":
        raise DTypeError(f"{op}: random values must have a float dtype: got {dtype}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _U64:
        raise GraphError(f"{op}: seed must be an int in [0, 2**64): got {seed!r}")
    ref = ()
    if isinstance(shape, Tensor):
        ref, static = (shape,), None
        graph = shape.graph
    else:
        static = _check_shape(shape, op)
        if None in static:
            raise ShapeError(f"{op}: shape {fmt_shape(static)} has unknown dims; pass a tensor to take "
                             f"its run-time shape instead")  # fmt: skip
        graph = get_default_graph()
    with graph:
        node_name = name or graph.unique_name(op)
        counter = variable(np.int64(0), name=graph.unique_name(f"{node_name}_counter"), trainable=False)
        stream = zlib.crc32(counter.node.name.encode())
        if static is not None:  # (a shape taken from a tensor is not an attribute)
            params["shape"] = static
        out = apply(op, counter, *ref, name=node_name, dtype=dtype, seed=int(seed), stream=stream, **params)
        graph.add_implicit_update(out, counter, counter + 1)
    return out


def random_uniform(shape, low=0.0, high=1.0, dtype="float32", seed=0, name=None) -> Tensor:
    """Uniform random numbers on [low, high), new ones at every call of a compiled function.

    Parameters
    ----------
    shape : tuple of ints, or a Tensor
        A Tensor stands for its shape at run time (unknown dims allowed), like ``*_like`` ops.
    low, high : float
    dtype : float dtype, default "float32"
    seed : int in [0, 2**64)
        With the op's stream and its counter variable (``<name>_counter``, advanced by every call
        that computes the op) this determines the numbers exactly.
    """
    if not float(low) <= float(high):
        raise GraphError(f"random_uniform: needs low <= high: got low={low}, high={high}")
    return _random("random_uniform", shape, dtype, seed, name, low=float(low), high=float(high))


def random_normal(shape, mean=0.0, stddev=1.0, dtype="float32", seed=0, name=None) -> Tensor:
    """Normally distributed random numbers, new ones at every call; see ``random_uniform``."""
    return _random("random_normal", shape, dtype, seed, name, mean=float(mean), stddev=float(stddev))


def dropout(x, rate, seed=0, training=True, name=None) -> Tensor:
    """Inverted dropout: zero each element with probability ``rate`` and scale the others by
    ``1 / (1 - rate)``, so the expected value is unchanged. A composite of ``random_uniform``.

    Parameters
    ----------
    x : Tensor
    rate : float in [0, 1]
    seed : int
        See ``random_uniform``; the mask changes at every call of a compiled function.
    training : bool or bool scalar Tensor
        False (or rate == 0): x itself. A Tensor chooses at run time (fed or a variable).
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"dropout '{name or x.name}': needs a float input: got {x.dtype}")
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise GraphError(f"dropout '{name or x.name}': rate must lie in [0, 1]: got {rate}")
    if isinstance(training, Tensor) and (training.shape != () or training.dtype != np.bool_):
        raise DTypeError(f"dropout '{name or x.name}': training must be a bool scalar: got {training.type}")
    if rate == 0.0 or (not isinstance(training, Tensor) and not training):
        return x
    with x.graph:
        if rate == 1.0:
            dropped = x * 0.0
        else:
            u = random_uniform(x, dtype=x.dtype, seed=seed)
            scale = constant(1.0 / (1.0 - rate), x.dtype)
            dropped = x * where(u >= rate, scale, constant(0.0, x.dtype))
        out = where(training, dropped, x) if isinstance(training, Tensor) else dropped
        return out if name is None else identity(out, name=name)
