"""Variable values: converting and storing a value a user sets on a variable."""

from __future__ import annotations

import numpy as np

from ..dtypes import can_feed
from ..errors import GraphcError
from ..ir.types import fmt_shape


def convert_value(value, shape, dtype, what: str, error=GraphcError) -> np.ndarray:
    """``value`` as an array of ``dtype`` checked against ``shape`` (None dims match any size).

    Same-kind conversions (float64 data for float32) are made; cross-kind ones (floats for an
    integer tensor) raise ``error`` naming ``what``.
    """
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and other objects NumPy cannot turn into an array
        raise error(f"{what}: cannot convert {type(value).__name__} to an array: {e}") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise error(f"{what}: expected numeric data of dtype {dtype}: got {arr.dtype}")
    if arr.dtype != dtype:
        if not can_feed(arr.dtype, dtype):
            raise error(f"{what}: cannot convert {arr.dtype} data to {dtype}: got dtype {arr.dtype}, expected {dtype}")
        arr = arr.astype(dtype)
    if arr.ndim != len(shape) or any(d is not None and d != a for d, a in zip(shape, arr.shape)):
        raise error(f"{what}: wrong shape: got {fmt_shape(arr.shape)}, expected {fmt_shape(shape)}")
    return arr


def set_variable(var, value) -> None:
    """Set a variable's value (a private copy, so later changes to ``value`` do not leak in)."""
    t = var.type
    arr = convert_value(value, t.shape, t.dtype, f"variable '{var.name}'")
    with var.graph.lock:
        var.graph.variables[var.node.name] = np.array(arr, copy=True)
        var.graph.variables_version += 1
