"""Sources and state: placeholders (fed per call), constants, variables and their assignments."""

from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, can_feed
from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Tensor, TensorType, get_default_graph
from ..ir.types import compatible, fmt_shape
from .registry import SOURCE, STATEFUL, OpDef, apply, register


def _no_kernel(xp, **attrs):
    raise AssertionError("source nodes are bound by the executor, not run")


def _source_type(shape, dtype, **_):
    return TensorType(shape, dtype)


register(OpDef("placeholder", SOURCE, _source_type, _no_kernel, doc="A value fed at each call."))
register(OpDef("variable", SOURCE, _source_type, _no_kernel, doc="A value that persists across calls."))
register(OpDef("constant", SOURCE, lambda value: TensorType(value.shape, value.dtype), _no_kernel,
               doc="A value fixed when the graph is built."))  # fmt: skip


def _check_shape(shape, what: str) -> tuple:
    if shape is None or isinstance(shape, (int, np.integer)):
        shape = () if shape is None else (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise ShapeError(f"{what}: shape must be a tuple of ints or None: got {shape!r}") from None
    for d in shape:
        if d is not None and (not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0):
            raise ShapeError(f"{what}: dims must be non-negative ints or None: got {fmt_shape(shape)}")
    return tuple(None if d is None else int(d) for d in shape)


def placeholder(shape, dtype="float32", name: str | None = None) -> Tensor:
    """A graph input fed at every call; ``None`` in ``shape`` marks a dim of any size.

    Parameters
    ----------
    shape : tuple of int or None
    dtype : str or np.dtype, default "float32"
    name : str, optional
        The feed name used by compiled functions (``fn(x=...)``).
    """
    return apply("placeholder", name=name, shape=_check_shape(shape, "placeholder"), dtype=as_dtype(dtype))


def constant(value, dtype=None, name: str | None = None) -> Tensor:
    """A tensor with a value fixed at construction (converted like ``np.asarray(value, dtype)``)."""
    if isinstance(value, Tensor):
        raise GraphError("constant: value is already a graphc Tensor")
    arr = np.array(value, dtype=None if dtype is None else as_dtype(dtype))
    as_dtype(arr.dtype)
    arr.setflags(write=False)
    return apply("constant", name=name, value=arr)


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """A Tensor for ``value``; Python scalars take the dtype NumPy would give them next to ``like``."""
    if isinstance(value, Tensor):
        return value
    # next to ``like``: in its graph, or in the control-flow body being traced (which reads it)
    home = get_default_graph() if like is not None and get_default_graph().tracing else getattr(like, "graph", None)
    if like is not None and isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        dtype = np.result_type(like.dtype, value)  # NumPy 2: Python scalars are weakly typed
        with home:
            return constant(value, dtype)
    if like is not None:
        with home:
            return constant(value)
    return constant(value)


def variable(initial_value, name: str | None = None, trainable: bool = True, dtype=None) -> Tensor:
    """A tensor whose value persists across calls and is shared by every function of its graph.

    Parameters
    ----------
    initial_value : array_like
        The starting value; its shape and dtype are the variable's.
    name : str, optional
    trainable : bool, default True
        Whether optimizers (``graphc.optim``) update it by default.
    """
    if isinstance(initial_value, Tensor):
        raise GraphError("variable: initial_value must be an array, not a graphc Tensor")
    arr = np.array(initial_value, dtype=None if dtype is None else as_dtype(dtype))
    as_dtype(arr.dtype)
    var = apply("variable", name=name, shape=arr.shape, dtype=arr.dtype, trainable=bool(trainable))
    var.graph.variables[var.node.name] = arr
    var.graph.variables_version += 1
    return var


def _assign_infer(var: TensorType, value: TensorType) -> TensorType:
    if not compatible(var.shape, value.shape):
        raise ShapeError(f"value shape does not match the variable: got {fmt_shape(value.shape)}, "
                         f"expected {fmt_shape(var.shape)}")  # fmt: skip
    if value.dtype != var.dtype:
        raise DTypeError(f"value dtype does not match the variable: got {value.dtype}, expected {var.dtype}")
    return var


register(OpDef(
    "assign", STATEFUL, _assign_infer, lambda xp, var, value: value, differentiable=False, may_alias=True,
    doc="Set a variable to a new value after the outputs of the call are computed.",
))  # fmt: skip


def assign(var: Tensor, value, name: str | None = None) -> Tensor:
    """An update ``var := value``, applied after the outputs of the call are computed.

    All updates of a call read the values from before the call (as in TF 1.x and Theano). A value
    of another dtype of the same kind (float64 into a float32 variable) is cast.
    """
    if not isinstance(var, Tensor) or var.node.op != "variable":
        raise GraphError(f"assign: target must be a variable: got {var!r}")
    value = as_tensor(value, like=var)
    if value.dtype != var.dtype and can_feed(value.dtype, var.dtype):
        from .elementwise import cast

        value = cast(value, var.dtype)
    return apply("assign", var, value, name=name)


def assign_add(var: Tensor, delta, name: str | None = None) -> Tensor:
    """``var := var + delta``."""
    return assign(var, var + delta, name=name)


def assign_sub(var: Tensor, delta, name: str | None = None) -> Tensor:
    """``var := var - delta``."""
    return assign(var, var - delta, name=name)
