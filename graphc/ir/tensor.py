"""The user's handle on a node output: Tensor, with NumPy-style operators, methods and properties.

Operators build graph nodes through the public op functions in ``graphc.ops``. ``==`` and ``!=``
keep their Python meaning (a Tensor can key a dict, as in TF 1.x); use ``graphc.equal``.
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphcError
from .types import TensorType


def _ops():
    from .. import ops

    return ops


class Tensor:
    """One output of a node. Hashable; two handles on the same output compare equal."""

    __slots__ = ("node", "index")
    __array_ufunc__ = None  # make NumPy defer to our reflected operators (np.float32(2) * t)

    def __init__(self, node, index: int = 0):
        self.node = node
        self.index = index

    # -- identity ---------------------------------------------------------------------------
    # A node makes its output Tensors once (``Node.outputs``) and ``Tensor(node, i)`` returns one
    # of those, so equality and hashing are object identity (object's own, in C: passes hash
    # tensors a lot).
    def __new__(cls, node, index: int = 0):
        outputs = getattr(node, "outputs", None)  # (unset while the node makes them)
        return outputs[index] if outputs is not None else object.__new__(cls)

    __hash__ = object.__hash__
    __eq__ = object.__eq__
    __ne__ = object.__ne__

    def __copy__(self):  # a handle on a graph's node: a copy is the same handle
        return self

    def __deepcopy__(self, memo):
        return self

    # -- static type ------------------------------------------------------------------------
    @property
    def type(self) -> TensorType:
        return self.node.types[self.index]

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.type.shape)

    @property
    def graph(self):
        return self.node.graph

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def name(self) -> str:
        return self.node.name if len(self.node.types) == 1 else f"{self.node.name}:{self.index}"

    def __repr__(self) -> str:
        return f"<Tensor '{self.name}' {self.type} op={self.node.op}>"

    def __bool__(self):
        raise GraphcError(
            f"tensor '{self.name}' is symbolic and has no truth value while the graph is built; "
            f"use graphc.where (or graphc.cond) for data-dependent choices"
        )

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is None:
            raise GraphcError(f"tensor '{self.name}' {self.type}: len() needs a known leading dimension")
        return self.shape[0]

    def __iter__(self):
        raise GraphcError(f"tensor '{self.name}' is symbolic and cannot be iterated; index it or use split")

    def __array__(self, *args, **kwargs):
        raise GraphcError(
            f"tensor '{self.name}' is symbolic and has no value until a compiled function runs; "
            f"use graphc.compile(...) and call it"
        )

    # -- operators --------------------------------------------------------------------------
    def __add__(self, o):  return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o):  return _ops().subtract(self, o)
    def __rsub__(self, o): return _ops().subtract(o, self)
    def __mul__(self, o):  return _ops().multiply(self, o)
    def __rmul__(self, o): return _ops().multiply(o, self)
    def __truediv__(self, o):  return _ops().divide(self, o)
    def __rtruediv__(self, o): return _ops().divide(o, self)
    def __pow__(self, o):  return _ops().power(self, o)
    def __rpow__(self, o): return _ops().power(o, self)
    def __matmul__(self, o):  return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __neg__(self): return _ops().negative(self)
    def __pos__(self): return self
    def __abs__(self): return _ops().abs(self)
    def __lt__(self, o): return _ops().less(self, o)
    def __le__(self, o): return _ops().less_equal(self, o)
    def __gt__(self, o): return _ops().greater(self, o)
    def __ge__(self, o): return _ops().greater_equal(self, o)
    def __and__(self, o):  return _ops().logical_and(self, o)
    def __rand__(self, o): return _ops().logical_and(o, self)
    def __or__(self, o):   return _ops().logical_or(self, o)
    def __ror__(self, o):  return _ops().logical_or(o, self)
    def __xor__(self, o):  return _ops().logical_xor(self, o)
    def __rxor__(self, o): return _ops().logical_xor(o, self)
    def __invert__(self):  return _ops().logical_not(self)
    def __getitem__(self, index): return _ops().getitem(self, index)  # fmt: skip

    # -- NumPy-style methods ----------------------------------------------------------------
    @property
    def T(self):
        return _ops().transpose(self)

    def reshape(self, *shape):
        return _ops().reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def transpose(self, *axes):
        return _ops().transpose(self, (axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes) or None)

    def astype(self, dtype):
        return _ops().cast(self, dtype)

    def sum(self, axis=None, keepdims=False):
        return _ops().sum(self, axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops().mean(self, axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops().max(self, axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return _ops().min(self, axis, keepdims=keepdims)

    def prod(self, axis=None, keepdims=False):
        return _ops().prod(self, axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return _ops().argmax(self, axis)

    def argmin(self, axis=None):
        return _ops().argmin(self, axis)

    def squeeze(self, axis=None):
        return _ops().squeeze(self, axis)


class Variable(Tensor):
    """A tensor whose value persists across calls; read and set it with ``.value``."""

    __slots__ = ()

    @property
    def value(self) -> np.ndarray:
        """A copy of the current value (later updates never change an array you hold)."""
        with self.graph.lock:  # never a half-written in-place update
            return self.graph.variables[self.node.name].copy()

    @value.setter
    def value(self, new) -> None:
        from ..runtime.variables import set_variable

        set_variable(self, new)

    def assign(self, value):
        return _ops().assign(self, value)

    def assign_add(self, delta):
        return _ops().assign_add(self, delta)

    def assign_sub(self, delta):
        return _ops().assign_sub(self, delta)

    def __repr__(self) -> str:
        return f"<Variable '{self.name}' {self.type}>"
