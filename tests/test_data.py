"""graphc.data.DataLoader: structure, order and determinism, errors, thread shutdown, overlap.

No sleeps and no timing assertions: concurrency is shown with events (a rendezvous between the
consumer and a worker can only complete if both run at once); timeouts only bound a failure.
"""

from __future__ import annotations

import gc as pygc
import threading
import traceback

import numpy as np
import pytest

import graphc as gc

WAIT = 10.0  # seconds: only reached when the behaviour under test is broken


def _data_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("graphc-data")]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    assert not _data_threads()
    yield
    assert not _data_threads(), "a test leaked DataLoader threads"


def _arrays(n=10):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n)


@pytest.mark.parametrize("prefetch,workers", [(0, 1), (2, 1), (3, 3)])
def test_structure_and_every_example_once(prefetch, workers):
    x, y = _arrays(10)
    loader = gc.data.DataLoader((x, y), batch_size=4, seed=1, prefetch=prefetch, workers=workers)
    assert len(loader) == 3
    batches = list(loader)
    assert [type(b) for b in batches] == [tuple] * 3
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for bx, by in batches:  # rows stay paired across the arrays
        np.testing.assert_array_equal(bx, x[by])
        assert bx.dtype == np.float32
    dict_batches = list(gc.data.DataLoader({"x": x, "y": y}, batch_size=4, shuffle=False, prefetch=prefetch))
    assert list(dict_batches[0]) == ["x", "y"]
    np.testing.assert_array_equal(dict_batches[1]["y"], [4, 5, 6, 7])
    single = list(gc.data.DataLoader(y, batch_size=5, shuffle=False, prefetch=prefetch))
    assert isinstance(single[0], np.ndarray)
    np.testing.assert_array_equal(single[1], [5, 6, 7, 8, 9])


def test_drop_last():
    x, y = _arrays(10)
    loader = gc.data.DataLoader((x, y), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(b[1]) for b in loader] == [4, 4]
    assert len(gc.data.DataLoader((x, y), batch_size=5, drop_last=True)) == 2


def test_epochs_reshuffle_deterministically_from_seed_and_epoch():
    _, y = _arrays(50)

    def epochs(loader, k):
        return [np.concatenate([b for b in loader]).tolist() for _ in range(k)]

    a = epochs(gc.data.DataLoader(y, batch_size=8, seed=7), 3)
    b = epochs(gc.data.DataLoader(y, batch_size=8, seed=7, prefetch=0), 3)
    c = epochs(gc.data.DataLoader(y, batch_size=8, seed=8), 1)
    assert a == b  # the same with and without background threads
    assert a[0] != a[1] != a[2]  # every epoch its own order
    assert c[0] != a[0]
    resumed = gc.data.DataLoader(y, batch_size=8, seed=7)
    resumed.set_epoch(2)
    assert epochs(resumed, 1)[0] == a[2]
    assert epochs(gc.data.DataLoader(y, batch_size=8, shuffle=False), 1)[0] == list(range(50))


def test_a_transform_asking_for_rng_gets_one_per_batch_whatever_the_workers():
    x, _ = _arrays(40)

    def jitter(batch, rng):  # a random augmentation: its noise must not depend on scheduling
        return batch + rng.normal(size=batch.shape).astype(batch.dtype)

    def run(**kw):
        loader = gc.data.DataLoader(x, batch_size=6, seed=3, transform=jitter, **kw)
        return [[b.copy() for b in loader] for _ in range(2)]

    one = run(prefetch=0)
    for kw in ({"prefetch": 2, "workers": 1}, {"prefetch": 4, "workers": 3}):
        for e1, e2 in zip(one, run(**kw)):
            for b1, b2 in zip(e1, e2):
                np.testing.assert_array_equal(b1, b2)
    # batch i of epoch e: the loader's rows plus the draws of default_rng([seed, e, i])
    loader = gc.data.DataLoader(x, batch_size=6, seed=3)
    for epoch in range(2):
        order = loader.order(epoch)
        for i, got in enumerate(one[epoch]):
            rows = x[order[i * 6 : (i + 1) * 6]]
            noise = np.random.default_rng([3, epoch, i]).normal(size=rows.shape).astype(np.float32)
            np.testing.assert_array_equal(got, rows + noise)
    # a transform without an rng parameter is called with the batch alone
    plain = gc.data.DataLoader(x, batch_size=6, shuffle=False, transform=lambda batch: batch * 2)
    np.testing.assert_array_equal(next(iter(plain)), x[:6] * 2)


def test_order_is_preserved_when_a_later_batch_finishes_first():
    """Batch 0's transform cannot finish until batch 1's has: with two workers, batch 1 is ready
    first, and the loader must still yield batch 0 first."""
    batch1_done = threading.Event()

    def transform(batch):
        if batch[0] == 0:
            assert batch1_done.wait(WAIT), "batch 1 was never prepared beside batch 0"
        elif batch[0] == 1:
            batch1_done.set()
        return batch

    loader = gc.data.DataLoader(np.arange(6), batch_size=1, shuffle=False, workers=2, transform=transform)
    assert [int(b[0]) for b in loader] == [0, 1, 2, 3, 4, 5]


