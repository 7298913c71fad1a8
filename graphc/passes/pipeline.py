"""The pass pipeline: one literal, ordered list of passes per optimization level.

Every pass is a function Program -> (Program, events). The manager runs dead-code elimination
after each pass, times it, records what it did for ``explain``, and (with verify=True, as in the
tests) checks the IR invariants after every pass, naming the pass that broke them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..ir.verify import verify_nodes
from .cse import merge
from .fold import fold_constants
from .fuse import fuse
from .program import Program
from .prune import prune
from .simplify import simplify
from .stabilize import stabilize

# At compile time, on the graph as built (dims may be unknown):
PIPELINES = {
    0: (),
    1: (merge, fold_constants),
    2: (merge, fold_constants, simplify, stabilize),
}
# Then per input-shape signature, after ``specialize`` made every shape static (so the gradient
# plumbing autodiff left for unknown dims simplifies away):
SPECIALIZED = {
    0: (),
    1: (merge, fold_constants),
    2: (simplify, merge, fold_constants, fuse),
}


@dataclass(frozen=True)
class PassReport:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    events: tuple


def optimize(program: Program, opt_level: int = 2, verify: bool = False) -> tuple[Program, list[PassReport]]:
    """Prune, then run the compile-time passes of ``opt_level`` in order (each followed by pruning)."""
    return _run(program, PIPELINES[opt_level], verify)


def optimize_specialized(program: Program, opt_level: int = 2, verify: bool = False, fuse: bool = True):
    """Prune, then run the passes for a specialized (static-shape) program (optionally without fusion)."""
    passes = SPECIALIZED[opt_level] if fuse else tuple(p for p in SPECIALIZED[opt_level] if p.__name__ != "fuse")
    return _run(program, passes, verify)


def _run(program: Program, passes, verify: bool) -> tuple[Program, list[PassReport]]:
    reports = []
    t0 = time.perf_counter()
    before = len(program.nodes)
    program = prune(program)
    reports.append(PassReport("prune", before, len(program.nodes), time.perf_counter() - t0, ()))
    for p in passes:
        t0 = time.perf_counter()
        before = len(program.nodes)
        program, events = p(program)  # the rewrite engine drops what a pass made dead
        reports.append(PassReport(p.__name__, before, len(program.nodes), time.perf_counter() - t0, tuple(events)))
        if verify:
            verify_nodes(program.nodes, program.targets, where=f"after pass {p.__name__}")
    return program, reports
