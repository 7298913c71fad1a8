"""Layers: Keras-style callables that build graph nodes (Tensor in, Tensor out) and own variables.

Training and inference: one graph, two calls, shared weights
-------------------------------------------------------------
A layer is called as ``layer(x, training=False)``. The first call creates the layer's variables
in ``x``'s graph, sized from ``x``'s static shape (the feature or channel dims must be known; the
batch dim may be ``None``), and names them ``<layer>/<variable>`` with a layer name that is unique
in the graph (``dense/kernel``, ``dense_1/kernel``, ...). Every later call reuses them. So the
usual program calls the model twice while building the graph and compiles two functions::

    model = gc.nn.Sequential([gc.nn.Dense(128, "relu"), gc.nn.Dropout(0.2), gc.nn.Dense(10)])
    x = gc.placeholder((None, 784), name="x")
    y = gc.placeholder((None,), "int64", name="y")
    loss = gc.nn.losses.softmax_cross_entropy(model(x, training=True), y)  # dropout on, BN batch stats
    probs = gc.softmax(model(x, training=False))                          # dropout off, BN running stats
    train_step = gc.compile(loss, updates=gc.optim.Adam(1e-3).minimize(loss))
    predict = gc.compile(probs)

``training`` is a Python bool chosen when the graph is built, never a run-time feed: each mode is
its own subgraph, so the compiler optimizes each without branches, and a function compiled from
the inference output contains no dropout or statistics update at all. Both subgraphs read the same
variables, so the inference function always sees the weights the train step just wrote. State that
training mode changes besides the weights (batch norm's running statistics, dropout's random
state) is updated by every function that computes the training-mode output (graph implicit
updates), and is a variable too, so checkpoints hold it.

A layer belongs to the graph of its first call. Variable values are drawn by ``graphc.nn.init``
from a Generator seeded with the layer's ``seed``, or, without one, from its unique name, so the
same model code always starts from the same weights.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .. import ops
from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Tensor, Variable
from ..ir.types import fmt_shape
from . import init as initializers

ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "gelu")


def get_activation(activation):
    """An activation by name (one of ``ACTIVATIONS``, or ``None``/``"linear"``) or a callable as is."""
    if activation is None or activation == "linear":
        return None
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise GraphError(f"unknown activation {activation!r}: expected a callable, None or one of {ACTIVATIONS}")
    return getattr(ops, activation)


def _pair(v, what: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in pair):
        raise GraphError(f"{what} must be a positive int or a pair of them: got {v!r}")
    return int(pair[0]), int(pair[1])


class Layer:
    """Base of every layer: naming, lazy variable creation, the graph it belongs to.

    Subclasses set ``kind`` (the default name) and define ``call(x, training)``, and ``build(x)``
    when they own variables.
    """

    kind = "layer"

    def __init__(self, name: str | None = None, seed: int | None = None):
        self.name = name  # final (unique in the graph) after the first call
        self.seed = seed
        self.graph = None
        self.built = False
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        self._variables: list[Variable] = []
        self._rng: np.random.Generator | None = None

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        if not isinstance(x, Tensor):
            raise GraphError(f"{self._label()}: input must be a graphc Tensor: got {type(x).__name__}")
        if not isinstance(training, (bool, np.bool_)):
            raise GraphError(f"{self._label()}: training must be a Python bool (the mode is chosen when the "
                             f"graph is built): got {type(training).__name__}")  # fmt: skip
        if self.graph is None:
            self._claim_name(x.graph)
        elif x.graph is not self.graph:
            raise GraphError(f"{self._label()}: the layer belongs to graph '{self.graph.name}': got an input of "
                             f"graph '{x.graph.name}'")  # fmt: skip
        training = bool(training)
        with self.graph:
            if not self.built:
                self.input_shape = x.shape
                self.build(x)
                self.built = True
            y = self.call(x, training)
        if self.output_shape is None:
            self.output_shape = y.shape
        return y

    def build(self, x: Tensor) -> None:
        """Create the layer's variables from the first input (nothing for stateless layers)."""

    def call(self, x: Tensor, training: bool) -> Tensor:
        """The layer's output for ``x`` (every layer class defines it)."""
        raise GraphError(f"{type(self).__name__}: a Layer subclass must define call(self, x, training)")

    def _claim_name(self, graph) -> None:
        name = graph.unique_scope(self.name or self.kind)
        if self.name is not None and name != self.name:
            raise GraphError(f"{self.kind} '{self.name}': a layer or optimizer of this name already exists in "
                             f"graph '{graph.name}'")  # fmt: skip
        self.graph, self.name = graph, name
        seed = self.seed if self.seed is not None else zlib.crc32(name.encode())
        self._rng = np.random.default_rng(seed)

    # -- variables --------------------------------------------------------------------------
    def add_variable(self, name: str, shape, initializer, dtype, trainable: bool = True) -> Variable:
        """Create ``<layer>/<name>`` with a value from ``initializer`` (a name or a callable)."""
        value = initializers.get(initializer)(tuple(shape), seed=self._rng, dtype=dtype)
        var = ops.variable(value, name=f"{self.name}/{name}", trainable=trainable)
        self._variables.append(var)
        return var

    @property
    def variables(self) -> list[Variable]:
        """Every variable the layer owns (weights, running statistics), in creation order."""
        return list(self._variables)

    @property
    def trainable_variables(self) -> list[Variable]:
        return [v for v in self.variables if v.node.attrs.get("trainable", True)]

    def count_params(self) -> int:
        return sum(math.prod(v.shape) for v in self.variables)

    # -- helpers ----------------------------------------------------------------------------
    def _label(self) -> str:
        return f"{self.kind} '{self.name}'" if self.name else self.kind

    def _dim(self, x: Tensor, axis: int, what: str) -> int:
        """A dim of the input that must be known to size the variables."""
        if not -x.ndim <= axis < x.ndim:
            raise ShapeError(f"{self._label()}: input of rank {x.ndim} has no {what} (axis {axis}): "
                             f"got {fmt_shape(x.shape)}")  # fmt: skip
        d = x.shape[axis]
        if d is None:
            raise ShapeError(f"{self._label()}: the input's {what} (axis {axis}) must be known to create the "
                             f"variables: got {fmt_shape(x.shape)}")  # fmt: skip
        return d

    def _check_dim(self, x: Tensor, axis: int, expected: int, what: str) -> None:
        """A later call must bring the dim the variables were made for."""
        d = x.shape[axis] if -x.ndim <= axis < x.ndim else "missing"
        if d is not None and d != expected:
            raise ShapeError(f"{self._label()}: input {what} (axis {axis}) does not match the layer's "
                             f"variables: got {fmt_shape(x.shape)}, expected {what} {expected}")  # fmt: skip

    def _float_dtype(self, x: Tensor) -> np.dtype:
        if x.dtype.kind != "f":
            raise DTypeError(f"{self._label()}: input must be float: got {x.dtype}")
        return x.dtype

    def __repr__(self) -> str:
        return f"<{type(self).__name__} '{self.name or '(unbuilt)'}'>"


