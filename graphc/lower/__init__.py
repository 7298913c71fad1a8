"""Lowering: a static-shape Program becomes a Plan (schedule, memory plan, generated run function)."""

from .plan import Plan, Step, lower, make_arena

__all__ = ["Plan", "Step", "lower", "make_arena"]
