"""The pass pipeline: one literal, ordered list of passes per optimization level.

Every pass is a function Program -> (Program, events). The manager runs each pass on the bodies
of control-flow nodes too (innermost first), runs dead-code elimination after each pass, times
it, records what it did for ``explain``, and (with verify=True, as in the tests) checks the IR
invariants after every pass, naming the pass that broke them. The compile-time
passes repeat until a round changes nothing, so optimizing an optimized program changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..ir.verify import verify_nodes
from .control import batch_steps, has_control_flow, hoist_invariants, inline_cond, on_bodies, trim
from .cse import merge
from .decompose import decompose
from .fold import fold_constants, fold_for_plan
from .fuse import fuse
from .program import Program
from .prune import prune
from .simplify import simplify
from .stabilize import stabilize

# At compile time, on the graph as built (dims may be unknown). Fold before merge: folding makes
# equal constants, which merge then shares.
PIPELINES = {
    0: (trim,),
    1: (fold_constants, merge, inline_cond, trim),
    2: (fold_constants, merge, simplify, stabilize, inline_cond, hoist_invariants, trim),
}
# A rewrite can expose another (simplify makes a constant expression, fold folds it, a rule then
# fires on the constant): the compile-time passes repeat until a round changes nothing, at most:
ROUNDS = 4
# Then per input-shape signature, after ``specialize`` made every shape static (so the gradient
# plumbing autodiff left for unknown dims simplifies away):
SPECIALIZED = {
    0: (trim,),
    1: (merge, fold_for_plan, inline_cond, trim),
    2: (simplify, merge, fold_for_plan, inline_cond, hoist_invariants, batch_steps, trim, decompose, fuse),
}


# Passes that only rewrite control-flow nodes (skipped, unreported, for programs without any)
CONTROL_FLOW = (inline_cond, hoist_invariants, batch_steps, trim)


@dataclass(frozen=True)
class PassReport:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float
    events: tuple


def optimize(program: Program, opt_level: int = 2, verify: bool = False) -> tuple[Program, list[PassReport]]:
    """Prune, then run the compile-time passes of ``opt_level`` in order (each followed by pruning),
    in rounds until one changes nothing."""
    return _run(program, PIPELINES[opt_level], verify, ROUNDS)


def optimize_specialized(program: Program, opt_level: int = 2, verify: bool = False, fuse: bool = True):
    """Prune, then run the passes for a specialized (static-shape) program (optionally without fusion)."""
    passes = SPECIALIZED[opt_level] if fuse else tuple(p for p in SPECIALIZED[opt_level] if p.__name__ != "fuse")
    return _run(program, passes, verify)


def _run(program: Program, passes, verify: bool, rounds: int = 1) -> tuple[Program, list[PassReport]]:
    reports = []
    t0 = time.perf_counter()
    before = len(program.nodes)
    program = prune(program, keep_sources=True)
    reports.append(PassReport("prune", before, len(program.nodes), time.perf_counter() - t0, ()))
    unchanged: dict = dict.fromkeys(program.stable, program)  # pass -> the program it last left as it was
    bodies = has_control_flow(program.nodes)  # (no pass adds control flow)
    if not bodies:  # its passes have nothing to do
        passes = tuple(p for p in passes if p not in CONTROL_FLOW)
    for _ in range(rounds):
        changed = False
        for p in passes:
            if unchanged.get(p) is program:
                continue  # passes are deterministic: running it there again would do nothing
            t0 = time.perf_counter()
            before = program
            program, events = _apply(p, program) if bodies else p(program)  # (dead code is dropped as it goes)
            reports.append(PassReport(p.__name__, len(before.nodes), len(program.nodes), time.perf_counter() - t0,
                                      tuple(events)))  # fmt: skip
            if verify:
                verify_nodes(program.nodes, program.targets, where=f"after pass {p.__name__}")
            if program is before:
                unchanged[p] = program
            else:
                changed = True
        if not changed:
            break
    stable = frozenset(p for p, seen in unchanged.items() if seen is program)
    return (replace(program, stable=stable) if stable != program.stable else program), reports


def _apply(p, program: Program):
    """Run pass ``p`` on every control-flow body (innermost first), then on the program itself."""
    program, inner = on_bodies(program, lambda body: _apply(p, body))
    program, events = p(program)
    return program, (inner + list(events)) if inner else events
