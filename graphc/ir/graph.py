"""IR records: Node (one op application) and Graph (an append-only, topologically ordered list).

Nodes are frozen; a graph only grows, so its node list is always in topological order. Passes
build new graphs instead of mutating nodes. Attributes may hold nested Graphs (control-flow bodies).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from ..errors import GraphError
from .source import Source
from .tensor import Tensor, Variable
from .types import TensorType


class Node:
    """One op application: op name, input tensors, attributes, inferred output types.

    Immutable by convention (passes build new nodes, never edit one); a plain slotted class
    rather than a frozen dataclass because compile time is dominated by creating nodes.
    """

    __slots__ = ("id", "op", "inputs", "attrs", "types", "name", "source", "graph", "outputs")

    def __init__(self, id: int, op: str, inputs: tuple, attrs: dict[str, Any], types: tuple[TensorType, ...],
                 name: str, source: Source | None, graph: Graph):  # fmt: skip
        self.id = id
        self.op = op
        self.inputs = inputs  # tuple[Tensor, ...]
        self.attrs = attrs
        self.types = types
        self.name = name
        self.source = source
        self.graph = graph
        cls = Variable if op == "variable" else Tensor
        self.outputs = tuple([_tensor(cls, self, i) for i in range(len(types))])

    def __repr__(self) -> str:
        return f"Node({self.name!r}, op={self.op})"


def _tensor(cls, node: Node, index: int):
    """A node's output handle, made once (``Tensor(node, i)`` returns this one)."""
    t = object.__new__(cls)
    t.node = node
    t.index = index
    return t


class GraphGrowthWarning(UserWarning):
    """A graph grew between two calls of a function compiled from it (ops built inside a loop)."""


