"""Codegen: a Plan's steps as the source of one straight-line Python function.

The function takes the feeds F, variable arrays V, constants C and the arena of planned buffers B,
calls each bound kernel once, copies only the outputs that could alias a feed, variable or
constant, runs in-place variable updates last, and returns (outputs, update values).
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import NumericsError, where

_counter = itertools.count()


def _check_finite(value, node) -> None:
    a = np.asarray(value)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        kind = "NaN" if np.isnan(a).any() else "Inf"
        raise NumericsError(f"{node.op} '{node.name}': produced {kind} (check_numerics){where(node.source)}")


def generate(steps, feeds, variables, constants, outputs, updates, alias_of, memory, types, check_numerics,
             copy_outputs: bool = True):  # fmt: skip
    """Return (source text, compiled run function, compiled prepare function or None,
    {line number: step index}).

    ``copy_outputs=False`` (a loop body, whose caller copies what it keeps) returns outputs that
    may alias a feed, constant or another output as they are. The ``prepared`` steps go to
    ``prepare(V, C)``, which returns their values; ``run`` then finds them in C after the
    constants.
    """
    filename = f"<graphc plan {next(_counter)}>"
    env = {"_check": _check_finite, "_asarray": np.asarray}
    lines = ["def run(F, V, C, B):"]

    def unpack(names, comments, sequence):
        """One assignment of a whole sequence to local names (a line per name, for explain):
        compiles faster than a subscript per name or per use."""
        if names:
            lines.extend(f"    {'(' if i == 0 else ' '}{n},  # {c}" for i, (n, c) in enumerate(zip(names, comments)))
            lines.append(f"     ) = {sequence}")

    prepared = [s for s in steps if s.prepared]
    prepared_outs = [v for s in prepared for v in s.outs]
    unpack([f"v{v}" for v, _ in feeds], [f"feed '{name}'" for _, name in feeds], "F")
    unpack([f"v{v}" for v, _ in variables], [f"variable '{name}'" for _, name in variables], "V")
    by_prepare = [f"{s.node.op} '{s.node.name}' -> {types[v]}, by prepare" for s in prepared for v in s.outs]
    unpack([f"v{v}" for v, _ in constants] + [f"v{v}" for v in prepared_outs],
           [f"constant {types[v]}" for v, _ in constants] + by_prepare, "C")  # fmt: skip
    slots = range(len(memory.assignment))  # the arena: one view per planned value
    unpack([f"b{i}" for i in slots], [f"buffer {memory.assignment[v]}" for v in sorted(memory.assignment)], "B")

    # (values that outlive the call: an output reading one is a copy)
    external = {v for v, _ in feeds} | {v for v, _ in variables} | {v for v, _ in constants} | set(prepared_outs)

    def root(v):
        while v in alias_of:
            v = alias_of[v]
        return v

    line_to_step = {}
    deferred = [s for s in steps if s.out_variable is not None]
    body_steps = [s for s in steps if s.out_variable is None and not s.prepared]

    kernel_names: dict = {}  # id(kernel) -> its name in the run function (steps share kernels)

    def emit(i, s):
        k = kernel_names.get(id(s.kernel))
        if k is None:
            k = kernel_names[id(s.kernel)] = f"k{len(kernel_names)}"
            env[k] = getattr(s.kernel, "direct", None) or s.kernel  # (a kernel's faster entry point)
        args = ", ".join(f"v{a}" for a in s.args)
        if s.out_buffer is not None:
            args += f", out=b{s.out_buffer}"
        elif s.out_variable is not None:
            args += f", out=V[{s.out_variable}]"
        target = ", ".join(f"v{o}" for o in s.outs) + ("," if len(s.outs) > 1 else "")
        line_to_step[len(lines) + 1] = i
        lines.append(f"    {target} = {k}({args})  # {s.node.op} '{s.node.name}' -> {types[s.outs[0]]}")
        if check_numerics:
            env[f"n{i}"] = s.node
            for o in s.outs:
                lines.append(f"    _check(v{o}, n{i})")

    index = {id(s): i for i, s in enumerate(steps)}
    for s in body_steps:
        emit(index[id(s)], s)
    out_names, seen = [], set()
    for v in outputs:
        if copy_outputs and (root(v) in external or v in seen):
            lines.append(f"    o{len(out_names)} = _asarray(v{v}).copy()  # may alias a feed, variable or constant")
            out_names.append(f"o{len(out_names)}")
        else:
            out_names.append(f"_asarray(v{v})")  # kernels may return NumPy scalars (x[0, 0])
        seen.add(v)
    upd_names = []
    for _name, v in updates:
        if root(v) in external or v in seen:
            lines.append(f"    u{len(upd_names)} = v{v}.copy()")
            upd_names.append(f"u{len(upd_names)}")
        else:
            upd_names.append(f"v{v}")
        seen.add(v)
    for s in deferred:
        emit(index[id(s)], s)
    lines.append(f"    return [{', '.join(out_names)}], [{', '.join(upd_names)}]")
    if prepared:  # what depends on variables and constants only, once per version of the variables
        lines += ["", "", "def prepare(V, C):"]
        unpack([f"v{v}" for v, _ in variables], [f"variable '{name}'" for _, name in variables], "V")
        unpack([f"v{v}" for v, _ in constants], [f"constant {types[v]}" for v, _ in constants], "C")
        for s in prepared:
            emit(index[id(s)], s)
        lines.append(f"    return ({''.join(f'v{v}, ' for v in prepared_outs)})")
    source = "\n".join(lines) + "\n"
    code = "\n".join(line.split("  # ", 1)[0] for line in lines) + "\n"  # (comments cost compile time)
    exec(compile(code, filename, "exec"), env)  # our own generated text, never file content
    run = env["run"]
    run.filename = filename
    return source, run, env.get("prepare"), line_to_step
