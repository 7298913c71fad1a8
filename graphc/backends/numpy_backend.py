"""The CPU backend: NumPy arrays; fused elementwise nodes run as ufuncs over cache-sized blocks.

A fused body is evaluated block by block (64K elements: the working set of its temporaries
stays in L2) into small scratch buffers, so each element is read from and written to memory once
instead of once per op; large tensors split their blocks over a thread pool (ufuncs release the
GIL). Small tensors skip the blocking and run the ufuncs on whole arrays.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..ir.types import broadcast_shapes
from ..ops.fused import product_out
from ..ops.linalg import gemm
from ..ops.registry import REGISTRY
from .csource import supports as csource_supports

BLOCK = 1 << 16  # elements per block: measured best on W3 (16K: 9.7 ms, 32K: 6.8, 64K: 5.8, 128K: 5.7)
PARALLEL_MIN = 1 << 18  # elements before a fused kernel uses more than one thread
# A body of one or two ops runs as one block up to this size: measured faster than 64K blocks
# (an SGD update w - lr * g of 200K floats: 61 vs 92 us; 1M: 328 vs 464 us, one thread), while
# longer bodies gain from blocks at every size.
SHORT_WHOLE_MAX = 1 << 20


def num_threads() -> int:
    return max(1, int(os.environ.get("GRAPHC_NUM_THREADS", os.cpu_count() or 1)))


class NumpyBackend:
    name = "cpu"
    xp = np

    def __init__(self):
        self._pool = None
        self._toolchain = None
        self._lock = threading.Lock()

    def from_host(self, array):
        return array

    def to_host(self, array):
        return np.asarray(array)

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(num_threads() - 1 or 1, thread_name_prefix="graphc")
            return self._pool

    def toolchain(self):
        """The C toolchain for native kernels (probed on first use: it runs the compiler once)."""
        with self._lock:
            if self._toolchain is None:
                from .native import Toolchain

                self._toolchain = Toolchain()
            return self._toolchain

    def bind_all(self, nodes, native: bool | None = None, **options) -> list:
        """Kernels for ``nodes`` (one plan's): nodes that can run as C (see ``why_not_native``) are
        compiled together as one library, the rest are bound one by one. ``native``: True always
        compiles, False never, None (auto) when the plan's C work is at least NATIVE_MIN_WORK."""
        from . import native as nat

        kernels = [None] * len(nodes)
        if native is not False:
            specs = [(i, nat.Spec(n, f"k{i}")) for i, n in enumerate(nodes) if csource_supports(n) is None]
            specs = [(i, s) for i, s in specs if s.reason is None]
            if native is None and sum(s.function.total_work for _, s in specs) < nat.NATIVE_MIN_WORK:
                specs = []  # (a small plan: compiling it would cost more than it saves)
            toolchain = self.toolchain() if specs else None
            if specs and not (toolchain.unavailable or toolchain.failed):
                fallbacks = [nat.NumpyFallback(functools.partial(self.bind, nodes[i], native=False, **options))
                             for i, _ in specs]  # fmt: skip
                functions = toolchain.kernels([s for _, s in specs], fallbacks) or [None] * len(specs)
                for (i, spec), fns, fallback in zip(specs, functions, fallbacks):
                    if fns is not None:
                        kernels[i] = nat.NativeKernel(self, spec, fns, fallback)
        return [k if k is not None else self.bind(n, native=native, **options) for k, n in zip(kernels, nodes)]

    def why_not_native(self, node, native: bool | None = None) -> str | None:
        """None when ``node`` can run as C in a plan compiled with ``native``, else why not."""
        from .native import Spec

        if native is False:
            return "native=False or GRAPHC_NATIVE=0"
        reason = csource_supports(node) or Spec(node, "k").reason
        if reason is not None:
            return reason
        toolchain = self.toolchain()
        return toolchain.unavailable or toolchain.failed

    def bind(self, node, **options):
        """The node's kernel with the array module and attributes bound: kernel(*arrays, out=...).

        ``options`` (check_numerics) reach ops that build their own kernel (OpDef.bind: control flow).
        """
        if node.op in ("fused_elementwise", "fused_matmul"):
            kernel = FusedKernel(self, node)
            return kernel if kernel.blocked else kernel.whole  # small: call the generated code directly
        opdef = REGISTRY[node.op]
        if opdef.bind is not None:
            return opdef.bind(node, self, **options)
        return functools.partial(opdef.kernel, np, **node.attrs)


BACKEND = NumpyBackend()  # one pool per process, shared by every compiled function


class FusedKernel:
    """A fused body bound to the static shapes of one plan, as generated Python: one ufunc call
    per instruction, either on whole arrays (small tensors) or in a loop over blocks.

    Blocks are flat (every input whole or a single value) or runs of rows along axis 0 (inputs
    broadcast along the other axes). A trailing reduction is applied per block: into the output's
    rows when it reduces trailing axes, into per-block partial results when it reduces everything.
    """

    def __init__(self, backend: NumpyBackend, node):
        self.backend = backend
        self.node = node
        body = node.attrs["body"]
        self.reduce = node.attrs.get("reduce")
        self.matmul = node.op == "fused_matmul"
        self.flags = (node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False))
        self.out_type = node.types[0]
        in_types = [t.type for t in node.inputs]
        if self.matmul:  # body input 0 is the GEMM result, which has the output's type
            in_types = [self.out_type, *in_types[2:]]
        in_shapes = [t.shape for t in in_types]
        shape = self.out_type.shape if self.matmul else broadcast_shapes(*in_shapes)
        self.size = math.prod(shape)
        self.full_reduce = self.reduce is not None and self.reduce[1] == tuple(range(len(shape)))
        full = [s == shape for s in in_shapes]
        single = [math.prod(s) == 1 for s in in_shapes]
        self.flat = all(f or s for f, s in zip(full, single)) and (self.reduce is None or self.full_reduce)
        row = math.prod(shape[1:])
        self.step = BLOCK if self.flat else max(1, BLOCK // max(row, 1))
        self.n = self.size if self.flat else (shape[0] if shape else 1)
        self.sliced = [f if self.flat else (len(s) == len(shape) > 0 and s[0] == shape[0])
                       for f, s in zip(full, in_shapes)]  # fmt: skip
        if len(body) <= 2 and self.size <= SHORT_WHOLE_MAX:
            self.step = self.n  # one block: see SHORT_WHOLE_MAX
        # large kernels run in blocks, with scratch buffers kept per thread (small ones call ``whole``)
        self.blocked = self.size > 2 * BLOCK and (self.n >= 2 * self.step or self.step == self.n)
        # the blocks split into one range of rows or elements per thread (GRAPHC_NUM_THREADS, read
        # when the kernel is bound)
        self.ranges = [(0, self.n)]
        if self.blocked:
            nblocks = -(-self.n // self.step)
            threads = min(num_threads(), nblocks) if self.size >= PARALLEL_MIN else 1
            per = -(-nblocks // threads) * self.step
            self.ranges = [(lo, min(self.n, lo + per)) for lo in range(0, self.n, per)]
        self.tail = () if self.flat else tuple(shape[1:])
        dtypes = [np.dtype(d) for _op, _a, _at, d in body]
        self.scratch_dtypes = dtypes if self.reduce is not None else dtypes[:-1]
        two_d = self.matmul and node.inputs[0].ndim == 2 and node.inputs[1].ndim == 2
        gemm_flags = (*self.flags, two_d) if self.matmul else None
        self.whole, self.blocks, self.source = _generate(
            body, len(in_types), self.sliced, self.out_type, gemm_flags, self.reduce, self.full_reduce
        )

    def __call__(self, *arrays, out=None):
        if out is None:
            out = np.empty(self.out_type.shape, self.out_type.dtype)
        if self.matmul:
            a, b, *rest = arrays
            arrays = (gemm(np, a, b, product_out(out, rest), *self.flags), *rest)
        if self.flat:
            arrays = [a.reshape(-1) if s else np.asarray(a).reshape(()) for a, s in zip(arrays, self.sliced)]
        if self.full_reduce:
            parts: list = [[] for _ in self.ranges]
        else:
            parts = [out.reshape(-1) if self.flat else out] * len(self.ranges)
        if len(self.ranges) == 1:
            self._range(arrays, parts[0], *self.ranges[0])
        else:
            futures = [self.backend.pool().submit(self._range, arrays, p, lo, hi)
                       for p, (lo, hi) in zip(parts[1:], self.ranges[1:])]  # fmt: skip
            self._range(arrays, parts[0], *self.ranges[0])
            for f in futures:
                f.result()
        if self.full_reduce:  # combine the per-block partial results
            ufunc = getattr(np, self.reduce[0])
            with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
                out[...] = ufunc.reduce(np.asarray([x for p in parts for x in p], dtype=out.dtype))
        return out

    def _range(self, arrays, target, lo, hi):
        """Rows or elements [lo, hi) of the output, with this thread's own scratch buffers."""
        step = self.step
        scratch = _scratch((step, *self.tail), self.scratch_dtypes)
        full_hi = lo + (hi - lo) // step * step
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            if full_hi > lo:
                self.blocks(*arrays, target, lo, full_hi, step, *scratch)
            if full_hi < hi:
                m = hi - full_hi
                self.blocks(*arrays, target, full_hi, hi, m, *(s[:m] for s in scratch))


_THREAD = threading.local()  # .scratch: this thread's scratch memory for fused kernels


def _scratch(shape: tuple, dtypes: list) -> list:
    """Scratch arrays of ``shape``, one per dtype, as views of byte buffers this thread keeps and
    grows to the largest request (a thread runs one kernel at a time, so kernels share them).
    Allocating them per call costs page faults: a 256 KB array is a fresh mapping each time."""
    pool = getattr(_THREAD, "scratch", None)
    if pool is None:
        pool = _THREAD.scratch = {"bytes": [], "views": {}}
    key = (shape, tuple(dtypes))
    views = pool["views"].get(key)
    if views is None:
        buffers, count = pool["bytes"], math.prod(shape)
        for i, d in enumerate(dtypes):
            if i == len(buffers) or buffers[i].nbytes < count * d.itemsize:
                buffers[i : i + 1] = [np.empty(count * d.itemsize, np.uint8)]
                pool["views"].clear()  # views of the buffer it replaces must not be handed out again
        views = [buffers[i][: count * d.itemsize].view(d).reshape(shape) for i, d in enumerate(dtypes)]
        pool["views"][key] = views
    return views


def _generate(body, n_in: int, sliced, out_type, gemm_flags, reduce, full_reduce: bool) -> tuple:
    """Source for ``whole(*inputs, out=None)`` (for ``fused_matmul``, ``gemm_flags`` holds the
    GEMM's transpose flags and whether both operands are 2-D, and its operands come first) and
    ``blocks(*inputs, out, lo, hi, step, *scratch)``; small kernels skip warnings for speed.

    With a reduction, the body's result goes to scratch and is reduced into ``out[start:stop]``
    (trailing axes) or appended to ``out``, then a list of partial results (all axes).
    """
    env = {"np": np, "gemm": gemm, "SHAPE": out_type.shape, "DTYPE": out_type.dtype}
    calls = []
    for i, (op, args, attrs, _dtype) in enumerate(body):
        opdef = REGISTRY[op]
        if opdef.ufunc is not None and not attrs:
            fn = f"np.{opdef.ufunc}"
        else:
            fn = f"K{i}"
            env[fn] = functools.partial(opdef.kernel, np, **dict(attrs))
        calls.append((fn, args))
    last = len(body) - 1
    ins = [f"x{i}" for i in range(n_in)]
    if reduce is not None:
        env["R"] = getattr(np, reduce[0])
        env["AXES"], env["KEEPDIMS"] = reduce[1], reduce[2]

    params = ["a", "b", *ins[1:]] if gemm_flags is not None else ins
    whole = [f"def whole({', '.join(params)}, out=None):"]
    whole.append("    if out is None:")
    whole.append("        out = np.empty(SHAPE, DTYPE)")
    # the product goes where ops.fused.product_out says, inlined
    target = f"None if {' or '.join(f'out is {x}' for x in ins[1:])} else out" if n_in > 1 else "out"
    if gemm_flags is not None and gemm_flags[2]:  # np.dot straight to BLAS (see linalg.gemm)
        a, b = "a.T" if gemm_flags[0] else "a", "b.T" if gemm_flags[1] else "b"
        whole.append(f"    g = {target}")
        whole.append(f"    x0 = np.dot({a}, {b}, out=g) if out.flags.c_contiguous else np.matmul({a}, {b}, out=g)")
    elif gemm_flags is not None:
        whole.append(f"    x0 = gemm(np, a, b, {target}, {gemm_flags[0]}, {gemm_flags[1]})")
    vals = list(ins)
    for i, (fn, args) in enumerate(calls):
        dst = "out" if i == last and reduce is None else "None"
        whole.append(f"    t{i} = {fn}({', '.join(vals[a] for a in args)}, out={dst})")
        vals.append(f"t{i}")
    if reduce is not None:
        whole.append(f"    R.reduce(t{last}, axis=AXES, keepdims=KEEPDIMS, out=out)")
    whole.append("    return out")

    scratch = [f"s{i}" for i in range(last + (reduce is not None))]
    blocks = [f"def blocks({', '.join(ins)}, out, lo, hi, step{''.join(', ' + s for s in scratch)}):"]
    blocks.append("    for start in range(lo, hi, step):")
    blocks.append("        stop = start + step")
    vals = [f"{x}[start:stop]" if s else x for x, s in zip(ins, sliced)]
    for i, (fn, args) in enumerate(calls):
        dst = "out[start:stop]" if i == last and reduce is None else f"s{i}"
        blocks.append(f"        {fn}({', '.join(vals[a] for a in args)}, out={dst})")
        vals.append(f"s{i}")
    if full_reduce:
        blocks.append(f"        out.append(R.reduce(s{last}, axis=None))")
    elif reduce is not None:
        blocks.append(f"        R.reduce(s{last}, axis=AXES, keepdims=KEEPDIMS, out=out[start:stop])")
    source = "\n".join(whole) + "\n\n" + "\n".join(blocks) + "\n"
    code = _compile(source)
    exec(code, env)  # our own generated text, never file content
    return env["whole"], env["blocks"], source


@functools.lru_cache(maxsize=4096)
def _compile(source: str):
    """Bytecode for generated kernel source: models repeat the same fused body many times."""
    return compile(source, "<graphc fused kernel>", "exec")