class Graph:
    """A symbolic graph: nodes in creation order, unique names, and the values of its variables.

    Use as a context manager to make it the default graph; a process-wide default graph exists so
    that scripts need not create one.
    """

    def __init__(self, name: str = "graph", private: bool = False, parent: Graph | None = None):
        self.name = name
        # A compiler's private graph: a rewritten node keeps its name (the node it replaces is
        # dead), so names are unique among a program's live nodes, not over the whole graph.
        self.private = private
        # A control-flow body being traced: ops built inside may read tensors of the enclosing
        # graphs, which become parameters (captures) of the body; closed once traced.
        self.parent = parent
        self.tracing = parent is not None
        self.captures: dict[Tensor, Tensor] = {}  # tensor of the parent graph -> parameter here
        self._copies: dict[Tensor, Tensor] = {}  # constant of an enclosing graph -> its copy here
        self.nodes: list[Node] = []
        self._by_name: dict[str, Node] = {}
        self._name_counts: dict[str, int] = {}
        self.variables: dict[str, np.ndarray] = {}  # variable node name -> current value
        # bumped by every write to a variable (updates, var.value = ..., a restored checkpoint):
        # a plan's values computed from variables alone are cached per version
        self.variables_version = 0
        # (trigger tensor, variable, new value): every function whose program computes the
        # trigger also applies the update (a random op's counter, batch norm's running stats)
        self.implicit_updates: list[tuple] = []
        self.scopes: set[str] = set()  # name prefixes taken by layers and optimizers ("dense_1")
        self.lock = threading.Lock()  # guards variable updates from concurrent calls
        self.finalized = False
        self._growth_warned = False

    # -- building ---------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        """``base`` itself if unused, else ``base_1``, ``base_2`` ... (``matmul_3`` numbers on from ``matmul``)."""
        if base not in self._by_name:
            return base
        stem, _, number = base.rpartition("_")
        if stem and number.isdigit():
            base = stem
        n = self._name_counts.get(base, 0)
        while True:
            n += 1
            candidate = f"{base}_{n}"
            if candidate not in self._by_name:
                self._name_counts[base] = n
                return candidate

    def append(self, op: str, inputs: tuple, attrs: dict, types: tuple, name: str | None,
               source: Source | None) -> Node:  # fmt: skip
        """Add a node whose types were already inferred; names must be unique in the graph."""
        if self.finalized:
            raise GraphError(
                f"{op}: graph '{self.name}' is finalized and cannot grow; build every op before "
                f"the training loop and reuse the compiled function"
            )
        if name is not None and name in self._by_name and not self.private:
            raise GraphError(f"{op} '{name}': a node with this name already exists in graph '{self.name}'")
        node = Node(len(self.nodes), op, inputs, attrs, types, name or self.unique_name(op), source, self)
        self.nodes.append(node)
        self._by_name[node.name] = node
        return node

    def unique_scope(self, base: str) -> str:
        """Take a fresh name prefix for a layer or optimizer: ``base``, else ``base_1``, ``base_2`` ...

        A prefix is taken once claimed here or once a node is named ``prefix/...`` (a loaded graph).
        """
        taken = self.scopes | {n.name.split("/", 1)[0] for n in self.nodes if "/" in n.name}
        name, n = base, 0
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        self.scopes.add(name)
        return name

    # -- control-flow bodies ------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Ops may be built here: a top-level graph, or a body while its function is traced."""
        return self.parent is None or self.tracing

    def parameter(self, type: TensorType, name: str, source: Source | None = None) -> Tensor:
        """A new parameter of this body: a placeholder the control-flow op feeds."""
        attrs = {"shape": type.shape, "dtype": type.dtype}
        return self.append("placeholder", (), attrs, (type,), self.unique_name(name), source).outputs[0]

    def capture(self, t: Tensor) -> Tensor:
        """The tensor standing for ``t`` here: ``t`` itself, or (``t`` from an enclosing graph) a
        parameter made once per tensor and level, mapped to ``t`` by the control-flow node.

        Constants are copied instead, so a body keeps what constant folding needs to see.
        """
        if t.graph is self:
            return t
        if self.parent is None or not self.tracing:
            where = f"graph '{t.graph.name}'"
            raise GraphError(
                f"tensor '{t.name}' of {where} cannot be used in graph '{self.name}': a tensor computed "
                f"inside a control-flow body exists only there (return it from the body instead)"
            )
        outer = self.parent.capture(t)  # through every enclosing level
        inner = self.captures.get(outer, self._copies.get(outer))
        if inner is None:
            node = outer.node
            if node.op == "constant":  # not a parameter: a copy the body's passes can fold
                inner = self._copies[outer] = self.append("constant", (), node.attrs, node.types, None,
                                                          node.source).outputs[0]  # fmt: skip
            else:
                name = f"capture_{node.name}" + (f"_{outer.index}" if len(node.outputs) > 1 else "")
                inner = self.captures[outer] = self.parameter(outer.type, name, node.source)
        return inner

    def add_implicit_update(self, trigger, variable, value) -> None:
        """Make every function that computes ``trigger`` also set ``variable`` to ``value``."""
        if variable.node.op != "variable" or trigger.graph is not self or value.graph is not self:
            raise GraphError("add_implicit_update: needs a variable and tensors of this graph")
        self.implicit_updates.append((trigger, variable, value))

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise GraphError(f"graph '{self.name}' has no node named {name!r}") from None

    def tensor(self, ref: str):
        """The tensor named ``ref``: a node's name, or ``name:i`` for output i (e.g. of a loaded graph)."""
        name, _, index = ref.partition(":")
        node = self.node(name)
        i = int(index) if index.isdigit() else 0
        if i >= len(node.outputs):
            raise GraphError(f"node '{name}' has {len(node.outputs)} outputs: no output {i}")
        return node.outputs[i]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.nodes)

    def finalize(self) -> Graph:
        """Make the graph read-only: building another op raises instead of silently growing it."""
        self.finalized = True
        return self

    def warn_growth(self, before: int) -> None:
        """Warn once that the graph grew from ``before`` nodes between two calls of a function."""
        if self._growth_warned:
            return
        self._growth_warned = True
        warnings.warn(
            f"graph '{self.name}' grew from {before} to {len(self.nodes)} nodes between two calls of "
            f"a function compiled from it. Building ops inside a loop adds new nodes on every "
            f"iteration (memory grows, nothing gets faster); build the graph once, compile it, and "
            f"only call the compiled function in the loop. graph.finalize() turns this into an error.",
            GraphGrowthWarning,
            stacklevel=3,
        )

    # -- default graph ----------------------------------------------------------------------
    def __enter__(self) -> Graph:
        _stack().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _stack().pop()

    def __repr__(self) -> str:
        return f"<Graph '{self.name}' with {len(self.nodes)} nodes>"

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)


_DEFAULT = Graph("default")
_local = threading.local()


def _stack() -> list[Graph]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_default_graph() -> Graph:
    """The innermost graph entered with ``with Graph():``, else the process-wide default graph."""
    stack = _stack()
    return stack[-1] if stack else _DEFAULT


def reset_default_graph() -> Graph:
    """Replace the process-wide default graph with an empty one (handy in notebooks and tests)."""
    global _DEFAULT
    _DEFAULT = Graph("default")
    return _DEFAULT
