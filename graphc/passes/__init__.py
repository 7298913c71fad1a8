"""Passes: pure functions Program -> (Program, events), run in the order ``pipeline.PIPELINES`` lists."""

from .cse import merge
from .decompose import decompose
from .fold import fold_constants
from .pipeline import PIPELINES, PassReport, optimize
from .program import Program
from .prune import prune
from .simplify import simplify
from .stabilize import stabilize

__all__ = [
    "PIPELINES", "PassReport", "Program", "decompose", "fold_constants", "merge", "optimize", "prune", "simplify",
    "stabilize",
]  # fmt: skip
