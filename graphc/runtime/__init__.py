"""Runtime: compiled functions (feeds in, arrays out) and the variable store they share."""

from .executor import Function

__all__ = ["Function"]
