"""Memory planning: liveness analysis assigns intermediate results to reusable buffers.

Input: the schedule (steps in order) with, per value, its producer, its readers and whether a
kernel may return a view of it. A value gets a planned buffer when its producer can write into
``out=`` and no view of it escapes the call (outputs and updates are always fresh arrays). Buffers
are reused once every view of their value is dead; an elementwise kernel writes in place into
an input buffer that dies at that very step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemoryPlan:
    assignment: dict  # value id -> buffer index
    buffers: tuple  # buffer index -> nbytes
    peak_bytes: int  # most bytes live at once (planned and unplanned values)
    inplace: tuple  # (step index, value id that the step overwrites)


def plan_memory(steps, sizes: dict, alias_of: dict, escapes: set, inplace_ok: list, plannable: set) -> MemoryPlan:
    """Assign buffers.

    steps: list of (args, outs) value ids per step, in order.
    sizes: value id -> nbytes.
    alias_of: value id -> the value whose storage it may share (views), for every aliasing value.
    escapes: value ids whose storage is returned or kept (outputs, updates, sources).
    inplace_ok: per step, the input value ids its kernel may write over when they die there.
    plannable: value ids produced by kernels that accept out=.
    """
    root = {}

    def storage(v):
        while v in alias_of:
            v = alias_of[v]
        return v

    last = {}
    for i, (args, outs) in enumerate(steps):
        for v in outs:
            root[v] = storage(v)
            last.setdefault(root[v], i)
        for v in args:
            last[storage(v)] = max(last.get(storage(v), i), i)
    escaping_roots = {storage(v) for v in escapes}
    planned = {v for v in plannable if storage(v) == v and v not in escaping_roots}

    free: dict[int, list[int]] = {}  # nbytes -> free buffer indices
    buffers: list[int] = []
    assignment: dict = {}
    inplace, transferred = [], set()
    live_bytes, peak = 0, 0
    dying_at: dict[int, list] = {}
    for v, i in last.items():
        dying_at.setdefault(i, []).append(v)
    for i, (args, outs) in enumerate(steps):
        # only over an input the step reads directly: a fused kernel writing block by block over a
        # buffer it also reads through a view (a transpose, a reversal) would read what it overwrote
        candidates = [v for v in dying_at.get(i, ()) if v in assignment and v not in outs and v in inplace_ok[i]
                      and all(a == v for a in args if storage(a) == v)]  # fmt: skip
        for v in outs:
            if storage(v) != v:
                continue  # a view: no storage of its own
            n = sizes[v]
            if v not in planned:
                live_bytes += n
                continue
            reuse = next((d for d in candidates if sizes[d] == n), None)
            if reuse is not None:  # write in place over an input that dies here
                candidates.remove(reuse)
                transferred.add(reuse)
                assignment[v] = assignment[reuse]
                inplace.append((i, reuse))
                continue
            pool = free.get(n)
            assignment[v] = pool.pop() if pool else len(buffers)
            if assignment[v] == len(buffers):
                buffers.append(n)
            live_bytes += n
        peak = max(peak, live_bytes)
        for v in dying_at.get(i, ()):
            if v in escaping_roots or v in transferred:
                continue
            live_bytes -= sizes[v]
            if v in assignment:
                free.setdefault(sizes[v], []).append(assignment[v])
    return MemoryPlan(assignment, tuple(buffers), int(peak), tuple(inplace))


def nbytes(shape, dtype) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize
