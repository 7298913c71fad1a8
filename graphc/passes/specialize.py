"""Specialize: give every placeholder the shape it was fed and re-infer all types (all static).

Control-flow bodies are specialized with their node, to the types it feeds them (recursively).

A function compiled with unknown dims is specialized on its first call with each new
input-shape signature; the static program then gets the shape-dependent passes (fusion, memory
planning), and the resulting plan is cached.
"""

from __future__ import annotations

from ..errors import DTypeError, ExecutionError, ShapeError, where
from ..ir import Graph, Subgraph, TensorType
from ..ir.keys import freeze
from ..ir.subgraph import subgraphs
from ..ir.types import fmt_shape
from ..ops.registry import REGISTRY, SOURCE
from .program import Program


def isolate(program: Program) -> Program:
    """A copy of the program in a private graph, so that passes never touch the user's graph."""
    return specialize(program, None)


def specialize(program: Program, shapes: dict[str, tuple] | None) -> Program:
    """The program with placeholder ``name`` given shape ``shapes[name]`` and types re-inferred,
    in a new private graph (``shapes=None``: an exact copy)."""
    if shapes is not None and all(ty.is_static for n in program.nodes for ty in n.types) and all(
        n.types[0].shape == tuple(shapes[n.name]) for n in program.placeholders()
    ):
        return program  # already static with these very shapes
    graph = Graph("specialized" if shapes is not None else "private", private=True)
    mapping = {}
    constants = {}  # equal constants become one node while copying (graphs repeat 0, 1, 2 ...)
    for node in program.nodes:
        if node.op == "constant":
            key = freeze(node.attrs)
            if key in constants:
                mapping[node.outputs[0]] = constants[key]
                continue
        inputs = tuple(mapping[t] for t in node.inputs)
        attrs, types = node.attrs, node.types
        if REGISTRY[node.op].body_types is not None:  # control flow: its bodies get the types it feeds
            attrs = _bodies(node, inputs, shapes is None)
        if shapes is None:
            pass
        elif node.op == "placeholder":
            shape = tuple(shapes[node.name])
            attrs = {**attrs, "shape": shape}
            types = (TensorType(shape, node.types[0].dtype),)
        elif REGISTRY[node.op].kind != SOURCE:
            try:
                types = REGISTRY[node.op].infer(*(t.type for t in inputs), **attrs)
            except (ShapeError, DTypeError) as e:
                fed = ", ".join(f"{k}={fmt_shape(v)}" for k, v in sorted(shapes.items()))
                raise ExecutionError(f"{node.op} '{node.name}': {e}: with feeds {fed}{where(node.source)}") from None
            types = (types,) if isinstance(types, TensorType) else tuple(types)
        new = graph.append(node.op, inputs, attrs, types, node.name, node.source)
        mapping.update(zip(node.outputs, new.outputs))
        if node.op == "constant":
            constants[freeze(node.attrs)] = new.outputs[0]
    return Program(
        tuple(graph.nodes), tuple(mapping[t] for t in program.outputs),
        tuple((name, mapping[t]) for name, t in program.updates),
    )  # fmt: skip


def _bodies(node, inputs, copy: bool) -> dict:
    """The node's attributes with each body copied into a private graph (``copy``), or specialized
    to the parameter types the node now feeds it (its op's ``body_types``)."""
    attrs = dict(node.attrs)
    if copy:
        types = {k: None for k, _ in subgraphs(node)}
    else:
        types = REGISTRY[node.op].body_types(*(t.type for t in inputs), **attrs)
    for k, param_types in types.items():
        sub = attrs[k]
        shapes = None if param_types is None else {p.node.name: t.shape for p, t in zip(sub.params, param_types)}
        body = specialize(Program(sub.nodes, sub.outputs), shapes)
        by_name = {n.name: n for n in body.nodes if n.op == "placeholder"}
        attrs[k] = Subgraph(body.graph or sub.graph, tuple(by_name[p.node.name].outputs[0] for p in sub.params),
                            body.outputs)  # fmt: skip
    return attrs