# -- layers with weights -------------------------------------------------------------------------
class Dense(Layer):
    """``activation(x @ kernel + bias)`` over the last axis; kernel (in, units), bias (units,)."""

    kind = "dense"

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed: int | None = None, name: str | None = None):  # fmt: skip
        super().__init__(name, seed)
        self.units = int(units)
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, x):
        dtype = self._float_dtype(x)
        self.kernel = self.add_variable("kernel", (self._dim(x, -1, "feature dim"), self.units),
                                        self.kernel_initializer, dtype)  # fmt: skip
        self.bias = self.add_variable("bias", (self.units,), self.bias_initializer, dtype) if self.use_bias else None

    def call(self, x, training):
        self._check_dim(x, -1, self.kernel.shape[0], "feature dim")
        y = ops.matmul(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y) if self.activation else y


class Conv2D(Layer):
    """2-D convolution over NCHW input (``graphc.conv2d``); kernel (filters, C // groups, kh, kw)."""

    kind = "conv2d"

    def __init__(self, filters: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed: int | None = None, name: str | None = None):  # fmt: skip
        super().__init__(name, seed)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, int(groups)
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, x):
        dtype = self._float_dtype(x)
        if x.ndim != 4:
            raise ShapeError(f"{self._label()}: input must be NCHW (rank 4): got {fmt_shape(x.shape)}")
        channels = self._dim(x, 1, "channel dim")
        if channels % self.groups or self.filters % self.groups:
            raise ShapeError(f"{self._label()}: channels {channels} and filters {self.filters} must both be "
                             f"divisible by groups {self.groups}")  # fmt: skip
        shape = (self.filters, channels // self.groups, *self.kernel_size)
        self.kernel = self.add_variable("kernel", shape, self.kernel_initializer, dtype)
        self.bias = self.add_variable("bias", (self.filters,), self.bias_initializer, dtype) if self.use_bias else None

    def call(self, x, training):
        self._check_dim(x, 1, self.kernel.shape[1] * self.groups, "channel dim")
        y = ops.conv2d(x, self.kernel, stride=self.stride, padding=self.padding, dilation=self.dilation,
                       groups=self.groups)  # fmt: skip
        if self.bias is not None:
            y = y + ops.reshape(self.bias, (self.filters, 1, 1))
        return self.activation(y) if self.activation else y


class BatchNorm(Layer):
    """Batch normalization over ``axis`` (channels of NCHW, features of (N, F)).

    Training mode normalizes with the batch's statistics and updates the running ones
    (``running = (1 - momentum) * running + momentum * batch``, as PyTorch); inference mode uses
    the running statistics.
    """

    kind = "batch_norm"

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, axis: int = 1, name: str | None = None):
        super().__init__(name)
        self.momentum, self.eps, self.axis = momentum, eps, axis

    def build(self, x):
        dtype = self._float_dtype(x)
        n = self._dim(x, self.axis, "feature dim")
        self.gamma = self.add_variable("gamma", (n,), "ones", dtype)
        self.beta = self.add_variable("beta", (n,), "zeros", dtype)
        self.running_mean = self.add_variable("running_mean", (n,), "zeros", dtype, trainable=False)
        self.running_var = self.add_variable("running_var", (n,), "ones", dtype, trainable=False)

    def call(self, x, training):
        self._check_dim(x, self.axis, self.gamma.shape[0], "feature dim")
        return ops.batch_norm(x, self.gamma, self.beta, self.running_mean, self.running_var, training,
                              momentum=self.momentum, eps=self.eps, axis=self.axis)  # fmt: skip


