"""Executor: a compiled Function checks its feeds, picks the plan for their shapes, and runs it.

The generic program (optimized once at compile time) is specialized to each new input-shape
signature on first use; the resulting Plan is cached (bounded LRU). A call does no graph work:
feed checks, a dict lookup, the plan's generated straight-line function, and variable updates.
"""

from __future__ import annotations

import gc
import math
import operator
import os
import threading
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import CompileError, ExecutionError, FeedError, GraphcError, where
from ..ir import Subgraph, Tensor
from ..ir.types import fmt_shape
from ..lower import lower
from ..lower.plan import make_arena
from ..passes.pipeline import optimize_specialized
from ..passes.specialize import specialize
from .variables import convert_value

PLAN_CACHE_SIZE = 16
_MISSING = object()


@contextmanager
def no_gc():
    """Pause Python's cyclic garbage collector: compiling allocates many small objects that all
    stay alive, and collections triggered by them cost a third of compile time on large graphs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Structure:
    """How a function's flat outputs are returned: one array, a list, a dict (keys), or None."""

    kind: str  # "tensor" | "list" | "dict" | "none"
    keys: tuple = ()

    def __call__(self, values: list):
        if self.kind == "tensor":
            return values[0]
        if self.kind == "dict":
            return dict(zip(self.keys, values))
        return list(values) if self.kind == "list" else None


def _check_update_shape(name: str, shape: tuple, new: tuple, feeds: dict) -> None:
    """An update may not change its variable's shape (a dim known only from the feeds could)."""
    if None not in new and tuple(new) != tuple(shape):
        fed = ", ".join(f"{k}={fmt_shape(v)}" for k, v in feeds.items())
        raise FeedError(f"update of variable '{name}' {fmt_shape(shape)} would change its shape to {fmt_shape(new)} "
                        f"for feeds of shapes {fed}")  # fmt: skip


def _native_default() -> bool | None:
    """GRAPHC_NATIVE: unset (None: C for plans worth compiling), 0 (never) or 1 (always)."""
    value = os.environ.get("GRAPHC_NATIVE", "")
    if value not in ("", "0", "1"):
        raise CompileError(f"the environment variable GRAPHC_NATIVE must be 0 or 1 (or unset): got {value!r}")
    return {"0": False, "1": True}.get(value)


def _dims_match(shape: tuple, dims: list) -> bool:
    return all(shape[i] == d for i, d in dims)


_MISS = object()  # what a fast path returns for a call it does not take


def _fast_path(placeholders: list, signature: tuple, plan, arenas: list, read, graph, structure, seen: int):
    """``fast(fn, feeds) -> the result, or _MISS``: the common call of an inference function,
    feeds by name as arrays of the signature's exact shapes and the placeholders' dtypes, on the
    host, generated as straight-line code for one plan. Everything else (other feeds, a graph that
    grew since, positional feeds) returns _MISS and takes the general path, which raises errors.
    About 1.5 us less per call than the general path (W1's batch-1 call is ~10 us)."""
    env = {"MISS": _MISS, "NDARRAY": np.ndarray, "NAMES": frozenset(name for name, _ in placeholders),
           "graph": graph, "plan": plan, "run": plan.run, "arenas": arenas, "read": read,
           "make_arena": make_arena, "np": np, "GraphcError": GraphcError, "CONSTANTS": plan.constant_values,
           "structure": structure}  # fmt: skip
    lines = ["def fast(fn, feeds):",
             f"    if feeds.keys() != NAMES or len(graph.nodes) != {seen}:",
             "        return MISS"]  # fmt: skip
    local = {}
    for i, ((name, t), shape) in enumerate(zip(placeholders, signature)):
        env[f"D{i}"], env[f"S{i}"] = t.dtype, tuple(shape)
        local[name] = f"x{i}"
        lines += [f"    x{i} = feeds[{name!r}]",
                  f"    if type(x{i}) is not NDARRAY or x{i}.dtype != D{i} or x{i}.shape != S{i}:",
                  "        return MISS"]  # fmt: skip
    feeds = ", ".join(local[name] for _, name in plan.feeds)
    constants = "CONSTANTS" if plan.prepare is None else "fn._prepared(plan, V, CONSTANTS)"
    lines += [
        "    try:",
        "        B = arenas.pop()",
        "    except IndexError:",
        "        B = make_arena(plan, np)",
        "    try:",
        "        V = read(graph.variables)",
        f"        outs = run([{feeds}], V, {constants}, B)[0]",
        "    except GraphcError:",
        "        raise",
        "    except Exception as e:",
        "        error = fn._failure(plan, e)",
        "        if error is None:",
        "            raise",
        "        raise error from e",
        "    finally:",
        "        arenas.append(B)",
        "    return outs[0]" if structure.kind == "tensor" else "    return structure(outs)",
    ]
    exec(compile("\n".join(lines) + "\n", "<graphc call>", "exec"), env)  # our own generated text
    return env["fast"]


