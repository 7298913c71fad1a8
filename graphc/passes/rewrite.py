"""The rewrite engine: one mechanism every pass uses to rebuild a program node by node.

A pass walks the program in topological order; for each node it sees the node's *rebuilt* inputs
and either copies the node or emits a replacement built with ordinary graphc ops. Replacements
land in a fresh private graph, so consumers see rewritten producers (rules compose in one sweep)
and the user's graph never grows. Every change is recorded as an Event for ``explain``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import where
from ..ir import Graph, Tensor
from ..ir.source import source_override
from ..ir.types import compatible
from ..ops.registry import SOURCE, REGISTRY
from .program import Program


@dataclass(frozen=True)
class Event:
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


@dataclass
class Rewriter:
    """Rebuilds a program into a fresh graph; subclasses or callbacks decide per node."""

    program: Program
    name: str
    graph: Graph = field(init=False)
    mapping: dict = field(init=False, default_factory=dict)
    events: list = field(init=False, default_factory=list)

    def __post_init__(self):
        self.graph = Graph(f"{self.name}")
        # Sources first, under their own names: feeds and variables are looked up by name.
        for node in self.program.nodes:
            if REGISTRY[node.op].kind == SOURCE:
                self.mapping.update(zip(node.outputs, self._copy(node, ())))

    def _copy(self, node, inputs) -> tuple[Tensor, ...]:
        name = node.name if node.name not in self.graph else self.graph.unique_name(node.name)
        new = self.graph.append(node.op, tuple(inputs), node.attrs, node.types, name, node.source)
        return new.outputs

    def inputs_of(self, node) -> tuple[Tensor, ...]:
        return tuple(self.mapping[t] for t in node.inputs)

    def copy(self, node, inputs=None) -> tuple[Tensor, ...]:
        """Keep ``node`` as it is (on rebuilt inputs)."""
        return self._copy(node, self.inputs_of(node) if inputs is None else inputs)

    def build(self, node, fn: Callable[[], object]):
        """Run ``fn`` to build replacement nodes in the new graph, attributed to ``node``'s source."""
        with self.graph, source_override(node.source):
            return fn()

    def note(self, kind: str, rule: str, nodes, detail: str = "") -> None:
        nodes = list(nodes)
        src = next((str(n.source) for n in nodes if n.source is not None), "")
        self.events.append(Event(kind, rule, tuple(n.name for n in nodes), src, detail))

    def run(self, visit: Callable) -> tuple[Program, list[Event]]:
        """Call ``visit(self, node)`` for every non-source node; it returns the node's new outputs."""
        for node in self.program.nodes:
            if node.outputs[0] in self.mapping:
                continue
            outs = visit(self, node)
            for old, new in zip(node.outputs, outs):
                _check_same_type(node, old, new)
            self.mapping.update(zip(node.outputs, outs))
        m = self.mapping
        program = Program(
            tuple(self.graph.nodes), tuple(m[t] for t in self.program.outputs),
            tuple((name, m[t]) for name, t in self.program.updates),
        )  # fmt: skip
        return program, self.events


def _check_same_type(node, old: Tensor, new: Tensor) -> None:
    """A replacement must have the replaced tensor's dtype and a compatible shape."""
    if new.dtype != old.dtype or not compatible(new.shape, old.shape):
        raise AssertionError(
            f"rewrite of {node.op} '{node.name}' changed its type from {old.type} to {new.type}{where(node.source)}"
        )


Rule = Callable  # rule(rw, node, inputs) -> Tensor | None; its docstring states the identity


def apply_rules(program: Program, rules: dict[str, list[Rule]], pass_name: str) -> tuple[Program, list[Event]]:
    """Rebuild ``program`` applying local rules keyed by op name (the first rule that fires wins)."""

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        for rule in rules.get(node.op, ()):
            out = rw.build(node, lambda: rule(rw, node, inputs))
            if out is not None:
                rw.note("rewrite", _identity(rule), [node])
                return (out,)
        return rw.copy(node, inputs)

    return Rewriter(program, pass_name).run(visit)


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
