"""Hashable, exact keys for node attributes: what makes two nodes identical (merge, kernel sharing)."""

from __future__ import annotations

import hashlib

import numpy as np

from .graph import Graph


def freeze(value):
    """A hashable, exact key for an attribute value (arrays by dtype, shape and content)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, hashlib.sha1(np.ascontiguousarray(value).tobytes()).digest())
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, Graph):
        return ("graph", id(value))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value


def attrs_key(attrs: dict):
    """freeze(attrs), fast for the common case of small hashable attributes."""
    try:
        key = tuple(sorted(attrs.items()))
        hash(key)
        return key
    except TypeError:
        return freeze(attrs)