def _reader(names: tuple):
    """variables dict -> the arrays of ``names`` in order (itemgetter: one C call per run)."""
    if len(names) == 1:
        name = names[0]
        return lambda variables: (variables[name],)
    return operator.itemgetter(*names) if names else lambda variables: ()


class Function:
    """A compiled graph function: call it with feeds, get NumPy arrays back.

    Feeds go by placeholder name (``fn(x=a)``), in a dict keyed by placeholder Tensor or name
    (``fn({x: a})``), or positionally when the function was compiled with ``inputs=[...]``.
    """

    def __init__(self, graph, program, reports, backend, structure, inputs=(), opt_level=2,
                 check_numerics=False, verify=False, limits=None, native=None):  # fmt: skip
        self.graph = graph
        self.program = program  # the optimized generic program
        self.reports = reports  # what each compile-time pass did
        self.backend = backend
        self.inputs = tuple(inputs)
        self.opt_level = opt_level
        self.check_numerics = check_numerics
        # kernels compiled to C where a compiler exists (backends/native.py): None (auto: plans with
        # enough work), True (always) or False; GRAPHC_NATIVE=0 or 1 sets the default
        self.native = _native_default() if native is None else native
        if self.native not in (None, True, False):
            raise CompileError(f"compile: native must be True, False or None: got {native!r}")
        self.verify = verify
        self.limits = limits  # resource limits of a loaded file, checked before a plan allocates
        self.structure = structure  # rebuilds the user's output nesting from the flat outputs
        self._placeholders = [(n.name, n.types[0]) for n in program.placeholders()]  # feed order
        self._single = structure.kind == "tensor"  # (the common case returns outs[0] directly)
        self._plans: OrderedDict = OrderedDict()  # shape signature -> (Plan, reports, arena pool)
        self._plans_lock = threading.Lock()
        self._specialize_lock = threading.Lock()
        self._updates = bool(program.updates)
        self._names = {name for name, _ in self._placeholders}
        # per placeholder: dtype, rank and its static dims, so a well-formed array skips conversion
        # (a fully static placeholder compares its whole shape at once)
        self._accept = [(name, t, t.dtype, t.ndim, t.shape if t.is_static else [(i, d) for i, d in enumerate(t.shape)
                                                                                  if d is not None])
                        for name, t in self._placeholders]  # fmt: skip
        self._input_names = [t.node.name for t in self.inputs]
        self._host = backend.name == "cpu"  # feeds and outputs need no device copies
        self._last = (None, None, None, None)  # the last call's signature, plan, arena pool, variable reader
        self._prepared_values = (None, -1, ())  # (plan, variables version, its C with the prepared values)
        self._seen_size = len(graph.nodes)
        self._called = False
        self._fast = None  # fast(self, feeds): the last plan's common call (see _fast_path)
        self._fasts: dict = {}  # signature -> its fast path (made once per signature and graph size)
        if all(t.is_static for _, t in self._placeholders):
            self._plan_for(tuple(t.shape for _, t in self._placeholders))  # compile eagerly

    # -- plans ------------------------------------------------------------------------------
    def _plan_for(self, signature: tuple):
        with self._plans_lock:
            entry = self._plans.get(signature)
            if entry is not None:
                self._plans.move_to_end(signature)
                return entry
        with self._specialize_lock, no_gc():  # one specialization at a time: passes share a graph
            with self._plans_lock:
                entry = self._plans.get(signature)
            if entry is None:
                entry = self._specialize(signature)
        with self._plans_lock:
            self._plans[signature] = entry
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return entry

    def _specialize(self, signature: tuple):
        """Specialize, optimize and lower the program for one input-shape signature."""
        shapes = {name: shape for (name, _), shape in zip(self._placeholders, signature)}
        program = specialize(self.program, shapes)
        for name, value in program.updates:
            _check_update_shape(name, self.graph.variables[name].shape, value.shape, shapes)
        if self.limits is not None:
            _check_limits(program, self.limits)
        # check_numerics is for debugging: without fusion, an error names the exact op
        program, reports = optimize_specialized(program, self.opt_level, self.verify, fuse=not self.check_numerics)
        plan = lower(program, self.backend, self.check_numerics, [name for name, _ in self._placeholders],
                     native=self.native)
        return (plan, reports, [])

    @property
    def plan(self):
        """The most recently used plan (None before the first call of a function with unknown dims)."""
        return next(reversed(self._plans.values()))[0] if self._plans else None

    # -- feeds ------------------------------------------------------------------------------
    def _placeholder(self, key) -> str:
        """The placeholder name a feed key stands for (plans know placeholders by name)."""
        if isinstance(key, Tensor):
            if key.graph is not self.graph or key.node.op != "placeholder":
                raise FeedError(f"feed key '{key.name}' is not a placeholder of graph '{self.graph.name}'")
            return key.node.name
        if isinstance(key, str):
            node = self.graph._by_name.get(key)
            if node is None or node.op != "placeholder":
                names = ", ".join(sorted(n for n, _ in self._placeholders)) or "none"
                raise FeedError(f"unknown feed name {key!r}: expected one of the placeholders: {names}")
            return key
        raise FeedError(f"feed keys must be placeholder Tensors or names: got {type(key).__name__}")

    def _collect(self, args, kwargs) -> dict:
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
        feeds = {}
        for key, value in items:
            name = self._placeholder(key)
            if name in feeds:
                raise FeedError(f"placeholder '{name}' is fed twice")
            feeds[name] = value
        return feeds

    # -- call -------------------------------------------------------------------------------
    def _arrays(self, feeds: dict) -> list:
        """The fed values as arrays in placeholder order, checked and converted."""
        arrays = []
        for name, t, dtype, ndim, dims in self._accept:
            value = feeds.get(name, _MISSING)
            if value is _MISSING:
                node = self.graph._by_name[name]
                raise FeedError(f"missing feed for placeholder '{name}' {t}{where(node.source)}")
            if not (type(value) is np.ndarray and value.dtype == dtype and value.ndim == ndim and (
                    value.shape == dims if type(dims) is tuple else _dims_match(value.shape, dims))):  # fmt: skip
                value = convert_value(value, t.shape, t.dtype, f"feed '{name}'", FeedError)
            arrays.append(value)
        return arrays

    def __call__(self, *args, **kwargs):
        fast = self._fast
        if fast is not None and not args:
            out = fast(self, kwargs)
            if out is not _MISS:
                return out
        graph = self.graph
        if len(graph.nodes) != self._seen_size:
            if self._called:
                graph.warn_growth(self._seen_size)
            self._seen_size = len(graph.nodes)
            self._fast, self._fasts = None, {}  # (they check the size they were made for)
        self._called = True
        if args and not kwargs and len(args) == len(self.inputs) and type(args[0]) is not dict:
            kwargs = dict(zip(self._input_names, args))  # the common positional call
        elif args or not self._names.issuperset(kwargs):
            kwargs = self._collect(args, kwargs)
        arrays = self._arrays(kwargs)
        signature = tuple([a.shape for a in arrays])
        last = self._last  # (one attribute read: another thread may replace it meanwhile)
        if signature == last[0]:
            _, plan, arenas, read = last
        else:
            plan, _reports, arenas = self._plan_for(signature)
            read = _reader(plan.variable_names)
            self._last = (signature, plan, arenas, read)
            self._fast = None
        if self._fast is None and self._host and not self._updates:
            fast = self._fasts.get(signature)
            if fast is None:
                if len(self._fasts) >= PLAN_CACHE_SIZE:
                    self._fasts.clear()
                fast = self._fasts[signature] = _fast_path(self._placeholders, signature, plan, arenas, read, graph,
                                                           self.structure, self._seen_size)  # fmt: skip
            self._fast = fast
        backend = self.backend
        F = arrays if self._host and plan.feeds_in_order else [backend.from_host(arrays[i]) for i in plan.feed_order]
        try:
            B = arenas.pop()
        except IndexError:
            B = make_arena(plan, backend.xp)
        variables = graph.variables
        try:
            if self._updates:
                with graph.lock:  # updating calls are serialized; each sees the pre-call values
                    outs, new = self._run(plan, F, read(variables), plan.constant_values, B)
                    new = [backend.to_host(value) for value in new]
                    if plan.dynamic_updates:  # (static update shapes were checked when the plan was made)
                        feeds = dict(zip([n for n, _ in self._placeholders], signature))
                        for (name, _), value in zip(plan.updates, new):
                            _check_update_shape(name, variables[name].shape, value.shape, feeds)
                    for (name, _), value in zip(plan.updates, new):
                        variables[name] = value
                    graph.variables_version += 1  # (updates written in place by the plan count too)
            else:  # (the common inference call: _run inlined, one Python call less)
                V = read(variables)
                C = plan.constant_values if plan.prepare is None else self._prepared(plan, V, plan.constant_values)
                outs = plan.run(F, V, C, B)[0]
        except GraphcError:
            raise
        except Exception as e:
            error = self._failure(plan, e)
            if error is None:
                raise
            raise error from e
        finally:
            arenas.append(B)
        if self._host:
            return outs[0] if self._single else self.structure(outs)
        return self.structure([backend.to_host(o) for o in outs])

    def _prepared(self, plan, V, C) -> tuple:
        """The plan's constants followed by its values computed from variables alone, computed once
        per version of the graph's variables."""
        version = self.graph.variables_version  # (read first: a write meanwhile makes a newer one)
        cached = self._prepared_values
        if cached[0] is not plan or cached[1] != version:
            cached = self._prepared_values = (plan, version, C + tuple(plan.prepare(V, C)))
        return cached[2]

    def _run(self, plan, F, V, C, B):
        """The plan's run, after its prepared values (a call's errors become GraphcErrors in
        ``__call__``, through ``_failure``)."""
        if plan.prepare is not None:
            C = self._prepared(plan, V, C)
        return plan.run(F, V, C, B)

    def _failure(self, plan, e: Exception) -> GraphcError | None:
        """The error to raise for ``e``, raised while ``plan`` ran: an ExecutionError naming the
        step that raised it, or None (raise ``e`` itself) when no step did."""
        return self._error(plan, e)

    @staticmethod
    def _error(plan, e: Exception) -> ExecutionError | None:
        """The ExecutionError naming the plan step that raised ``e`` (None: no step did)."""
        step = _failing_step(plan, e.__traceback__)
        if step is None:
            return None
        node = step.node
        shapes = ", ".join(str(t.shape) for t in node.inputs)
        return ExecutionError(
            f"{node.op} '{node.name}': {type(e).__name__}: {e}: got inputs of shapes {shapes}{where(node.source)}"
        )

    def explain(self, format: str = "text", timings: bool = False):
        """What the compiler did and the plans it made, like SQL's EXPLAIN.

        Every pass with node counts and each rewrite, merge, fold and fusion (and why candidates
        were not fused or folded), then each specialized plan: kernels, buffers, peak memory and
        the generated code. ``format="json"`` returns a dict; ``timings=True`` adds per-pass times.
        """
        from .explain import explain

        return explain(self, format, timings)

    def __repr__(self) -> str:
        nodes, plans = len(self.program.nodes), len(self._plans)
        return f"<graphc.Function of graph '{self.graph.name}': {nodes} nodes, {plans} plans>"


def _check_limits(program, limits) -> None:
    """A loaded model may not make a plan allocate tensors beyond its limits (a resource bomb)."""
    from ..errors import FormatError

    for node in program.nodes:
        for sub in node.attrs.values():  # control-flow bodies, specialized with their node
            if isinstance(sub, Subgraph):
                _check_limits(sub, limits)
        for t in node.types:
            # (a dim known only at run time, after a loop whose variables change shape, counts as 1)
            nbytes = math.prod(1 if d is None else d for d in t.shape) * t.dtype.itemsize
            if nbytes > limits.max_tensor_bytes:
                raise FormatError(
                    f"{node.op} '{node.name}': with these feeds it would allocate {nbytes} bytes for {t}, more than "
                    f"max_tensor_bytes={limits.max_tensor_bytes}{where(node.source)}"
                )


def _failing_step(plan, tb):
    """The plan step whose generated line raised, from the traceback."""
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == plan.run.filename:
            i = plan.line_to_step.get(lineno)
            return plan.steps[i] if i is not None else None
    return None


_ = np  # NumPy is the host array type every output is returned as
