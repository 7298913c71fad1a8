"""Passes: pure functions Program -> Program, run in the order ``pipeline.PIPELINES`` lists."""

from .pipeline import PIPELINES, optimize
from .program import Program
from .prune import prune

__all__ = ["PIPELINES", "Program", "optimize", "prune"]
