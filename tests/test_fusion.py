"""Fusion and the CPU backend's fused kernels; memory planning, in-place writes and updates.

Fused kernels are checked against NumPy on every code path of ``FusedKernel``: whole arrays,
flat blocks, row blocks (inputs broadcast along rows or columns), trailing reductions, with one
thread and with two.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import graphc as gc
from graphc.backends.numpy_backend import BLOCK, PARALLEL_MIN, FusedKernel

F64 = "float64"


@pytest.fixture(autouse=True)
def verify_ir(monkeypatch):
    """The pass manager checks the IR after every pass of every function these tests compile.
    Fused kernels stay NumPy ones here (tests/test_native.py runs these cases in C)."""
    monkeypatch.setenv("GRAPHC_VERIFY", "1")
    monkeypatch.setenv("GRAPHC_NATIVE", "0")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request, monkeypatch):
    monkeypatch.setenv("GRAPHC_NUM_THREADS", str(request.param))
    return request.param


def ops(fn) -> list[str]:
    return [s.node.op for s in fn.plan.steps]


def fused_steps(fn) -> list:
    return [s for s in fn.plan.steps if s.node.op.startswith("fused_")]


def kernel_of(step) -> FusedKernel | None:
    """The FusedKernel behind a step (None when the backend bound its whole-array function)."""
    return step.kernel if isinstance(step.kernel, FusedKernel) else None


def blocked_kernel(fn, flat: bool, threaded: bool = True) -> FusedKernel:
    """The function's one fused kernel, checked to run in blocks (flat or rows), split over the
    threads when ``threaded``."""
    (step,) = fused_steps(fn)
    k = kernel_of(step)
    assert k is not None and k.blocked and k.flat == flat, fn.explain()
    assert (k.size >= PARALLEL_MIN) == threaded
    return k


def events(fn, kind: str) -> list[dict]:
    d = fn.explain(format="json")
    return [e for p in d["plans"] for r in p["passes"] for e in r["events"] if e["kind"] == kind]


# -- what fuses, and what is kept out and why -------------------------------------------------------
def test_an_elementwise_chain_is_one_kernel(rng):
    x = gc.placeholder((50, 40), F64, name="x")
    y = gc.tanh(2.0 * x + 1.0) * gc.sigmoid(x) + 0.5 * x * x - 1.0
    fn = gc.compile(y)
    assert ops(fn) == ["fused_elementwise"]
    d = fn.explain(format="json")
    (k,) = d["plans"][0]["kernels"]
    assert k["op"] == "fused_elementwise" and k["node"] == y.node.name
    for op in ("tanh", "sigmoid", "multiply", "add", "subtract"):
        assert op in k["expression"]
    (fuse,) = events(fn, "fuse")
    assert fuse["rule"] == "elementwise cluster" and len(fuse["nodes"]) >= 8
    assert not events(fn, "keep")
    xv = rng.normal(size=(50, 40))
    want = np.tanh(2 * xv + 1) * (1 / (1 + np.exp(-xv))) + 0.5 * xv * xv - 1
    np.testing.assert_allclose(fn(x=xv), want, rtol=1e-12, atol=1e-15)


def test_a_producer_with_a_consumer_outside_stays_out(rng):
    x = gc.placeholder((30,), F64, name="x")
    a = gc.exp(x) * 3.0
    y = gc.tanh(a) + a * a
    z = gc.sum(a)  # a second consumer of a, outside the cluster
    fn = gc.compile([y, z])
    keeps = [e for e in events(fn, "keep") if e["rule"] == "not fused: second consumer"]
    assert keeps and keeps[0]["nodes"][0] == a.node.name
    assert f"{a.node.name} is also used by sum" in keeps[0]["detail"]
    assert "second consumer" in fn.explain()
    clusters = [k["expression"] for k in fn.explain(format="json")["plans"][0]["kernels"] if "expression" in k]
    assert any(e.startswith("tanh") or "tanh(" in e for e in clusters)
    assert sum(e.count("exp(") for e in clusters) == 1  # exp computed once, in a's own kernel
    xv = rng.normal(size=30)
    av = np.exp(xv) * 3
    got = fn(x=xv)
    np.testing.assert_allclose(got[0], np.tanh(av) + av * av, rtol=1e-12)
    np.testing.assert_allclose(got[1], av.sum(), rtol=1e-12)


def test_a_producer_that_is_also_an_output_stays_out():
    x = gc.placeholder((30,), F64, name="x")
    a = gc.exp(x) * 3.0
    fn = gc.compile([gc.tanh(a) * 2.0, a])
    (keep,) = [e for e in events(fn, "keep") if e["rule"] == "not fused: second consumer"]
    assert "output of the function" in keep["detail"]
    out = fn(x=np.zeros(30))
    np.testing.assert_allclose(out[1], np.full(30, 3.0))
    np.testing.assert_allclose(out[0], np.tanh(np.full(30, 3.0)) * 2.0)


def test_a_broadcast_input_stays_out_with_a_reason(rng):
    x = gc.placeholder((20, 30), F64, name="x")
    v = gc.placeholder((30,), F64, name="v")
    e = gc.exp(v) + 1.0  # computed on 30 elements, not 600: fusing would redo it per row
    y = gc.tanh(x * e) - x
    fn = gc.compile(y)
    keeps = [k for k in events(fn, "keep") if k["rule"] == "not fused: broadcast input"]
    assert len(keeps) == 1 and keeps[0]["nodes"][0] == e.node.name
    assert "f64[30] is broadcast to f64[20,30]" in keeps[0]["detail"]
    kernels = fn.explain(format="json")["plans"][0]["kernels"]
    assert [k["type"] for k in kernels] == ["f64[30]", "f64[20,30]"]
    xv, vv = rng.normal(size=(20, 30)), rng.normal(size=30)
    np.testing.assert_allclose(fn(x=xv, v=vv), np.tanh(xv * (np.exp(vv) + 1)) - xv, rtol=1e-12)


def test_matmul_bias_relu_is_one_fused_matmul(rng):
    x = gc.placeholder((16, 12), F64, name="x")
    w = gc.variable(rng.normal(size=(12, 8)), name="w")
    b = gc.variable(rng.normal(size=8), name="b")
    y = gc.relu(x @ w + b)
    fn = gc.compile(y)
    assert ops(fn) == ["fused_matmul"]
    (fuse,) = events(fn, "fuse")
    assert fuse["rule"] == "matmul epilogue" and fuse["nodes"][0].startswith("matmul")
    (k,) = fn.explain(format="json")["plans"][0]["kernels"]
    assert k["expression"] == "relu(add((%x @ %w), %b))"
    xv = rng.normal(size=(16, 12))
    np.testing.assert_allclose(fn(x=xv), np.maximum(xv @ w.value + b.value, 0), rtol=1e-12)


def test_a_matmul_with_another_consumer_is_not_an_epilogue(rng):
    x = gc.placeholder((16, 12), F64, name="x")
    w = gc.variable(rng.normal(size=(12, 8)), name="w")
    h = x @ w
    fn = gc.compile([gc.relu(h + 1.0), gc.sum(h)])
    assert "fused_matmul" not in ops(fn) and "matmul" in ops(fn)
    xv = rng.normal(size=(16, 12))
    got = fn(x=xv)
    np.testing.assert_allclose(got[0], np.maximum(xv @ w.value + 1, 0), rtol=1e-12)
    np.testing.assert_allclose(got[1], (xv @ w.value).sum(), rtol=1e-12)


def test_training_graph_fuses_the_epilogue_with_its_gradient(rng):
    """relu's gradient reads relu's output, so forward GEMM + bias + relu still fuse in training."""
    x = gc.placeholder((32, 10), F64, name="x")
    w = gc.variable(rng.normal(size=(10, 6)) * 0.3, name="w")
    b = gc.variable(np.zeros(6), name="b")
    loss = gc.mean(gc.relu(x @ w + b) ** 2)
    gw, gb = gc.grad(loss, [w, b])
    fn = gc.compile([loss, gw, gb], opt_level=2)
    ref = gc.compile([loss, gw, gb], opt_level=0)
    assert "fused_matmul" in ops(fn)
    xv = rng.normal(size=(32, 10))
    for a, e in zip(fn(x=xv), ref(x=xv)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-15)


# -- convolution and pooling: bias and relu after the pool ------------------------------------------
def test_cnn_bias_and_relu_run_after_the_pool(rng):
    """Inference: conv + bias + relu + pool computes the pool first (relu and a per-channel bias
    commute with a window's maximum), and the pool then absorbs the convolution (one conv2d_pool
    kernel); training: relu's gradient mask is applied to the pooled gradient. Both are the
    unoptimized function's values."""
    x = gc.placeholder((4, 2, 9, 8), F64, name="x")
    w = gc.variable(rng.normal(size=(5, 2, 3, 3)), name="w")
    b = gc.variable(rng.normal(size=(5, 1, 1)), name="b")
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, w) + b), 2)
    predict = gc.compile(h)
    assert ops(predict) == ["conv2d_pool", "fused_elementwise"]
    (k,) = [k for k in predict.explain(format="json")["plans"][0]["kernels"] if "expression" in k]
    assert k["expression"].startswith("relu(add(%max_pool2d") and k["expression"].endswith(", %b))")
    assert "conv2d" in ops(gc.compile([h, gc.conv2d(x, w)]))  # (a second consumer: not absorbed)
    loss = gc.sum(h * h)
    grads = gc.grad(loss, [w, b])
    train = gc.compile([loss, *grads])
    bodies = [s.node.attrs["body"] for s in fused_steps(train)]
    masks = [s for s in fused_steps(train) if any(op == "greater" for op, *_ in s.node.attrs["body"])]
    assert bodies and [s.node.types[0].shape for s in masks] == [(4, 5, 3, 3)]  # the pooled shape
    xv = rng.normal(size=(4, 2, 9, 8))
    np.testing.assert_allclose(predict(x=xv), gc.compile(h, opt_level=0)(x=xv), rtol=1e-12)
    for got, want in zip(train(x=xv), gc.compile([loss, *grads], opt_level=0)(x=xv)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# -- FusedKernel against NumPy on every path ---------------------------------------------------------
def _w3(x, a, b):
    return np.tanh(a * x + b) * (1 / (1 + np.exp(-x))) + 0.5 * x * x - 1.0


def test_flat_blocks_with_a_tail(rng, threads):
    n = 4 * BLOCK + 123  # several blocks, a partial last block; over PARALLEL_MIN: threads split it
    assert n > PARALLEL_MIN and n % BLOCK
    x = gc.placeholder((n,), "float32", name="x")
    a = gc.placeholder((), "float32", name="a")  # single values are not sliced
    y = gc.tanh(a * x + 0.25) * gc.sigmoid(x) + 0.5 * x * x - 1.0
    fn = gc.compile(y)
    blocked_kernel(fn, flat=True)
    xv = rng.normal(size=n).astype("float32")
    got = fn(x=xv, a=np.float32(1.5))
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_allclose(got, _w3(xv.astype(F64), 1.5, 0.25), rtol=2e-6, atol=2e-6)
    xv2 = rng.normal(size=n).astype("float32")  # a second call: scratch buffers are reused
    np.testing.assert_allclose(fn(x=xv2, a=np.float32(-2.0)), _w3(xv2.astype(F64), -2.0, 0.25), rtol=2e-6, atol=2e-6)


def test_flat_blocks_of_a_multidimensional_tensor(rng, threads):
    shape = (4, 9, BLOCK // 7)  # rows shorter than a block: flat blocks cut across rows
    x = gc.placeholder(shape, F64, name="x")
    y = gc.placeholder(shape, F64, name="y")
    fn = gc.compile(gc.exp(-x * x) * y + gc.sqrt(1.0 + y * y))
    blocked_kernel(fn, flat=True)
    xv, yv = rng.normal(size=shape), rng.normal(size=shape)
    np.testing.assert_allclose(fn(x=xv, y=yv), np.exp(-xv * xv) * yv + np.sqrt(1 + yv * yv), rtol=1e-13)


@pytest.mark.parametrize("bias_shape", [(None, "row"), (1, "column"), (2, "both")], ids=["row", "column", "both"])
def test_row_blocks_with_broadcast_inputs(rng, threads, bias_shape):
    m, n = 4 * (BLOCK // 100) + 37, 100  # rows of 100: 655 rows per block, a partial last block
    x = gc.placeholder((m, n), F64, name="x")
    row = gc.placeholder((n,), F64, name="row")
    col = gc.placeholder((m, 1), F64, name="col")
    kind = bias_shape[1]
    if kind == "row":
        y = gc.tanh(x * 0.5 + row) * x
    elif kind == "column":
        y = gc.tanh(x * 0.5 + col) * x
    else:
        y = gc.tanh(x * 0.5 + row) * col - x
    fn = gc.compile(y)
    k = blocked_kernel(fn, flat=False)
    assert k.n == m and m % k.step
    xv, rv, cv = rng.normal(size=(m, n)), rng.normal(size=n), rng.normal(size=(m, 1))
    want = {"row": np.tanh(xv * 0.5 + rv) * xv, "column": np.tanh(xv * 0.5 + cv) * xv,
            "both": np.tanh(xv * 0.5 + rv) * cv - xv}[kind]  # fmt: skip
    got = fn(x=xv, row=rv, col=cv)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_rows_longer_than_a_block(rng, threads):
    m, n = 5, BLOCK + 3  # one row per block
    x = gc.placeholder((m, n), F64, name="x")
    v = gc.placeholder((n,), F64, name="v")
    fn = gc.compile(gc.exp(x * v) - v)
    k = blocked_kernel(fn, flat=False)
    assert k.step == 1
    xv, vv = rng.normal(size=(m, n)), rng.normal(size=n)
    np.testing.assert_allclose(fn(x=xv, v=vv), np.exp(xv * vv) - vv, rtol=1e-13)


def test_a_short_body_runs_as_one_block_with_per_thread_scratch(rng):
    n = 4 * BLOCK + 9  # over the blocking size, but a two-op body: one block (SHORT_WHOLE_MAX)
    w = gc.variable(rng.normal(size=n), name="w")
    g = gc.placeholder((n,), F64, name="g")
    fn = gc.compile(None, updates=[(w, w - 0.5 * g)])
    (step,) = fused_steps(fn)
    k = kernel_of(step)
    assert k is not None and k.blocked and k.step == k.n == n
    w0, gv = w.value, rng.normal(size=n)
    fn(g=gv)
    np.testing.assert_array_equal(w.value, w0 - 0.5 * gv)


def test_kernels_share_scratch_within_a_thread_never_across_threads(rng):
    """Fused kernels of different shapes and bodies run from several threads at once: each thread's
    scratch buffers serve one kernel at a time (they grow to the largest request)."""
    fns, feeds, wants = [], [], []
    for i, n in enumerate((2 * BLOCK + 5, 5 * BLOCK + 1, 3 * BLOCK)):
        x = gc.placeholder((n,), F64, name=f"x{i}")
        fns.append(gc.compile(gc.tanh(x * (i + 1.0)) * gc.sigmoid(x) + x * x))
        xv = rng.normal(size=n)
        feeds.append(xv)
        wants.append(np.tanh(xv * (i + 1.0)) / (1 + np.exp(-xv)) + xv * xv)
    assert all(kernel_of(fused_steps(f)[0]).blocked for f in fns)
    errors = []

    def work(order):
        for _ in range(20):
            for i in order:
                got = fns[i]({f"x{i}": feeds[i]})
                if not np.allclose(got, wants[i], rtol=1e-12, atol=1e-12):
                    errors.append(i)

    threads = [threading.Thread(target=work, args=(o,)) for o in ([0, 1, 2], [2, 1, 0], [1, 0, 2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_small_tensors_run_whole(rng):
    x = gc.placeholder((7, 9), F64, name="x")
    v = gc.placeholder((9,), F64, name="v")
    fn = gc.compile(gc.tanh(x + v) * gc.sigmoid(x) - v * 2.0)
    (step,) = fused_steps(fn)
    assert kernel_of(step) is None and callable(step.kernel)  # the generated whole-array function
    xv, vv = rng.normal(size=(7, 9)), rng.normal(size=9)
    want = np.tanh(xv + vv) / (1 + np.exp(-xv)) - vv * 2
    np.testing.assert_allclose(fn(x=xv, v=vv), want, rtol=1e-13)


@pytest.mark.parametrize("n", [100, 4 * BLOCK + 5], ids=["whole", "blocked"])
def test_mixed_dtypes_with_a_bool_mask(rng, threads, n):
    x = gc.placeholder((n,), "float32", name="x")
    m = gc.placeholder((n,), "bool", name="m")
    y = gc.where(m, gc.tanh(x) * 2.0, x * x - 1.0) + gc.cast(x > 0.5, "float32")
    fn = gc.compile(y)
    if n > 2 * BLOCK:
        blocked_kernel(fn, flat=True)
    else:
        (step,) = fused_steps(fn)
        assert kernel_of(step) is None
    xv = rng.normal(size=n).astype("float32")
    mv = rng.random(n) < 0.5
    got = fn(x=xv, m=mv)
    want = np.where(mv, np.tanh(xv) * 2, xv * xv - 1) + (xv > 0.5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("n", [300, 4 * BLOCK + 77], ids=["whole", "blocked"])
def test_fused_full_reduction(rng, threads, n):
    x = gc.placeholder((n,), F64, name="x")
    s = gc.sum(gc.tanh(x) * x + 1.0)
    mx = gc.max(gc.sin(x) * x)
    fn = gc.compile([s, mx])
    steps = fused_steps(fn)
    assert [s.node.attrs.get("reduce", (None,))[0] for s in steps] == ["add", "maximum"], fn.explain()
    assert all((kernel_of(s) is not None) == (n > 2 * BLOCK) for s in steps)
    xv = rng.normal(size=n)
    got = fn(x=xv)
    np.testing.assert_allclose(got[0], (np.tanh(xv) * xv + 1).sum(), rtol=1e-12)
    assert got[1] == (np.sin(xv) * xv).max()
    assert got[0].shape == () and got[1].shape == ()


@pytest.mark.parametrize("keepdims", [False, True])
def test_fused_trailing_reduction_over_row_blocks(rng, threads, keepdims):
    m, n = 6 * (BLOCK // 50) + 11, 50
    x = gc.placeholder((m, n), F64, name="x")
    b = gc.placeholder((n,), F64, name="b")
    y = gc.sum(gc.exp(-x * x) * b + x, axis=1, keepdims=keepdims)
    fn = gc.compile(y)
    k = blocked_kernel(fn, flat=False)
    assert k.reduce == ("add", (1,), keepdims)
    xv, bv = rng.normal(size=(m, n)), rng.normal(size=n)
    got = fn(x=xv, b=bv)
    want = (np.exp(-xv * xv) * bv + xv).sum(axis=1, keepdims=keepdims)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_fused_kernel_results_match_the_unfused_function(rng, threads):
    """A softmax-style graph whose fused kernels include reductions, compared with opt_level=0."""
    x = gc.placeholder((BLOCK // 16 + 5, 40), F64, name="x")
    z = x - gc.max(x, axis=1, keepdims=True)
    e = gc.exp(z)
    y = e / gc.sum(e, axis=1, keepdims=True) + gc.mean(gc.square(x), axis=1, keepdims=True)
    xv = rng.normal(size=x.shape)
    np.testing.assert_allclose(gc.compile(y)(x=xv), gc.compile(y, opt_level=0)(x=xv), rtol=1e-12)


# -- memory: in-place reuse, outputs never alias the arena --------------------------------------------
def test_in_place_reuse_of_a_dying_buffer_is_correct(rng):
    x = gc.placeholder((64, 32), F64, name="x")
    w1 = gc.variable(rng.normal(size=(32, 32)) * 0.2, name="w1")
    w2 = gc.variable(rng.normal(size=(32, 32)) * 0.2, name="w2")
    h = x @ w1  # a planned buffer, read by two consumers
    c = h - gc.max(h, axis=1, keepdims=True)  # h dies here: c may overwrite h's buffer
    g = c @ w2
    y = g * gc.sum(g, axis=0, keepdims=True)  # likewise g
    fn = gc.compile(y)
    assert fn.plan.memory.inplace, fn.explain()
    assert f"{len(fn.plan.memory.inplace)} steps write in place" in fn.explain()
    ref = gc.compile(y, opt_level=0)
    for _ in range(3):  # buffers are reused across calls too
        xv = rng.normal(size=(64, 32))
        np.testing.assert_allclose(fn(x=xv), ref(x=xv), rtol=1e-12)
        np.testing.assert_allclose(
            fn(x=xv), (lambda c: (c @ w2.value) * (c @ w2.value).sum(0, keepdims=True))(
                (xv @ w1.value) - (xv @ w1.value).max(1, keepdims=True)), rtol=1e-12)  # fmt: skip


VIEWS = {
    "transpose": (lambda h: gc.transpose(h), lambda h: h.T),
    "reversed": (lambda h: h[::-1], lambda h: h[::-1]),
    "value and its transpose": (lambda h: h + gc.transpose(h), lambda h: h + h.T),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_in_place_never_overwrites_an_input_read_through_a_view(rng, view):
    """A blocked kernel writing over a buffer it reads transposed or reversed would read values it
    already overwrote: writing in place is only for inputs read element for element."""
    n = 400  # 160,000 elements: blocked, in rows (the bias is broadcast along them)
    x = gc.placeholder((n, n), F64, name="x")
    w = gc.variable(rng.normal(size=(n, n)) * 0.05, name="w")
    bias = np.linspace(1.0, 2.0, n)
    h = x @ w  # a planned buffer that dies at the fused kernel
    build, ref = VIEWS[view]
    y = (gc.exp(build(h)) * gc.constant(bias) + 1.0) @ w
    fn = gc.compile(y)
    blocked_kernel(fn, flat=False, threaded=False)
    xv = rng.normal(size=(n, n))
    want = (np.exp(ref(xv @ w.value)) * bias + 1.0) @ w.value
    np.testing.assert_allclose(fn(x=xv), want, rtol=1e-10)


def test_buffers_are_shared_by_values_that_do_not_overlap(rng):
    x = gc.placeholder((40, 40), F64, name="x")
    h = x
    for i in range(4):
        h = gc.tanh(h @ gc.constant(np.eye(40) * (0.5 + i)) + gc.sum(h, axis=0))
    fn = gc.compile(h)
    plan = fn.plan
    assert len(plan.memory.buffers) < len(plan.memory.assignment), fn.explain()
    xv = rng.normal(size=(40, 40))
    np.testing.assert_allclose(fn(x=xv), gc.compile(h, opt_level=0)(x=xv), rtol=1e-12)


@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_outputs_never_alias_planned_buffers(rng, opt_level):
    x = gc.placeholder((32, 16), F64, name="x")
    w = gc.variable(rng.normal(size=(16, 16)), name="w")
    h = gc.tanh(x @ w)
    outs = [h * 2.0, gc.sum(h, axis=1), x @ w, gc.exp(h) + 1.0]
    fn = gc.compile(outs, opt_level=opt_level)
    x1, x2 = rng.normal(size=(32, 16)), rng.normal(size=(32, 16))
    first = fn(x=x1)
    kept = [a.copy() for a in first]
    second = fn(x=x2)
    for a, k in zip(first, kept):
        np.testing.assert_array_equal(a, k)  # the later call did not write into earlier results
    for a, b in zip(first, second):
        assert not np.shares_memory(a, b)
    arena = [b for entry in fn._plans.values() for arena in entry[2] for b in arena]
    for a in first + second:
        for b in arena:
            assert not np.shares_memory(a, b)


def test_sgd_updates_in_place_match_opt_level_0(rng):
    def build():
        gc.reset_default_graph()
        r = np.random.default_rng(7)
        x = gc.placeholder((None, 6), F64, name="x")
        t = gc.placeholder((None, 3), F64, name="t")
        w1 = gc.variable(r.normal(size=(6, 8)) * 0.5, name="w1")
        b1 = gc.variable(np.zeros(8), name="b1")
        w2 = gc.variable(r.normal(size=(8, 3)) * 0.5, name="w2")
        params = [w1, b1, w2]
        loss = gc.mean(gc.square(gc.tanh(x @ w1 + b1) @ w2 - t))
        grads = gc.grad(loss, params)
        return x, t, params, loss, [(p, p - 0.1 * g) for p, g in zip(params, grads)]

    results = {}
    for level in (0, 2):
        x, t, params, loss, updates = build()
        step = gc.compile(loss, updates=updates, opt_level=level)
        data = np.random.default_rng(1)
        xv, tv = data.normal(size=(10, 6)), data.normal(size=(10, 3))
        losses = [float(step(x=xv, t=tv)) for _ in range(6)]
        if level == 2:
            written = [s for s in step.plan.steps if s.out_variable is not None]
            assert written, "no update was written in place: " + step.explain()
            assert "in place into variable" in step.explain()
        results[level] = (losses, [p.value for p in params])
    np.testing.assert_allclose(results[2][0], results[0][0], rtol=1e-12)
    for a, b in zip(results[2][1], results[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert results[2][0][-1] < results[2][0][0]


@pytest.mark.parametrize("opt_level", [0, 2])
def test_updates_that_swap_two_variables_through_expressions(opt_level):
    a = gc.variable(np.array([1.0, 2.0, 3.0]), name="a")
    b = gc.variable(np.array([10.0, 20.0, 30.0]), name="b")
    c = gc.variable(np.array([0.5, 0.5, 0.5]), name="c")
    # each new value reads the other variable: neither can be written in place before the other
    # update has read it; c's update reads only c and can
    f = gc.compile(a + b, updates=[(a, b * 2.0), (b, a * 2.0 + 0.0), (c, c * 3.0 - a)], opt_level=opt_level)
    av, bv, cv = a.value, b.value, c.value
    for _ in range(3):
        out = f()
        np.testing.assert_array_equal(out, av + bv)
        av, bv, cv = bv * 2, av * 2, cv * 3 - av
        np.testing.assert_array_equal(a.value, av)
        np.testing.assert_array_equal(b.value, bv)
        np.testing.assert_array_equal(c.value, cv)
    if opt_level == 2:
        written = {f.plan.variables[s.out_variable][1] for s in f.plan.steps if s.out_variable is not None}
        assert "a" not in written and "b" not in written


@pytest.mark.parametrize("opt_level", [0, 2])
def test_updates_that_swap_two_variables_through_views(opt_level):
    """Each update reads the other variable through a transpose: a view counts as a read, so
    writing either update in place before the other has read it would be wrong."""
    a0, b0 = np.arange(6.0).reshape(2, 3), 10 + np.arange(6.0).reshape(3, 2)
    a = gc.variable(a0, name="a")
    b = gc.variable(b0, name="b")
    f = gc.compile(None, updates=[(a, gc.transpose(b) * 2.0), (b, gc.transpose(a) * 2.0)], opt_level=opt_level)
    f()
    np.testing.assert_array_equal(a.value, b0.T * 2)
    np.testing.assert_array_equal(b.value, a0.T * 2)


@pytest.mark.parametrize("update", ["tanh(w.T) * b", "w - 0.1 * w.T * b"])
def test_an_in_place_update_never_reads_its_variable_through_a_view(rng, update):
    n = 400  # blocked in rows: a kernel writing w block by block must not read w transposed
    w0, bias = rng.normal(size=(n, n)), np.linspace(1.0, 2.0, n)
    w = gc.variable(w0, name="w")
    b = gc.constant(bias)
    new = gc.tanh(gc.transpose(w)) * b if update.startswith("tanh") else w - 0.1 * gc.transpose(w) * b
    f = gc.compile(None, updates=[(w, new)])
    f()
    want = np.tanh(w0.T) * bias if update.startswith("tanh") else w0 - 0.1 * w0.T * bias
    np.testing.assert_allclose(w.value, want, rtol=1e-13)


def test_plain_swap_with_in_place_candidates_elsewhere():
    a = gc.variable(np.array([1.0, 2.0]), name="a")
    b = gc.variable(np.array([3.0, 4.0]), name="b")
    n = gc.variable(np.float64(0.0), name="n")
    f = gc.compile(None, updates=[(a, b), (b, a), (n, n + 1.0)])
    for i in range(3):
        f()
        assert n.value == i + 1
    np.testing.assert_array_equal(a.value, [3.0, 4.0])
    np.testing.assert_array_equal(b.value, [1.0, 2.0])


def test_clip_of_a_large_tensor_in_blocks(rng, threads):
    """maximum/minimum against one value inside fused blocks, on one thread and two."""
    n = 5 * BLOCK + 3
    x = gc.placeholder((n,), "float32", name="x")
    lo = gc.placeholder((), "float32", name="lo")
    fn = gc.compile(gc.clip(x, lo, 0.5) * 2.0 + gc.maximum(x, -0.25))
    blocked_kernel(fn, flat=True)
    xv = rng.normal(size=n).astype("float32")
    for lov in (-0.5, 0.0, -0.5):  # a fed bound: the filled blocks follow its value
        want = np.clip(xv, np.float32(lov), np.float32(0.5)) * 2 + np.maximum(xv, np.float32(-0.25))
        np.testing.assert_array_equal(fn(x=xv, lo=np.float32(lov)), want)