def test_transform_runs_in_a_worker_and_overlaps_the_consumer():
    """A rendezvous: while the consumer holds batch 0 it waits for batch 1's transform to start,
    and that transform waits for the consumer to be working. Both complete only if preparation
    and consumption really run at the same time."""
    consumer_working = threading.Event()
    started = {i: threading.Event() for i in range(4)}
    threads = set()

    def transform(batch):
        i = int(batch[0])
        threads.add(threading.current_thread().name)
        started[i].set()
        if i == 1:
            assert consumer_working.wait(WAIT), "the consumer never started working on batch 0"
        return batch * 10

    loader = gc.data.DataLoader(np.arange(4), batch_size=1, shuffle=False, prefetch=2, transform=transform)
    got = []
    for batch in loader:
        got.append(int(batch[0]))
        if got == [0]:
            consumer_working.set()
            assert started[1].wait(WAIT), "batch 1 was not prepared while the consumer worked on batch 0"
    assert got == [0, 10, 20, 30]
    assert threads == {"graphc-data-0"}


def test_prefetch_zero_prepares_in_the_consumer_thread_only_when_asked():
    started = []

    def transform(batch):
        started.append((int(batch[0]), threading.current_thread().name))
        return batch

    loader = gc.data.DataLoader(np.arange(3), batch_size=1, shuffle=False, prefetch=0, transform=transform)
    it = iter(loader)
    next(it)
    assert started == [(0, threading.current_thread().name)]  # nothing prepared ahead
    assert [int(b[0]) for b in it] == [1, 2]


def test_prefetch_bounds_how_far_ahead_workers_go():
    started = []
    done = {i: threading.Event() for i in range(8)}

    def transform(batch):
        i = int(batch[0])
        started.append(i)
        done[i].set()
        return batch

    loader = gc.data.DataLoader(np.arange(8), batch_size=1, shuffle=False, prefetch=2, transform=transform)
    it = iter(loader)
    assert int(next(it)[0]) == 0
    assert done[2].wait(WAIT)  # batches 1 and 2 get prepared while the consumer holds batch 0 ...
    assert sorted(started) == [0, 1, 2]  # ... and batch 3 waits until batch 1 is taken
    assert int(next(it)[0]) == 1
    assert done[3].wait(WAIT)
    it.close()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_worker_exception_is_raised_in_the_loop_with_its_traceback(prefetch):
    def bad_transform(batch):
        if batch[0] == 2:
            raise ValueError("corrupt example 2")
        return batch

    loader = gc.data.DataLoader(np.arange(5), batch_size=1, shuffle=False, prefetch=prefetch, workers=2,
                                transform=bad_transform)  # fmt: skip
    got = []
    with pytest.raises(gc.data.DataLoaderError, match="batch 2 failed.*ValueError: corrupt example 2") as info:
        for batch in loader:
            got.append(int(batch[0]))
    assert got == [0, 1]  # the batches before the failure arrive, in order
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert "bad_transform" in [f.name for f in traceback.extract_tb(cause.__traceback__)]
    text = "".join(traceback.format_exception(info.value))
    assert "raise ValueError" in text and "direct cause" in text
    assert isinstance(info.value, gc.GraphcError)


def test_breaking_out_early_stops_the_threads():
    loader = gc.data.DataLoader(np.arange(100), batch_size=1, prefetch=4, workers=3)
    for i, _ in enumerate(loader):
        if i == 0:
            assert len(_data_threads()) == 3
        if i == 5:
            break
    assert not _data_threads()  # the dropped iterator was collected and joined its threads


def test_dropped_and_closed_iterators_stop_their_threads():
    loader = gc.data.DataLoader(np.arange(100), batch_size=1, prefetch=2, workers=2)
    it = iter(loader)
    next(it)
    assert _data_threads()
    del it
    pygc.collect()
    assert not _data_threads()
    it = iter(loader)
    next(it)
    it.close()
    assert not _data_threads()
    with pytest.raises(StopIteration):
        next(it)
    assert len(list(loader)) == 100  # a finished epoch leaves no threads either (checked by the fixture)


def test_bad_arguments_raise():
    with pytest.raises(gc.GraphcError, match="equally long"):
        gc.data.DataLoader((np.zeros(3), np.zeros(4)), batch_size=2)
    with pytest.raises(gc.GraphcError, match="batch_size"):
        gc.data.DataLoader(np.zeros(3), batch_size=0)
    with pytest.raises(gc.GraphcError, match="workers"):
        gc.data.DataLoader(np.zeros(3), batch_size=1, workers=0)


def test_bench_data_quick_runs_and_checks_batches(tmp_path):
    """Smoke test of tools/bench_data.py (no timing assertions: speed lives in the benchmark)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "bench_data.py"
    out = tmp_path / "bench_data.json"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["seconds_per_step"]
    assert set(rows) == {"sleep 4 ms", "numpy augment x6"}
    for row in rows.values():
        assert set(row) == {"step alone", "transform alone", "prefetch=0 (sync)", "prefetch=2 workers=1",
                            "prefetch=4 workers=2"} and all(t > 0 for t in row.values())  # fmt: skip
