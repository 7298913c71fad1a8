"""Data pipeline: arrays in, batches out, prepared by background threads ahead of the training loop.

``DataLoader(arrays, batch_size)`` takes a tuple (or list) or dict of equally long arrays, or one
array, and yields batches of the same structure. Indexing, shuffling and the user's ``transform``
run in ``workers`` threads up to ``prefetch`` batches ahead of the consumer, so a slow transform
overlaps the compiled step instead of adding to it (NumPy, I/O and ``time.sleep`` release the GIL).
"""

from __future__ import annotations

import inspect
import math
import threading
import weakref
from collections.abc import Callable

import numpy as np

from .errors import GraphcError

__all__ = ["DataLoader", "DataLoaderError"]


class DataLoaderError(GraphcError, RuntimeError):
    """Preparing a batch failed; the original exception (and its traceback) is the ``__cause__``."""


class DataLoader:
    """Batches of ``arrays``, reshuffled every epoch, prepared in background threads.

    Parameters
    ----------
    arrays : tuple or list of arrays, dict of arrays, or one array
        Equally long along the first axis; batches come in the same structure (a list as a tuple).
    batch_size : int
    shuffle : bool, default True
        Each epoch's order is a permutation drawn from ``(seed, epoch)``: the same on every run.
    seed : int, default 0
    drop_last : bool, default False
        Leave out the last batch when it is smaller than ``batch_size``.
    prefetch : int, default 2
        Batches prepared ahead of the consumer; 0 prepares each batch in the consumer's thread when
        it asks for it (no threads). With ``workers`` > ``prefetch``, ``workers`` batches are.
    workers : int, default 1
        Threads preparing batches; batches come out in order whichever finishes first.
    transform : callable, optional
        ``transform(batch) -> batch``, run in the worker threads (augmentation, normalization,
        decoding). An exception in it is raised in the loop as ``DataLoaderError`` from it. A
        transform with a parameter named ``rng`` is called ``transform(batch, rng=generator)``
        with a NumPy Generator seeded by ``(seed, epoch, batch index)``: random augmentation
        that is the same on every run, however many workers prepare the batches.

    Iterating starts epoch ``loader.epoch`` and advances it (``set_epoch`` to resume elsewhere).
    Leaving the loop early (``break``, an exception) or dropping the iterator stops its threads.
    """

    def __init__(self, arrays, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 prefetch: int = 2, workers: int = 1, transform: Callable | None = None):  # fmt: skip
        if isinstance(arrays, dict):
            self._keys: tuple | None = tuple(arrays)
            self._arrays = [np.asarray(a) for a in arrays.values()]
            self._kind = "dict"
        elif isinstance(arrays, (tuple, list)):
            self._keys, self._arrays, self._kind = None, [np.asarray(a) for a in arrays], "tuple"
        else:
            self._keys, self._arrays, self._kind = None, [np.asarray(arrays)], "array"
        if not self._arrays or any(a.ndim == 0 for a in self._arrays):
            raise GraphcError("DataLoader: arrays must be one or more arrays with a leading (example) axis")
        lengths = {len(a) for a in self._arrays}
        if len(lengths) != 1:
            raise GraphcError(f"DataLoader: arrays must be equally long: got lengths {[len(a) for a in self._arrays]}")
        for what, v, low in (("batch_size", batch_size, 1), ("prefetch", prefetch, 0), ("workers", workers, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise GraphcError(f"DataLoader: {what} must be an int >= {low}: got {v!r}")
        self.n = lengths.pop()
        self.batch_size, self.shuffle, self.seed, self.drop_last = int(batch_size), shuffle, seed, drop_last
        self.prefetch, self.workers, self.transform = int(prefetch), int(workers), transform
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order depends only on seed and epoch)."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The example indices of an epoch, in the order they are batched."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        make = _BatchMaker(self._arrays, self._kind, self._keys, lambda: self.order(epoch), self.batch_size,
                           _per_batch(self.transform, self.seed, epoch))  # fmt: skip
        if self.prefetch == 0:
            return _SyncIterator(make, len(self))
        return _PrefetchIterator(make, len(self), max(self.prefetch, self.workers), self.workers)


class _BatchMaker:
    """Batch ``i`` of one epoch: gather the rows, rebuild the structure, apply the transform.

    The epoch's permutation is drawn by the first batch that needs it (in a worker thread too).
    """

    def __init__(self, arrays, kind, keys, make_order: Callable[[], np.ndarray], batch_size, transform):
        self.arrays, self.kind, self.keys = arrays, kind, keys
        self.make_order, self.order, self.lock = make_order, None, threading.Lock()
        self.batch_size, self.transform = batch_size, transform

    def __call__(self, i: int):
        with self.lock:
            if self.order is None:
                self.order = self.make_order()
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        parts = [np.take(a, idx, axis=0) for a in self.arrays]  # copies: a transform may write them
        if self.kind == "dict":
            batch = dict(zip(self.keys, parts))
        else:
            batch = tuple(parts) if self.kind == "tuple" else parts[0]
        return batch if self.transform is None else self.transform(batch, i)


def _per_batch(transform, seed, epoch):
    """``transform`` as ``f(batch, i)``; one that declares a parameter ``rng`` gets a Generator of
    its own for every batch, drawn from (seed, epoch, i), so no worker depends on another's draws."""
    if transform is None:
        return None
    try:
        seeded = "rng" in inspect.signature(transform).parameters
    except (TypeError, ValueError):  # builtins without a signature
        seeded = False

    def apply(batch, i):
        if seeded:
            return transform(batch, rng=np.random.default_rng([seed, epoch, i]))
        return transform(batch)

    return apply


def _failure(i: int, exc: BaseException, where: str) -> DataLoaderError:
    """The error raised in the loop; raised ``from exc``, so the original traceback prints first."""
    return DataLoaderError(f"DataLoader: preparing batch {i} failed{where}: {type(exc).__name__}: {exc}")


class _SyncIterator:
    """prefetch=0: each batch is prepared in the consumer's thread when asked for."""

    def __init__(self, make: _BatchMaker, n: int):
        self.make, self.n, self.i = make, n, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= self.n:
            raise StopIteration
        i, self.i = self.i, self.i + 1
        try:
            return self.make(i)
        except Exception as e:
            self.i = self.n
            raise _failure(i, e, "") from e


class _Pipeline:
    """The state the worker threads share with the consumer; it never refers to the iterator, so
    dropping the iterator collects it, and its finalizer closes the pipeline."""

    def __init__(self, make: _BatchMaker, n: int, window: int, workers: int):
        self.make, self.n, self.window = make, n, window
        self.cond = threading.Condition()
        self.results: dict[int, tuple[bool, object, str]] = {}  # batch -> (ok, batch or error, thread)
        self.next_claim = 0  # the next batch a worker takes
        self.next_yield = 0  # the next batch the consumer takes
        self.closed = False
        self.threads = [threading.Thread(target=self.work, name=f"graphc-data-{k}", daemon=True)
                        for k in range(min(workers, n))]  # fmt: skip
        for t in self.threads:
            t.start()

    def work(self) -> None:
        while True:
            with self.cond:
                while not self.closed and self.next_claim < self.n and self.next_claim >= self.next_yield + self.window:
                    self.cond.wait()
                if self.closed or self.next_claim >= self.n:
                    return
                i = self.next_claim
                self.next_claim += 1
            try:
                result = (True, self.make(i), "")
            except BaseException as e:  # delivered to the consumer, raised there
                result = (False, e, threading.current_thread().name)
            with self.cond:
                if self.closed:
                    return
                self.results[i] = result
                self.cond.notify_all()

    def take(self):
        """The next batch in order, waiting for it; raises StopIteration after the last one."""
        with self.cond:
            if self.closed or self.next_yield >= self.n:
                raise StopIteration
            while self.next_yield not in self.results:
                self.cond.wait()
            i = self.next_yield
            ok, value, thread = self.results.pop(i)
            self.next_yield += 1
            self.cond.notify_all()  # a slot in the window is free
        if not ok:
            self.close()
            raise _failure(i, value, f" in worker thread '{thread}'") from value
        return value

    def close(self) -> None:
        """Stop the workers (each finishes the batch it is preparing) and wait for them."""
        with self.cond:
            self.closed = True
            self.results.clear()
            self.cond.notify_all()
        me = threading.current_thread()
        for t in self.threads:
            if t is not me:
                t.join()


class _PrefetchIterator:
    """The consumer's handle: taking batches, and closing the pipeline when dropped."""

    def __init__(self, make: _BatchMaker, n: int, window: int, workers: int):
        self._pipeline = _Pipeline(make, n, window, workers)
        self._finalizer = weakref.finalize(self, self._pipeline.close)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self._pipeline.take()
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        """Stop the worker threads now (also done when the iterator is garbage-collected)."""
        self._finalizer()
