"""Errors: every failure graphc reports for a user's mistake is a GraphcError subclass.

Messages follow one pattern: ``"<op> '<node>': <problem>: got <...>, expected <...>"`` followed by
where the node was defined in the user's code, so that an error points at the line to fix.
"""

from __future__ import annotations


class GraphcError(Exception):
    """Base of every error graphc raises for a user's mistake."""


class GraphError(GraphcError, ValueError):
    """Misuse of a graph: mixing graphs, adding to a finalized graph, unknown names."""


class ShapeError(GraphcError, ValueError):
    """Shapes that cannot work together, found while the graph is built."""


class DTypeError(GraphcError, TypeError):
    """Dtypes that cannot work together, found while the graph is built."""


class GradientError(GraphcError, ValueError):
    """A gradient that is not defined: non-scalar output, integer input, non-differentiable path."""


class CompileError(GraphcError, ValueError):
    """Bad arguments to ``graphc.compile`` (outputs, inputs, updates)."""


class FeedError(GraphcError, ValueError):
    """A bad call of a compiled function: missing, unknown or mismatched feeds."""


class ExecutionError(GraphcError, RuntimeError):
    """A kernel failed while a compiled function ran (for example a runtime shape mismatch)."""


class NumericsError(ExecutionError):
    """A NaN or Inf appeared while running with ``check_numerics=True``."""


class FormatError(GraphcError, ValueError):
    """A serialized graph file that cannot be read (issue 4 fills this in)."""


class NativeWarning(UserWarning):
    """Native C kernels could not be built (the compiler failed): NumPy kernels run instead."""


def where(source) -> str:
    """`` (defined at file:line)`` for a node's provenance, or nothing when it is unknown."""
    return f" (defined at {source})" if source is not None else ""
