"""The CPU backend: NumPy arrays; fused elementwise nodes run as ufuncs over cache-sized blocks.

A fused body is evaluated block by block (16K elements: the working set of all its temporaries
stays in L2) into small scratch buffers, so each element is read from and written to memory once
instead of once per op; large tensors split their blocks over a thread pool (ufuncs release the
GIL). Small tensors skip the blocking and run the ufuncs on whole arrays.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..ops.registry import REGISTRY

BLOCK = 16384  # elements per block
PARALLEL_MIN = 1 << 18  # elements before a fused kernel uses more than one thread


def num_threads() -> int:
    return max(1, int(os.environ.get("GRAPHC_NUM_THREADS", os.cpu_count() or 1)))


class NumpyBackend:
    name = "cpu"
    xp = np

    def __init__(self):
        self._pool = None
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

    def bind(self, node):
        """The node's kernel with the array module and attributes bound: kernel(*arrays, out=...)."""
        if node.op in ("fused_elementwise", "fused_matmul"):
            return FusedKernel(self, node)
        opdef = REGISTRY[node.op]
        return functools.partial(opdef.kernel, np, **node.attrs)


BACKEND = NumpyBackend()  # one pool per process, shared by every compiled function


class FusedKernel:
    """A fused body bound to the static shapes of one plan."""

    def __init__(self, backend: NumpyBackend, node):
        self.backend = backend
        self.node = node
        body = node.attrs["body"]
        self.matmul = node.op == "fused_matmul"
        self.instrs = [
            (functools.partial(REGISTRY[op].kernel, np, **dict(attrs)), args, np.dtype(dtype))
            for op, args, attrs, dtype in body
        ]
        self.out_type = node.types[0]
        in_types = [t.type for t in node.inputs]
        if self.matmul:  # body input 0 is the GEMM result, which has the output's type
            in_types = [self.out_type, *in_types[2:]]
        self.in_shapes = [t.shape for t in in_types]
        self.size = int(np.prod(self.out_type.shape, dtype=np.int64))
        shape = self.out_type.shape
        full = [s == shape for s in self.in_shapes]
        scalar = [int(np.prod(s, dtype=np.int64)) == 1 for s in self.in_shapes]
        # flat blocking when every input is whole or a single value; else blocks of whole rows
        self.flat = all(f or s for f, s in zip(full, scalar))
        row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        self.rows = max(1, BLOCK // max(row, 1))
        self.sliced = [f if self.flat else (len(s) == len(shape) and len(s) > 0 and s[0] == shape[0])
                       for f, s in zip(full, self.in_shapes)]  # fmt: skip
        self.blocked = self.size > 2 * BLOCK and (self.flat or (len(shape) > 1 and shape[0] > self.rows))

    def __call__(self, *arrays, out=None):
        if out is None:
            out = np.empty(self.out_type.shape, self.out_type.dtype)
        if self.matmul:
            a, b, *rest = arrays
            arrays = (np.matmul(a, b, out=out), *rest)
        if not self.blocked:
            return self._run(arrays, out)
        if self.flat:
            views = [a.reshape(-1) if s else np.asarray(a).reshape(()) for a, s in zip(arrays, self.sliced)]
            target, n, step = out.reshape(-1), self.size, BLOCK
        else:
            views = list(arrays)
            target, n, step = out, self.out_type.shape[0], self.rows
        nblocks = -(-n // step)
        threads = min(num_threads(), nblocks) if self.size >= PARALLEL_MIN else 1
        chunk = -(-nblocks // threads)
        ranges = [(c * chunk * step, min(n, (c + 1) * chunk * step)) for c in range(threads)]
        ranges = [r for r in ranges if r[0] < r[1]]
        futures = [self.backend.pool().submit(self._blocks, views, target, lo, hi, step) for lo, hi in ranges[1:]]
        self._blocks(views, target, *ranges[0], step)
        for f in futures:
            f.result()
        return out

    def _run(self, inputs, out):
        """All instructions on whole arrays; the last one writes ``out``."""
        vals = list(inputs)
        last = len(self.instrs) - 1
        with np.errstate(over="ignore", under="ignore"):
            for i, (fn, args, _dtype) in enumerate(self.instrs):
                vals.append(fn(*(vals[a] for a in args), out=out if i == last else None))
        return out

    def _blocks(self, views, target, lo, hi, step):
        """Blocks [lo, hi) of the (flattened or row-blocked) output, with private scratch."""
        tail = target.shape[1:] if not self.flat else ()
        scratch = [np.empty((step, *tail), dtype) for _fn, _args, dtype in self.instrs[:-1]]
        last = len(self.instrs) - 1
        sliced = self.sliced
        with np.errstate(over="ignore", under="ignore"):
            for start in range(lo, hi, step):
                stop = min(start + step, hi)
                m = stop - start
                vals = [v[start:stop] if s else v for v, s in zip(views, sliced)]
                for i, (fn, args, _dtype) in enumerate(self.instrs):
                    dst = target[start:stop] if i == last else scratch[i][:m]
                    vals.append(fn(*(vals[a] for a in args), out=dst))
