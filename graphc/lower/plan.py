"""Plan: the straight-line program a compiled function runs, with no graph work per call.

Every tensor gets a slot in a flat list; each step calls a kernel already bound to its backend
and attributes, reads slots, writes slots, and frees the slots whose last reader it is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..ops.registry import REGISTRY, SOURCE
from ..passes.program import Program


@dataclass(frozen=True)
class Step:
    node: object  # the IR node, for error messages
    fn: object  # kernel bound to xp and attrs: fn(*arrays) -> array | tuple
    args: tuple[int, ...]
    outs: tuple[int, ...]
    free: tuple[int, ...]  # slots dead after this step


@dataclass(frozen=True)
class Plan:
    nslots: int
    feeds: tuple  # (slot, placeholder node)
    variables: tuple  # (slot, variable name)
    constants: tuple  # (slot, array on the device)
    steps: tuple[Step, ...]
    outputs: tuple[int, ...]
    updates: tuple  # (variable name, slot)


def lower(program: Program, backend) -> Plan:
    """Assign slots, bind kernels, and compute where each value dies."""
    slot: dict = {}
    for node in program.nodes:
        for t in node.outputs:
            slot[t] = len(slot)
    keep = {slot[t] for t in program.targets}
    last_use: dict[int, int] = {}
    compute = [n for n in program.nodes if REGISTRY[n.op].kind != SOURCE]
    for i, node in enumerate(compute):
        for t in node.inputs:
            last_use[slot[t]] = i
    steps = []
    for i, node in enumerate(compute):
        kernel = REGISTRY[node.op].kernel
        fn = functools.partial(kernel, backend.xp, **node.attrs) if node.attrs else functools.partial(kernel, backend.xp)
        args = tuple(slot[t] for t in node.inputs)
        free = tuple(sorted({s for s in args if last_use.get(s) == i and s not in keep}))
        steps.append(Step(node, fn, args, tuple(slot[t] for t in node.outputs), free))
    sources = [n for n in program.nodes if REGISTRY[n.op].kind == SOURCE]
    return Plan(
        nslots=len(slot),
        feeds=tuple((slot[n.outputs[0]], n) for n in sources if n.op == "placeholder"),
        variables=tuple((slot[n.outputs[0]], n.name) for n in sources if n.op == "variable"),
        constants=tuple((slot[n.outputs[0]], backend.from_host(n.attrs["value"])) for n in sources if n.op == "constant"),
        steps=tuple(steps),
        outputs=tuple(slot[t] for t in program.outputs),
        updates=tuple((name, slot[t]) for name, t in program.updates),
    )
