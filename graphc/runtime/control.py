"""Control-flow kernels: each body is lowered once per bound node to a Plan, then called per step.

``bind_cond``/``bind_while``/``bind_scan`` are the ops' ``bind`` hooks (OpDef.bind), called by a
backend when it lowers the enclosing program. By then the enclosing program was specialized, so
its bodies were specialized and optimized with it (passes/pipeline.py); a body here is only
lowered: schedule, memory plan, generated code. A step is then one call of that generated
function with the arena of buffers reused across steps: no graph work, no allocation but the
step's outputs. The loops themselves are shared with the reference kernels (ops/control.py).
"""

from __future__ import annotations

import sys

from ..errors import ExecutionError, GraphcError, where
from ..lower.plan import lower, make_arena
from ..ops.control import _result, _scan_infer, _types, _while_infer, run_scan, run_while
from ..passes.program import Program


class Body:
    """A Subgraph lowered to a Plan; ``bound(arena)(arrays) -> list of arrays`` (parameter order)."""

    def __init__(self, sub, backend, owner, what: str, check_numerics: bool = False, loop: bool = False,
                 native: bool | None = None):  # fmt: skip
        program = Program(sub.nodes, sub.outputs)
        # a loop body's outputs are not copied per step: the loop copies what it keeps (stacks,
        # the final state); a branch's outputs leave the cond as they are, so they are fresh
        # (a body runs once per iteration: worth compiling to C however little one run does)
        self.plan = lower(program, backend, check_numerics, [p.node.name for p in sub.params], copy_outputs=not loop,
                          hoist=False, native=True if native is None else native)  # fmt: skip
        self.owner, self.what, self.xp = owner, what, backend.xp
        self._arenas: list = []  # one arena per concurrent call of the enclosing kernel

    def take(self):
        return self._arenas.pop() if self._arenas else make_arena(self.plan, self.xp)

    def give(self, arena) -> None:
        self._arenas.append(arena)

    def bound(self, B):
        """The body as a function of its parameters' arrays, running in arena ``B``."""
        plan = self.plan
        run, C, order, in_order = plan.run, plan.constant_values, plan.feed_order, plan.feeds_in_order

        def call(arrays):
            try:
                return run(arrays if in_order else [arrays[i] for i in order], (), C, B)[0]
            except ExecutionError as e:  # a NaN check or a body nested in this one: say where
                raise type(e)(f"{e}, in the {self.what} of {self.owner.op} '{self.owner.name}'") from e
            except GraphcError:
                raise
            except Exception as e:
                raise self._error(e) from e

        return call

    def _error(self, e: Exception) -> ExecutionError:
        from .executor import _failing_step

        step = _failing_step(self.plan, sys.exc_info()[2])
        owner = f"{self.owner.op} '{self.owner.name}'"
        if step is None:
            return ExecutionError(f"{owner} {self.what}: {type(e).__name__}: {e}{where(self.owner.source)}")
        node = step.node
        shapes = ", ".join(str(t.shape) for t in node.inputs)
        return ExecutionError(f"{node.op} '{node.name}' in the {self.what} of {owner}: {type(e).__name__}: {e}: "
                              f"got inputs of shapes {shapes}{where(node.source)}")  # fmt: skip


def bind_cond(node, backend, check_numerics: bool = False, native: bool | None = None, **_):
    a = node.attrs
    true, false = (Body(a[k], backend, node, k.replace("_", " "), check_numerics, native=native)
                   for k in ("true_branch", "false_branch"))  # fmt: skip

    def kernel(pred, *caps):
        body = true if pred else false
        B = body.take()
        try:
            return _result(body.bound(B)(list(caps)))  # only the taken branch runs
        finally:
            body.give(B)

    return kernel


def bind_while(node, backend, check_numerics: bool = False, native: bool | None = None, **_):
    a = node.attrs
    n, m = a["n_vars"], a["max_iterations"]
    cond = Body(a["loop_cond"], backend, node, "loop condition", check_numerics, loop=True, native=native)
    body = Body(a["loop_body"], backend, node, "loop body", check_numerics, loop=True, native=native)
    saved = node.types[n + 1 :]
    static = all(t.is_static for t in saved)
    xp = backend.xp

    def kernel(*arrays):
        types = saved if static else _while_infer(*_types(arrays), **a)[n + 1 :]
        B1, B2 = cond.take(), body.take()
        try:
            return run_while(xp, cond.bound(B1), body.bound(B2), arrays, n, m, types)
        finally:
            cond.give(B1)
            body.give(B2)

    return kernel


def bind_scan(node, backend, check_numerics: bool = False, native: bool | None = None, **_):
    a = node.attrs
    nc, nx, length, reverse = a["n_carry"], a["n_x"], a["length"], a["reverse"]
    step = Body(a["step"], backend, node, "step", check_numerics, loop=True, native=native)
    ys = node.types[nc:]
    static = all(t.is_static for t in ys)
    xp = backend.xp

    def kernel(*arrays):
        types = ys if static else _scan_infer(*_types(arrays), **a)[nc:]
        B = step.take()
        try:
            return run_scan(xp, step.bound(B), arrays, nc, nx, length, reverse, types)
        finally:
            step.give(B)

    return kernel
