"""graphc: declare a tensor graph once, differentiate it symbolically, compile it, run it many times.

    import graphc as gc
    x = gc.placeholder((None, 784), name="x")
    w = gc.variable(np.zeros((784, 10), "float32"), name="w")
    loss = gc.mean(gc.sum((x @ w) ** 2, axis=1))
    step = gc.compile(loss, updates=[(w, w - 0.1 * gc.grad(loss, w))])
    step(x=batch)
"""

from .autodiff import grad
from .compiler import compile
from .errors import (
    CompileError, DTypeError, ExecutionError, FeedError, FormatError, GradientError, GraphcError,
    GraphError, NativeWarning, NumericsError, ShapeError,
)  # fmt: skip
from .ir import Graph, GraphGrowthWarning, Tensor, Variable, get_default_graph, reset_default_graph
from .ops import (
    abs, add, argmax, argmin, assign, assign_add, assign_sub, avg_pool2d, batch_norm, broadcast_to, cast,
    ceil, clip, concatenate, constant, conv2d, cos, divide, dropout, embedding, equal, erf, exp,
    expand_dims, expm1, flatten, floor, gelu, global_avg_pool, greater, greater_equal, identity,
    layer_norm, less, less_equal, log, log1p, log_softmax, logical_and, logical_not, logical_or,
    logical_xor, logsumexp, matmul, max, max_pool2d, maximum, mean, min, minimum, multiply, negative,
    not_equal, one_hot, ones_like, pad, placeholder, power, prod, random_normal, random_uniform,
    reciprocal, relu, reshape, round, sigmoid, sign, sin, softmax, softmax_cross_entropy, softplus,
    split, sqrt, square, squeeze, stack, stop_gradient, subtract, sum, take, tanh, transpose, variable,
    where, zeros_like,
)  # fmt: skip
from .ops import cond, foldl, foldr, map_fn, scan, while_loop  # control flow (ops/control.py)
from .runtime import Function
from .serialize import LoadLimits, load, restore_checkpoint, save, save_checkpoint
from . import data, nn, optim  # layers, optimizers, the data pipeline (no heavy imports: tqdm is lazy)

__version__ = "0.1.0"

__all__ = [n for n in dir() if not n.startswith("_")]
