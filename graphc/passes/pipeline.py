"""The pass pipeline: one literal, ordered list of passes per optimization level."""

from __future__ import annotations

from .program import Program
from .prune import prune

PIPELINES = {
    0: (prune,),
    1: (prune,),
    2: (prune,),
}


def optimize(program: Program, opt_level: int = 2) -> Program:
    """Run the passes of ``opt_level`` in order."""
    for p in PIPELINES[opt_level]:
        program = p(program)
    return program
