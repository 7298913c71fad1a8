"""Executor: a compiled Function runs its Plan on fed arrays; no graph work happens per call."""

from __future__ import annotations

import numpy as np

from ..errors import ExecutionError, FeedError, GraphcError, NumericsError, where
from ..ir import Tensor
from ..lower import Plan
from .variables import convert_value


class Function:
    """A compiled graph function: call it with feeds, get NumPy arrays back.

    Feeds go by placeholder name (``fn(x=a)``), in a dict keyed by placeholder Tensor or name
    (``fn({x: a})``), or positionally when the function was compiled with ``inputs=[...]``.
    """

    def __init__(self, graph, plan: Plan, program, backend, unflatten, inputs=(), check_numerics=False):
        self.graph = graph
        self.plan = plan
        self.program = program
        self.backend = backend
        self.inputs = tuple(inputs)
        self.check_numerics = check_numerics
        self._unflatten = unflatten
        self._needed = {node for _, node in plan.feeds}
        self._seen_size = len(graph.nodes)
        self._called = False

    # -- feeds ------------------------------------------------------------------------------
    def _placeholder(self, key):
        if isinstance(key, Tensor):
            if key.graph is not self.graph or key.node.op != "placeholder":
                raise FeedError(f"feed key '{key.name}' is not a placeholder of graph '{self.graph.name}'")
            return key.node
        if isinstance(key, str):
            node = self.graph._by_name.get(key)
            if node is None or node.op != "placeholder":
                names = ", ".join(sorted(n.name for _, n in self.plan.feeds)) or "none"
                raise FeedError(f"unknown feed name {key!r}: expected one of the placeholders: {names}")
            return node
        raise FeedError(f"feed keys must be placeholder Tensors or names: got {type(key).__name__}")

    def _collect(self, args, kwargs) -> dict:
        feeds = {}
        if len(args) == 1 and isinstance(args[0], dict):  # a dict is never an array: it is a feed dict
            items = list(args[0].items())
        else:
            if len(args) > len(self.inputs):
                raise FeedError(
                    f"got {len(args)} positional feeds but the function was compiled with "
                    f"{len(self.inputs)} inputs; pass feeds by name or compile with inputs=[...]"
                )
            items = list(zip(self.inputs, args))
        items += list(kwargs.items())
        for key, value in items:
            node = self._placeholder(key)
            if node in feeds:
                raise FeedError(f"placeholder '{node.name}' is fed twice")
            feeds[node] = value
        return feeds

    # -- call -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        graph, plan, backend = self.graph, self.plan, self.backend
        if len(graph.nodes) != self._seen_size:
            if self._called:
                graph.warn_growth(self._seen_size)
            self._seen_size = len(graph.nodes)
        self._called = True
        feeds = self._collect(args, kwargs)
        env: list = [None] * plan.nslots
        external = set()
        for slot, node in plan.feeds:
            if node not in feeds:
                raise FeedError(f"missing feed for placeholder '{node.name}' {node.types[0]}{where(node.source)}")
            t = node.types[0]
            arr = convert_value(feeds[node], t.shape, t.dtype, f"feed '{node.name}'", FeedError)
            env[slot] = backend.from_host(arr)
            external.add(id(env[slot]))
        with graph.lock:
            for slot, name in plan.variables:
                env[slot] = graph.variables[name]
                external.add(id(env[slot]))
        for slot, arr in plan.constants:
            env[slot] = arr
            external.add(id(arr))
        self._run(env)
        outputs, returned = [], set()
        for slot in plan.outputs:
            arr = backend.to_host(env[slot])
            if arr.base is not None or id(arr) in external or id(arr) in returned:
                arr = arr.copy()  # never hand out a view of a variable, feed, constant or buffer
            returned.add(id(arr))
            outputs.append(arr)
        if plan.updates:
            new = {}
            for name, slot in plan.updates:
                arr = backend.to_host(env[slot])
                if arr.base is not None or id(arr) in external or id(arr) in returned:
                    arr = np.array(arr, copy=True)
                new[name] = arr
            with graph.lock:
                graph.variables.update(new)
        return self._unflatten(outputs)

    def _run(self, env: list) -> None:
        check = self.check_numerics
        step = None
        try:
            for step in self.plan.steps:
                result = step.fn(*[env[a] for a in step.args])
                if len(step.outs) == 1:
                    env[step.outs[0]] = result
                else:
                    for s, r in zip(step.outs, result):
                        env[s] = r
                if check:
                    _check_finite(step, env)
                for s in step.free:
                    env[s] = None
        except GraphcError:
            raise
        except Exception as e:
            node = step.node
            shapes = ", ".join(str(tuple(np.shape(env[a]))) for a in step.args)
            raise ExecutionError(
                f"{node.op} '{node.name}': {type(e).__name__}: {e}: got inputs of shapes {shapes}{where(node.source)}"
            ) from e

    def __repr__(self) -> str:
        return f"<graphc.Function of graph '{self.graph.name}': {len(self.plan.steps)} steps>"


def _check_finite(step, env) -> None:
    for s in step.outs:
        a = np.asarray(env[s])
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            node = step.node
            kind = "NaN" if np.isnan(a).any() else "Inf"
            raise NumericsError(f"{node.op} '{node.name}': produced {kind} (check_numerics){where(node.source)}")
