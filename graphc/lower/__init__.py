"""Lowering: a Program becomes a Plan (slots, steps with bound kernels, frees) for one backend."""

from .plan import Plan, Step, lower

__all__ = ["Plan", "Step", "lower"]
