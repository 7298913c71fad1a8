"""Plan: the straight-line program a compiled function runs for one input-shape signature.

``lower`` takes a static-shape Program and a backend and decides everything once: the schedule,
which update is written in place into its variable, the memory plan, and the Python source of
the run function (``codegen``), which calls kernels already bound to the backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..ir.keys import attrs_key
from ..ops.registry import REGISTRY, SOURCE, foldable
from ..passes.program import Program
from .codegen import generate
from .memory import MemoryPlan, nbytes, plan_memory


@dataclass(frozen=True)
class Step:
    node: object  # the IR node (for errors and explain)
    kernel: object  # bound kernel: kernel(*arrays, out=...) -> array | tuple
    args: tuple[int, ...]  # value ids read
    outs: tuple[int, ...]  # value ids written
    out_buffer: int | None = None  # arena slot passed as out= (a view of a planned buffer)
    out_variable: int | None = None  # variable index written in place (an SGD-style update)
    prepared: bool = False  # run by Plan.prepare (once per version of the variables), not per call


@dataclass(frozen=True)
class Plan:
    program: Program
    feeds: tuple  # (value id, placeholder name)
    variables: tuple  # (value id, variable name)
    constants: tuple  # (value id, device array)
    steps: tuple[Step, ...]
    outputs: tuple[int, ...]
    updates: tuple  # (variable name, value id) not written in place
    memory: MemoryPlan
    arena_layout: tuple  # arena slot -> (buffer index, shape, dtype)
    source: str  # the generated run function
    run: object  # run(F, V, C, B) -> (outputs, update values)
    line_to_step: dict
    feed_order: tuple  # for each feed, its index among the function's placeholders
    feeds_in_order: bool  # feed_order is 0, 1, 2 ...
    variable_names: tuple
    constant_values: tuple
    dynamic_updates: bool  # an update's shape is known only at run time (the executor checks it)
    # prepare(V, C) -> the values that depend on variables and constants only (a BN's rsqrt of its
    # running variance, a bias reshaped for broadcasting), which ``run`` reads after the constants
    # in C; the executor calls it once per version of the graph's variables. None: no such values.
    prepare: object = None


def _inplace_updates(program: Program, compute: list) -> dict:
    """update value tensor -> variable name, for updates safe to write into the variable itself.

    Safe when the value's kernel accepts ``out=``, nothing else reads the value, it is not an
    output, the kernel reads the variable itself only as inputs it reads element by element (all
    of an elementwise op's, a fused matmul's epilogue inputs: OpDef.elementwise_from) or does not
    read it, and no other in-place update reads the variable (they all run last). Reading a view
    of a variable (its transpose) counts as reading it, and is not element by element.
    """
    users = program.consumers()
    var_node = {n.name: n for n in program.nodes if n.op == "variable"}
    cands = {}
    for name, t in program.updates:
        node = t.node
        if name not in var_node:
            continue  # the function never reads this variable, so it has no array to write into
        opdef = REGISTRY[node.op]
        reads = [(k, i) for k, i in enumerate(node.inputs) if _storage(i) is var_node[name]]
        first = 0 if opdef.writes_inplace else opdef.elementwise_from
        elementwise = first is not None and all(k >= first and i.node is var_node[name] for k, i in reads)
        if (opdef.writes_out and len(node.types) == 1 and len(users[node]) == 1
                and node.types[0] == var_node[name].types[0] and (elementwise or not reads)):  # fmt: skip
            cands[t] = name
    readers = {t: {_storage(i).name for i in t.node.inputs if _storage(i).op == "variable"} for t in cands}
    return {t: name for t, name in cands.items() if not any(name in readers[o] for o in cands if o != t)}


def _storage(t):
    """The node whose array ``t`` may share: t's own node, or for a view (a transpose, a reshape)
    the node it views."""
    node = t.node
    while REGISTRY[node.op].aliases and node.inputs:
        node = node.inputs[0].node
    return node


def lower(program: Program, backend, check_numerics: bool = False, placeholder_names=None,
          copy_outputs: bool = True, hoist: bool = True, native: bool | None = None) -> Plan:  # fmt: skip
    """Schedule, plan memory and generate the run function of a static-shape program.

    ``copy_outputs=False``: outputs may alias feeds and constants (loop bodies; see codegen).
    ``hoist``: a program without updates computes what depends only on variables and constants
    in ``Plan.prepare``, once per version of the variables, instead of at every call (not for
    control-flow bodies, whose caller passes them no variables).

    ``native``: kernels may be compiled to C (backends/native.py) where the backend can.

    ``placeholder_names`` is the order in which the caller passes its feeds (the function's
    placeholders; the program may have pruned some that only gave a shape).
    """
    vid: dict = {}  # tensor -> value id
    types: dict = {}  # value id -> TensorType
    sizes: dict = {}  # value id -> nbytes (0, unplanned: a dim known only at run time, after a loop)
    for node in program.nodes:
        for t, ty in zip(node.outputs, node.types):
            v = vid[t] = len(vid)
            types[v] = ty
            sizes[v] = math.prod(ty.shape) * ty.dtype.itemsize if ty.is_static else 0
    sources = [n for n in program.nodes if REGISTRY[n.op].kind == SOURCE]
    compute = [n for n in program.nodes if REGISTRY[n.op].kind != SOURCE]
    # an update whose shape is known only at run time is checked by the executor before any update
    # is applied, so none may be written in place while the plan runs
    dynamic_updates = any(None in t.shape for _, t in program.updates)
    inplace = {} if dynamic_updates else _inplace_updates(program, compute)
    last = [n for n in compute if n.outputs[0] in inplace]
    compute = [n for n in compute if n.outputs[0] not in inplace] + last
    var_index = {n.name: i for i, n in enumerate(n for n in sources if n.op == "variable")}
    hoisted = _hoisted(program, sources, compute, vid) if hoist and not program.updates else set()

    alias_of = {}
    for n in compute:
        if REGISTRY[n.op].aliases and n.inputs:
            for t in n.outputs:
                alias_of[vid[t]] = vid[n.inputs[0]]
    # (hoisted values persist across calls: like sources, they are never planned buffers)
    escapes = {vid[t] for t in program.targets} | {vid[n.outputs[0]] for n in sources} | hoisted
    plannable = {vid[n.outputs[0]] for n in compute
                 if REGISTRY[n.op].writes_out and n.outputs[0] not in inplace and n.types[0].is_static
                 and vid[n.outputs[0]] not in hoisted}  # fmt: skip
    sched = [(tuple(vid[t] for t in n.inputs), tuple(vid[t] for t in n.outputs)) for n in compute]
    # an elementwise kernel may write over an input of the output's own type (same layout)
    inplace_ok = [{vid[t] for t in n.inputs if types[vid[t]] == n.types[0]} if REGISTRY[n.op].writes_inplace
                  else set() for n in compute]  # fmt: skip
    memory = plan_memory(sched, sizes, alias_of, escapes, inplace_ok, plannable)

    slots = {v: i for i, v in enumerate(sorted(memory.assignment))}
    arena_layout = tuple((memory.assignment[v], types[v].shape, types[v].dtype) for v in sorted(memory.assignment))
    # identical nodes (same op, attributes and types: every layer of a deep net) share a kernel
    keys = [(n.op, attrs_key(n.attrs), tuple([types[a] for a in args]), n.types)
            for n, (args, _) in zip(compute, sched)]  # fmt: skip
    unique = {}
    for n, key in zip(compute, keys):
        unique.setdefault(key, n)
    bound = backend.bind_all(list(unique.values()), check_numerics=check_numerics, native=native)
    kernels = dict(zip(unique, bound))
    steps = []
    for n, (args, outs), key in zip(compute, sched, keys):
        kernel = kernels[key]
        steps.append(Step(
            n, kernel, args, outs,
            out_buffer=slots.get(outs[0]),
            out_variable=var_index[inplace[n.outputs[0]]] if n.outputs[0] in inplace else None,
            prepared=outs[0] in hoisted,
        ))  # fmt: skip
    feeds = tuple((vid[n.outputs[0]], n.name) for n in sources if n.op == "placeholder")
    variables = tuple((vid[n.outputs[0]], n.name) for n in sources if n.op == "variable")
    constants = tuple((vid[n.outputs[0]], backend.from_host(n.attrs["value"])) for n in sources if n.op == "constant")
    outputs = tuple(vid[t] for t in program.outputs)
    updates = tuple((name, vid[t]) for name, t in program.updates if t not in inplace)
    source, run, prepare, line_to_step = generate(
        steps, feeds, variables, constants, outputs, updates, alias_of, memory, types, check_numerics, copy_outputs
    )
    if placeholder_names is None:
        placeholder_names = [n.name for n in program.placeholders()]
    placeholder_names = list(placeholder_names)
    return Plan(program, feeds, variables, constants, tuple(steps), outputs, updates, memory,
                arena_layout, source, run, line_to_step,
                feed_order=tuple(placeholder_names.index(name) for _, name in feeds),
                feeds_in_order=[name for _, name in feeds] == placeholder_names,
                variable_names=tuple(name for _, name in variables),
                constant_values=tuple(c for _, c in constants), dynamic_updates=dynamic_updates,
                prepare=prepare)  # fmt: skip


def _hoisted(program: Program, sources: list, compute: list, vid: dict) -> set:
    """Value ids computed from variables and constants alone by pure kernels (not random, not
    control flow): they change only when a variable does."""
    known = {vid[n.outputs[0]] for n in sources if n.op in ("variable", "constant")}
    hoisted = set()
    for n in compute:
        if foldable(REGISTRY[n.op]) and n.types[0].is_static and all(vid[t] in known for t in n.inputs):
            outs = {vid[t] for t in n.outputs}
            known |= outs
            hoisted |= outs
    return hoisted


def make_arena(plan: Plan, xp) -> list:
    """Allocate a plan's buffers and return one view per arena slot (one arena per concurrent call)."""
    raw = [xp.empty(n, dtype=xp.uint8) for n in plan.memory.buffers]
    return [raw[b][: nbytes(shape, dtype)].view(dtype).reshape(shape) for b, shape, dtype in plan.arena_layout]
