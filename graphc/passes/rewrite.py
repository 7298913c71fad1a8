"""The rewrite engine: one mechanism every pass uses to rebuild a program node by node.

A pass walks the program in topological order; for each node it sees the node's *rebuilt* inputs
and either copies the node or emits a replacement built with ordinary graphc ops. Replacements
land in a fresh private graph, so consumers see rewritten producers (rules compose in one sweep)
and the user's graph never grows. Every change is recorded as an Event for ``explain``.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from functools import cached_property
from typing import NamedTuple

from ..errors import where
from ..ir import Tensor
from ..ir.source import source_override
from ..ir.types import compatible
from .program import Program


class Event(NamedTuple):
    """One thing a pass did (or chose not to do), for ``explain``."""

    kind: str  # rewrite | merge | fold | fuse | keep
    rule: str  # the rule or reason
    nodes: tuple[str, ...]  # the nodes involved (original names)
    source: str = ""  # the user's line of the first node
    detail: str = ""

    def __str__(self) -> str:
        loc = f"  [{self.source}]" if self.source else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.kind:7s} {self.rule}: {', '.join(self.nodes)}{detail}{loc}"


class Rewriter:
    """Rebuilds a program, copy-on-write: a node is copied only when one of its inputs changed,
    and replacements are appended to the program's own private graph (never the user's)."""

    def __init__(self, program: Program, name: str):
        self.program = program
        self.name = name
        self.graph = program.graph
        self.mapping: dict = {}  # old tensor -> new tensor, for the tensors that changed
        self.events: list = []

    @cached_property
    def users(self) -> dict:
        """node -> its consumers in the program being rewritten (``Program.consumers``), on first use."""
        return self.program.consumers()

    def replace(self, old: Tensor, new: Tensor) -> None:
        self.mapping[old] = new

    def inputs_of(self, node) -> tuple[Tensor, ...]:
        """The node's inputs as rebuilt so far (``node.inputs`` itself when none changed)."""
        m = self.mapping
        inputs = node.inputs
        for t in inputs:  # (a dict lookup: Tensor's == goes through Python, it has <, > ops)
            if t in m:
                return tuple([m.get(t, t) for t in inputs])
        return inputs

    def copy(self, node, inputs=None) -> tuple[Tensor, ...]:
        """Keep ``node`` (on its rebuilt inputs: the node itself when they are unchanged)."""
        inputs = self.inputs_of(node) if inputs is None else inputs
        if inputs is node.inputs or (len(inputs) == len(node.inputs) and all(map(operator.is_, inputs, node.inputs))):
            return node.outputs
        return self.graph.append(node.op, inputs, node.attrs, node.types, node.name, node.source).outputs

    def append(self, op, inputs, attrs, types, name, source) -> tuple[Tensor, ...]:
        """A new node in the private graph; it takes over the name of the node it replaces."""
        return self.graph.append(op, tuple(inputs), attrs, types, name, source).outputs

    def build(self, node, fn: Callable[[], object]):
        """Run ``fn`` to build replacement nodes in the private graph, attributed to ``node``'s source."""
        with self.graph, source_override(node.source):
            return fn()

    def note(self, kind: str, rule: str, nodes, detail: str = "") -> None:
        src = next((n.source for n in nodes if n.source is not None), None)
        self.events.append(Event(kind, rule, tuple([n.name for n in nodes]), "" if src is None else str(src), detail))

    def run(self, visit: Callable, start: int = 0) -> tuple[Program, list[Event]]:
        """Call ``visit(self, node)`` for every non-source node from ``program.nodes[start]`` on (the
        caller knows that visit keeps the ones before); it returns the node's new outputs.

        The new node list is collected by walking back from the outputs, so nodes a rewrite made
        dead are dropped (dead code elimination) and new nodes land in topological order.
        """
        if self.graph is None:
            return self.program, self.events
        first = len(self.graph.nodes)
        for node in itertools.islice(self.program.nodes, start, None):
            if not node.inputs:
                continue
            outs = visit(self, node)
            if outs is not node.outputs:
                for old, new in zip(node.outputs, outs):
                    _check_same_type(node, old, new)
                    if new is not old:
                        self.replace(old, new)
        if not self.mapping and len(self.graph.nodes) == first:
            return self.program, self.events
        m = self.mapping
        outputs = tuple(m.get(t, t) for t in self.program.outputs)
        updates = tuple((name, m.get(t, t)) for name, t in self.program.updates)
        return topological(Program((), outputs, updates), self.program.nodes), self.events


def topological(program: Program, sources=()) -> Program:
    """The nodes the targets need, in an order where inputs come first (node ids grow along every
    edge, since graphs are append-only); ``sources`` (placeholders, variables) are always kept."""
    live = program.needed()
    live.update(n for n in sources if not n.inputs and n.op != "constant")
    nodes = tuple(sorted(live, key=lambda n: n.id))
    return Program(nodes, program.outputs, program.updates)


def _check_same_type(node, old: Tensor, new: Tensor) -> None:
    """A replacement must have the replaced tensor's dtype and a compatible shape."""
    a, b = old.type, new.type
    if a is b or (a.dtype == b.dtype and a.shape == b.shape):
        return
    if b.dtype != a.dtype or not compatible(b.shape, a.shape):
        raise AssertionError(
            f"rewrite of {node.op} '{node.name}' changed its type from {old.type} to {new.type}{where(node.source)}"
        )


Rule = Callable  # rule(rw, node, inputs) -> Tensor | None; its docstring states the identity


def apply_rules(program: Program, rules: dict[str, list[Rule]], pass_name: str) -> tuple[Program, list[Event]]:
    """Rebuild ``program`` applying local rules keyed by op name (the first rule that fires wins)."""

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        table = rules.get(node.op)
        if table:
            with rw.graph, source_override(node.source):
                for rule in table:
                    out = rule(rw, node, inputs)
                    if out is not None:
                        rw.note("rewrite", _identity(rule), [node])
                        return (out,)
        return rw.copy(node, inputs)

    # nodes before the first one with rules keep their inputs, so they are kept as they are
    start = next((i for i, n in enumerate(program.nodes) if n.op in rules), len(program.nodes))
    return Rewriter(program, pass_name).run(visit, start)


def _identity(rule: Rule) -> str:
    """A rule's name is the identity its docstring's first line states."""
    doc = (rule.__doc__ or rule.__name__).strip().splitlines()[0]
    return doc


def producer(t: Tensor, *ops: str):
    """t's node when it was produced by one of ``ops`` (single-output), else None."""
    node = t.node
    return node if node.op in ops and len(node.types) == 1 else None


def constant_value(t: Tensor):
    """The NumPy value of t when it is a constant, else None."""
    return t.node.attrs["value"] if t.node.op == "constant" else None
