"""compile: outputs and updates -> Program -> passes -> Plan -> a callable Function."""

from __future__ import annotations

import os

from .backends import get_backend
from .errors import CompileError
from .ir import Tensor
from .ops.state import assign
from .passes import Program, optimize, prune
from .passes.specialize import isolate
from .runtime import Function
from .runtime.executor import Structure, no_gc


def _flatten(outputs) -> tuple[list, Structure]:
    """Flat list of Tensors and the Structure that rebuilds the user's nesting from flat values."""
    if outputs is None:
        return [], Structure("none")
    if isinstance(outputs, Tensor):
        return [outputs], Structure("tensor")
    if isinstance(outputs, dict):
        keys = tuple(outputs)
        if not all(isinstance(k, str) for k in keys):
            raise CompileError(f"compile: dict outputs need string keys: got {keys!r}")
        return [outputs[k] for k in keys], Structure("dict", keys)
    if isinstance(outputs, (list, tuple)):
        return list(outputs), Structure("list")
    raise CompileError(f"compile: outputs must be a Tensor, list, tuple or dict: got {type(outputs).__name__}")


def _normalize_updates(updates) -> list[Tensor]:
    result = []
    for u in updates or ():
        if isinstance(u, Tensor) and u.node.op == "assign":
            result.append(u)
        elif isinstance(u, tuple) and len(u) == 2:
            result.append(assign(*u))
        else:
            raise CompileError(
                f"compile: each update must be a graphc.assign(...) result or a (variable, value) pair: got {u!r}"
            )
    return result


def _with_implicit_updates(graph, program: Program, explicit: dict) -> Program:
    """Add the updates that ops in the program imply (a random op advances its generator's counter,
    batch norm in training mode updates its running statistics); repeat, since those updates may
    pull in more such ops. An explicit update of the same variable takes precedence."""
    pending = list(graph.implicit_updates)
    updates = list(program.updates)
    names = set(explicit)
    while True:
        live = set(program.nodes)
        new = [(t, v, val) for t, v, val in pending if t.node in live and v.node.name not in names]
        if not new:
            return program
        for trigger, var, value in new:
            names.add(var.node.name)
            updates.append((var.node.name, value))
            pending.remove((trigger, var, value))
        program = prune(Program(tuple(graph.nodes), program.outputs, tuple(updates)))


def compile(outputs=None, inputs=None, updates=None, device: str = "cpu", opt_level: int = 2,
            check_numerics: bool = False, native: bool | None = None) -> Function:  # fmt: skip
    """Compile outputs (and variable updates) into a function that runs many times.

    Parameters
    ----------
    outputs : Tensor, list/tuple of Tensors, dict of Tensors, or None
        What a call returns, in the same structure (a list for a list or tuple).
    inputs : list of placeholders (or one placeholder), optional
        Placeholders that may then be fed positionally, in this order.
    updates : list of ``assign`` results or ``(variable, new_value)`` pairs
        Applied after the outputs are computed; every update reads pre-call values.
    device : "cpu" or "cuda"
    opt_level : 0, 1 or 2
    check_numerics : bool
        Raise NumericsError naming the first node that produces a NaN or Inf.
    native : bool, optional
        On the CPU, compile the kernels to C with the machine's C compiler (cached on disk; without
        a compiler they stay NumPy's; see README, "Native kernels"). True: always; False: never;
        None (default): for plans that do enough work to pay for the compile. The environment
        variable ``GRAPHC_NATIVE`` (``0`` or ``1``) sets the default.
    """
    with no_gc():
        return _compile(outputs, inputs, updates, device, opt_level, check_numerics, native)


def _compile(outputs, inputs, updates, device, opt_level, check_numerics, native) -> Function:
    flat, structure = _flatten(outputs)
    for t in flat:
        if not isinstance(t, Tensor):
            raise CompileError(f"compile: outputs must be graphc Tensors: got {type(t).__name__}")
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs or ())
    for t in inputs:
        if not isinstance(t, Tensor) or t.node.op != "placeholder":
            what = f"'{t.name}' is a {t.node.op}" if isinstance(t, Tensor) else f"got {type(t).__name__}"
            raise CompileError(f"compile: inputs must be placeholders: {what}")
    assigns = _normalize_updates(updates) + [t for t in flat if t.node.op == "assign"]
    tensors = flat + assigns + inputs
    if not tensors:
        raise CompileError("compile: nothing to compute: give outputs or updates")
    graph = tensors[0].graph
    for t in tensors:
        if not isinstance(t, Tensor) or t.graph is not graph:
            raise CompileError(f"compile: all outputs, inputs and updates must come from graph '{graph.name}'")
    if opt_level not in (0, 1, 2):
        raise CompileError(f"compile: opt_level must be 0, 1 or 2: got {opt_level!r}")

    seen, update_pairs = {}, []
    for a in dict.fromkeys(assigns):  # the same assign listed twice counts once
        var, value = a.node.inputs
        if var.node.name in seen:
            raise CompileError(f"compile: variable '{var.node.name}' is updated twice in one function")
        seen[var.node.name] = a
        update_pairs.append((var.node.name, value))

    program = prune(Program(tuple(graph.nodes), tuple(flat), tuple(update_pairs)))
    program = isolate(_with_implicit_updates(graph, program, seen))
    verify = os.environ.get("GRAPHC_VERIFY") == "1"  # the test suite verifies the IR after every pass
    backend = get_backend(device)
    program, reports = optimize(program, opt_level, verify)
    return Function(graph, program, reports, backend, structure, inputs, opt_level, check_numerics, verify,
                    native=native)