class LayerNorm(Layer):
    """Layer normalization over the last axis, with a learned scale (gamma) and shift (beta)."""

    kind = "layer_norm"

    def __init__(self, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        self.eps = eps

    def build(self, x):
        dtype = self._float_dtype(x)
        n = self._dim(x, -1, "feature dim")
        self.gamma = self.add_variable("gamma", (n,), "ones", dtype)
        self.beta = self.add_variable("beta", (n,), "zeros", dtype)

    def call(self, x, training):
        self._check_dim(x, -1, self.gamma.shape[0], "feature dim")
        return ops.layer_norm(x, self.gamma, self.beta, axis=-1, eps=self.eps)


class Embedding(Layer):
    """Rows of a (num, dim) table looked up by integer ids: (...,) ids -> (..., dim)."""

    kind = "embedding"

    def __init__(self, num: int, dim: int, embeddings_initializer="normal", dtype="float32",
                 seed: int | None = None, name: str | None = None):  # fmt: skip
        super().__init__(name, seed)
        self.num, self.dim, self.dtype = int(num), int(dim), dtype
        self.embeddings_initializer = embeddings_initializer

    def build(self, x):
        if x.dtype.kind not in "iu":
            raise DTypeError(f"{self._label()}: ids must be integers: got {x.dtype}")
        self.table = self.add_variable("table", (self.num, self.dim), self.embeddings_initializer, self.dtype)

    def call(self, x, training):
        return ops.embedding(x, self.table)


# -- stateless layers ----------------------------------------------------------------------------
class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs and scale the rest by ``1 / (1 - rate)`` when training.

    Inference mode returns the input unchanged. The random state is seeded from ``seed`` (or the
    layer's name) and advances at every call of a function that computes the training output.
    """

    kind = "dropout"

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None):
        super().__init__(name, seed)
        if not 0 <= rate < 1:
            raise GraphError(f"Dropout: rate must lie in [0, 1): got {rate!r}")
        self.rate = float(rate)

    def call(self, x, training):
        if not training or self.rate == 0:
            return x
        seed = self.seed if self.seed is not None else zlib.crc32(self.name.encode())
        name = self.graph.unique_name(f"{self.name}/dropout")  # its counter: "dropout/dropout_counter"
        return ops.dropout(x, self.rate, seed=seed, training=True, name=name)


class MaxPool2D(Layer):
    """Max pooling over NCHW windows (``graphc.max_pool2d``); stride defaults to the window."""

    kind = "max_pool2d"

    def __init__(self, kernel_size, stride=None, padding=0, name: str | None = None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def call(self, x, training):
        return ops.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)


class AvgPool2D(Layer):
    """Average pooling over NCHW windows (``graphc.avg_pool2d``); stride defaults to the window."""

    kind = "avg_pool2d"

    def __init__(self, kernel_size, stride=None, padding=0, name: str | None = None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def call(self, x, training):
        return ops.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)


class GlobalAvgPool2D(Layer):
    """Mean over the spatial dims: (N, C, H, W) -> (N, C)."""

    kind = "global_avg_pool"

    def call(self, x, training):
        return ops.global_avg_pool(x)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    kind = "flatten"

    def call(self, x, training):
        return ops.flatten(x)


class Activation(Layer):
    """An activation as a layer: a name from ``ACTIVATIONS`` or any callable Tensor -> Tensor."""

    kind = "activation"

    def __init__(self, activation, name: str | None = None):
        super().__init__(name)
        self.fn = get_activation(activation)
        if isinstance(activation, str):
            self.kind = activation

    def call(self, x, training):
        return self.fn(x) if self.fn else x


class ReLU(Layer):
    kind = "relu"

    def call(self, x, training):
        return ops.relu(x)


class Sigmoid(Layer):
    kind = "sigmoid"

    def call(self, x, training):
        return ops.sigmoid(x)


class Tanh(Layer):
    kind = "tanh"

    def call(self, x, training):
        return ops.tanh(x)


class Softmax(Layer):
    kind = "softmax"

    def __init__(self, axis: int = -1, name: str | None = None):
        super().__init__(name)
        self.axis = axis

    def call(self, x, training):
        return ops.softmax(x, self.axis)


class GELU(Layer):
    kind = "gelu"

    def __init__(self, approximate: str = "none", name: str | None = None):
        super().__init__(name)
        self.approximate = approximate

    def call(self, x, training):
        return ops.gelu(x, approximate=self.approximate)


# -- containers ----------------------------------------------------------------------------------
class Sequential(Layer):
    """Layers applied in order; its variables are theirs."""

    kind = "sequential"

    def __init__(self, layers=(), name: str | None = None):
        super().__init__(name)
        self.layers: list[Layer] = []
        for layer in layers:
            self.add(layer)

    def add(self, layer: Layer) -> Sequential:
        if not isinstance(layer, Layer):
            raise GraphError(f"Sequential: expected a graphc.nn layer: got {type(layer).__name__}")
        if self.built:
            raise GraphError(f"sequential '{self.name}': cannot add layers after the model was called")
        self.layers.append(layer)
        return self

    def call(self, x, training):
        for layer in self.layers:
            x = layer(x, training=training)
        return x

    @property
    def variables(self) -> list[Variable]:
        return [v for layer in self.layers for v in layer.variables]

    def summary(self) -> str:
        """A table of the layers: name (type), output shape, parameter count; and the totals."""
        rows = [("layer (type)", "output shape", "params")]
        for layer in self.layers:
            shape = "?" if layer.output_shape is None else fmt_shape(layer.output_shape)
            params = f"{layer.count_params():,}" if layer.built else "?"
            rows.append((f"{layer.name or '(unbuilt)'} ({type(layer).__name__})", shape, params))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2].rjust(widths[2])}" for r in rows]
        rule = "-" * len(lines[0])
        total = sum(layer.count_params() for layer in self.layers)
        trainable = sum(math.prod(v.shape) for layer in self.layers for v in layer.trainable_variables)
        head = f'Model: "{self.name or "(unbuilt)"}"'
        totals = f"total params: {total:,} (trainable {trainable:,}, non-trainable {total - trainable:,})"
        unbuilt = [] if self.built else ["(not built: call the model on an input to create its variables)"]
        return "\n".join([head, rule, lines[0], rule, *lines[1:], rule, totals, *unbuilt])

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]
