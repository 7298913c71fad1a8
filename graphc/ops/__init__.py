"""Ops: the registry and one module per family; each op is one OpDef plus its public function."""

from .elementwise import (
    abs, add, cast, ceil, clip, cos, divide, equal, erf, exp, expm1, floor, greater, greater_equal,
    identity, less, less_equal, log, log1p, logical_and, logical_not, logical_or, logical_xor,
    maximum, minimum, mul_no_nan, multiply, negative, not_equal, ones_like, power, reciprocal, relu,
    round, sigmoid, sigmoid_grad, sign, sin, softplus, sqrt, square, stop_gradient, subtract, tanh,
    tanh_grad, where, zeros_like,
)  # fmt: skip
from . import fused  # noqa: F401  (registers the fused ops)
from .control import cond, foldl, foldr, map_fn, scan, while_loop
from .conv import avg_pool2d, conv2d, flatten, global_avg_pool, max_pool2d
from .linalg import matmul
from .nn import batch_norm, embedding, gelu, layer_norm, log_softmax, softmax, softmax_cross_entropy
from .random import dropout, random_normal, random_uniform
from .reduce import argmax, argmin, logsumexp, max, mean, min, prod, sum
from .registry import REGISTRY, OpDef, apply, get_op
from .shape import (
    broadcast_like, broadcast_to, concatenate, expand_dims, getitem, one_hot, pad, reshape, split,
    squeeze, stack, sum_like, take, transpose,
)  # fmt: skip
from .state import as_tensor, assign, assign_add, assign_sub, constant, placeholder, variable

__all__ = [n for n in dir() if not n.startswith("_")]
