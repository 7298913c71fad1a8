"""graphc.nn: layers that build graph nodes and own variables, initializers, losses, metrics, fit.

See ``graphc.nn.layers`` for the training-vs-inference design: one graph, the model called once
with ``training=True`` (train step) and once with ``training=False`` (inference), sharing weights.
"""

from . import init, losses, metrics
from .fit import History, evaluate, fit
from .layers import (
    Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Embedding, Flatten, GELU, GlobalAvgPool2D, Layer,
    LayerNorm, MaxPool2D, ReLU, Sequential, Sigmoid, Softmax, Tanh,
)  # fmt: skip

__all__ = [n for n in dir() if not n.startswith("_")]
