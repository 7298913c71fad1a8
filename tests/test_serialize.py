"""Saving and loading: round trips, training after load, determinism, sidecars, provenance, checkpoints."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import next_line

import graphc as gc

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "graphs" / "two_layer_net.py"
HERE = os.path.basename(__file__)


def _example():
    spec = importlib.util.spec_from_file_location("two_layer_net", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(n=16, d_in=1000, d_out=10, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d_in)).astype("float32"), rng.standard_normal((n, d_out)).astype("float32")


def _roundtrip(fn, tmp_path, name="model.json"):
    path = gc.save(fn, tmp_path / name)
    return gc.load(path)


def _doc(path) -> dict:
    return json.loads(Path(path).read_text())


def assert_same(got, expected):
    """Same structure, dtypes, shapes and bit-for-bit values (NaNs in the same places)."""
    assert type(got) is type(expected)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        pairs = [(got[k], expected[k]) for k in expected]
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        pairs = list(zip(got, expected))
    elif expected is None:
        return
    else:
        pairs = [(got, expected)]
    for a, b in pairs:
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b, strict=True)


# -- the example network ----------------------------------------------------------------------------


def test_two_layer_net_predict_round_trip(tmp_path):
    net = _example().build()
    predict = _roundtrip(net["predict"], tmp_path)
    for n in (1, 16, 64):  # unknown batch dim: a plan per shape, each the same as the live one
        x, _ = _batch(n)
        assert_same(predict(x), net["predict"](x))
    assert [t.name for t in predict.inputs] == ["x"]


def test_two_layer_net_keeps_training_after_load(tmp_path):
    net = _example().build()
    x, y = _batch(64)
    for _ in range(3):  # train a little before saving, so the saved state is not the initial one
        net["step"](x=x, y=y)
    step = _roundtrip(net["step"], tmp_path)
    live = [float(net["step"](x=x, y=y)) for _ in range(10)]
    loaded = [float(step(x=x, y=y)) for _ in range(10)]
    assert loaded == live  # the same float32 losses step by step
    assert all(b < a for a, b in zip(loaded, loaded[1:]))  # and it does train
    np.testing.assert_array_equal(step.graph.variables["w1"], net["w1"].value)
    np.testing.assert_array_equal(step.graph.variables["w2"], net["w2"].value)


def test_loading_does_not_share_state_with_the_live_function(tmp_path):
    net = _example().build()
    x, y = _batch(8)
    step = _roundtrip(net["step"], tmp_path)
    before = net["w1"].value
    step(x=x, y=y)
    np.testing.assert_array_equal(net["w1"].value, before)
    assert not np.array_equal(step.graph.variables["w1"], before)


# -- hand-built graphs covering every op family ------------------------------------------------------


def _elementwise(rng):
    x = gc.placeholder((None, 3), name="x")
    y = gc.placeholder((3,), name="y")
    b = gc.placeholder((None, 3), "bool", name="b")
    ax, ay = gc.abs(x) + 1, gc.abs(y) + 1
    outs = [
        x + y, x - y, x * y, x / ay, ax**y, gc.maximum(x, y), gc.minimum(x, y), -x, gc.abs(x),
        gc.sign(x), gc.floor(x), gc.ceil(x), gc.round(x), gc.exp(x), gc.log(ax), gc.log1p(ax), gc.expm1(x),
        gc.sqrt(ax), gc.square(x), gc.reciprocal(ay), gc.sin(x), gc.cos(x), gc.tanh(x), gc.sigmoid(x),
        gc.relu(x), gc.softplus(x), gc.erf(x), gc.clip(x, -0.5, 0.5), gc.where(b, x, y),
        x > y, x >= y, x < y, x <= y, gc.equal(x, gc.round(x)), gc.not_equal(x, y),
        gc.logical_and(b, x > 0), gc.logical_or(b, x > 0), gc.logical_xor(b, x > 0), gc.logical_not(b),
        gc.cast(x * 10, "int32"), gc.identity(x), gc.stop_gradient(x), gc.zeros_like(x), gc.ones_like(x),
    ]  # fmt: skip
    fn = gc.compile(outs, inputs=[x, y, b])
    feeds = (rng.standard_normal((4, 3)).astype("float32"), rng.standard_normal(3).astype("float32"),
             rng.random((4, 3)) > 0.5)  # fmt: skip
    return fn, feeds, {}


def _reductions(rng):
    x = gc.placeholder((2, None, 4), "float64", name="x")
    outs = {
        "sum": gc.sum(x), "sum1": gc.sum(x, axis=1), "mean": gc.mean(x, axis=(0, 2), keepdims=True),
        "max": gc.max(x, axis=-1), "min": gc.min(x, axis=0), "prod": gc.prod(x, axis=2),
        "argmax": gc.argmax(x, axis=1), "argmin": gc.argmin(x, axis=2), "lse": gc.logsumexp(x, axis=-1),
    }  # fmt: skip
    return gc.compile(outs), (), {"x": rng.standard_normal((2, 5, 4))}


def _matmul(rng):
    a = gc.placeholder((None, 3), name="a")
    w = gc.variable(rng.standard_normal((3, 5)).astype("float32"), name="w")
    c = gc.placeholder((2, 4, 3), name="c")
    v = gc.constant(rng.standard_normal(3).astype("float32"), name="v")
    fn = gc.compile({"mm": a @ w, "batched": c @ w, "vec": c @ v, "dot": v @ v}, inputs=[a, c])
    return fn, (rng.standard_normal((6, 3)).astype("float32"), rng.standard_normal((2, 4, 3)).astype("float32")), {}


def _shape_ops(rng):
    x = gc.placeholder((2, None, 4), name="x")
    i = gc.placeholder((None,), "int32", name="i")
    first, second = gc.split(x, 2, axis=2)
    parts = gc.split(x, [1, 3], axis=-1)
    outs = [
        gc.reshape(x, (-1,)), gc.reshape(x, (2, -1, 2)), gc.transpose(x), gc.transpose(x, (1, 0, 2)),
        gc.expand_dims(x, 1), gc.squeeze(gc.expand_dims(x, 0), 0), gc.broadcast_to(x[:, :1], (3, 2, 7, 4)),
        gc.concatenate([x, x * 2], axis=1), gc.stack([x, -x], axis=-1), first, second, *parts,
        x[1], x[:, ::-1], x[0, 1:, None, ::2], x[..., 2], x[-1, ..., 1:3], x[:, -2:],
        gc.take(x, i, axis=2), gc.take(x, i), gc.one_hot(i, 5), gc.one_hot(i, 3, "int64"),
        gc.pad(x, ((0, 0), (1, 2), (3, 0)), constant_values=-1.5),
    ]  # fmt: skip
    fn = gc.compile(outs, inputs=[x, i])
    return fn, (rng.standard_normal((2, 5, 4)).astype("float32"), np.array([0, 3, 1, 1], "int32")), {}


def _nn(rng):
    logits = gc.placeholder((None, 5), "float64", name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    xent = gc.softmax_cross_entropy(logits, labels)
    outs = {"softmax": gc.softmax(logits), "log_softmax": gc.log_softmax(logits, axis=0), "xent": xent,
            "grad": gc.grad(gc.mean(xent), logits)}  # fmt: skip
    return gc.compile(outs), (), {"logits": rng.standard_normal((7, 5)) * 30, "labels": rng.integers(0, 5, 7)}


def _constants(rng):
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-30, 65504.0])
    consts = [
        gc.constant(special.astype("float16")), gc.constant(special.astype("float32")), gc.constant(special),
        gc.constant(np.array([-128, 0, 127], "int8")), gc.constant(np.array([0, 65535], "uint16")),
        gc.constant(np.array([-(2**63), 2**63 - 1])), gc.constant(np.array([2**64 - 1], "uint64")),
        gc.constant(np.array([[True, False]])), gc.constant(np.float32(np.nan)),
        gc.constant(rng.standard_normal((40, 40)).astype("float32")),  # big enough for the sidecar
    ]  # fmt: skip
    n = gc.placeholder((None,), "int32", name="n")
    b = gc.placeholder((None,), "bool", name="b")
    outs = [*consts, n * 3 + consts[3][0], gc.logical_and(b, consts[7][0, 0]), consts[1][:3] + 1.0]
    return gc.compile(outs, inputs=[n, b]), (np.arange(5, dtype="int32"), np.array([True, False, True])), {}


def _training(rng):
    x = gc.placeholder((None, 4), "float64", name="x")
    y = gc.placeholder((None,), "float64", name="y")
    w = gc.variable(np.zeros(4), name="w")
    b = gc.variable(np.float64(0.0), name="b")
    loss = gc.mean(gc.square(x @ w + b - y), name="loss")
    gw, gb = gc.grad(loss, [w, b])
    step = gc.compile({"loss": loss}, inputs=[x, y], updates=[(w, w - 0.1 * gw), gc.assign_sub(b, 0.1 * gb)])
    return step, (rng.standard_normal((9, 4)), rng.standard_normal(9)), {}


def _no_outputs(rng):
    v = gc.variable(np.arange(3.0), name="v")
    return gc.compile(None, updates=[gc.assign_add(v, 1.0)]), (), {}


BUILDERS = [_elementwise, _reductions, _matmul, _shape_ops, _nn, _constants, _training, _no_outputs]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__.strip("_"))
def test_round_trip_gives_the_same_outputs(build, tmp_path):
    rng = np.random.default_rng(0)
    with gc.Graph(build.__name__.strip("_")):
        fn, args, kwargs = build(rng)
    loaded = _roundtrip(fn, tmp_path)
    assert loaded.structure == fn.structure
    assert [t.name for t in loaded.inputs] == [t.name for t in fn.inputs]
    for _ in range(3):  # repeated calls: updating functions must move in lockstep
        assert_same(loaded(*args, **kwargs), fn(*args, **kwargs))
    for name in fn.graph.variables:
        np.testing.assert_array_equal(loaded.graph.variables[name], fn.graph.variables[name], strict=True)


def test_round_trip_with_other_unknown_dims(tmp_path):
    rng = np.random.default_rng(0)
    fn, (x, i), _ = _shape_ops(rng)
    loaded = _roundtrip(fn, tmp_path)
    for n, k in ((1, 0), (3, 6), (8, 1)):
        args = (rng.standard_normal((2, n, 4)).astype("float32"), rng.integers(0, 4, k).astype("int32"))
        assert_same(loaded(*args), fn(*args))


def test_saving_a_loaded_function_gives_the_same_file(tmp_path):
    fn, args, _ = _constants(np.random.default_rng(0))
    first = gc.save(fn, tmp_path / "a.json")
    again = gc.save(gc.load(first), tmp_path / "b.json")
    a, b = _doc(first), _doc(again)
    assert a.pop("sidecar")["sha256"] == b.pop("sidecar")["sha256"]
    assert a == b


# -- determinism and the document's layout ----------------------------------------------------------


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_saving_twice_gives_byte_identical_files(tmp_path):
    net = _example().build()
    gc.save(net["step"], tmp_path / "step.json")
    first = _files(tmp_path)
    gc.save(net["step"], tmp_path / "step.json")
    assert _files(tmp_path) == first
    assert len(first) == 2  # the JSON and one sidecar: no temporary files left behind


def test_saving_to_two_paths_differs_only_in_the_sidecar_name(tmp_path):
    net = _example().build()
    a = _doc(gc.save(net["step"], tmp_path / "a.json"))
    b = _doc(gc.save(net["step"], tmp_path / "b.json"))
    assert a["sidecar"]["file"].startswith("a.") and b["sidecar"]["file"].startswith("b.")
    a["sidecar"].pop("file"), b["sidecar"].pop("file")
    assert a == b
    assert (tmp_path / "a.json").read_text().replace('"a.', '"b.') == (tmp_path / "b.json").read_text()


def test_saving_new_weights_replaces_the_sidecar(tmp_path):
    net = _example().build()
    x, y = _batch(8)
    gc.save(net["step"], tmp_path / "step.json")
    net["step"](x=x, y=y)
    gc.save(net["step"], tmp_path / "step.json")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[1] == "step.json"
    assert names[0] == _doc(tmp_path / "step.json")["sidecar"]["file"]
    np.testing.assert_array_equal(gc.load(tmp_path / "step.json").graph.variables["w1"], net["w1"].value)


def test_saved_files_are_readable_by_others(tmp_path):
    net = _example().build()
    gc.save(net["step"], tmp_path / "step.json")
    umask = os.umask(0)
    os.umask(umask)
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name


def test_large_arrays_go_to_the_sidecar_and_small_ones_inline(tmp_path):
    net = _example().build()
    doc = _doc(gc.save(net["step"], tmp_path / "step.json"))
    w1, w2 = doc["variables"]["w1"], doc["variables"]["w2"]  # 400,000 and 4,000 bytes
    assert w1["dtype"] == "float32" and w1["shape"] == [1000, 100] and "data" not in w1
    assert w1["offset"] % 64 == 0 and w1["nbytes"] == 400_000
    assert w2["shape"] == [100, 10] and "offset" not in w2
    assert len(w2["data"]) == 4 * -(-4000 // 3)  # base64 of 4,000 bytes
    sidecar = doc["sidecar"]
    assert sidecar["nbytes"] == (tmp_path / sidecar["file"]).stat().st_size >= 400_000
    small = _doc(gc.save(net["step"], tmp_path / "small.json", inline_max_bytes=1 << 20))
    assert "sidecar" not in small and "data" in small["variables"]["w1"]
    assert not list(tmp_path.glob("small.*.bin"))
    np.testing.assert_array_equal(gc.load(tmp_path / "small.json").graph.variables["w1"], net["w1"].value)


def test_document_records_the_signature_and_metadata(tmp_path):
    net = _example().build()
    doc = _doc(gc.save(net["predict"], tmp_path / "p.json"))
    assert (doc["format"], doc["version"], doc["kind"]) == ("graphc", 1, "function")
    assert doc["signature"]["inputs"] == ["x"]
    assert doc["signature"]["outputs"]["structure"] == "tensor"
    assert doc["metadata"]["opt_level"] == 2 and "created" not in doc["metadata"]
    assert [n["op"] for n in doc["graph"]["nodes"]].count("placeholder") == 1
    dated = _doc(gc.save(net["predict"], tmp_path / "d.json", created=True))
    assert "created" in dated["metadata"]


# -- provenance -------------------------------------------------------------------------------------


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_sources_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    net = _example().build()
    doc = _doc(gc.save(net["step"], tmp_path / "step.json"))
    sources = {n["name"]: n["source"] for n in doc["graph"]["nodes"] if "source" in n}
    assert sources and all(s.startswith("graphs/two_layer_net.py:") for s in sources.values())
    loss_line, w1_line = _line_of(EXAMPLE, 'name="loss"'), _line_of(EXAMPLE, 'name="w1"')
    assert sources["loss"] == f"graphs/two_layer_net.py:{loss_line}"
    assert sources["w1"] == f"graphs/two_layer_net.py:{w1_line}"
    assert str(REPO) not in (tmp_path / "step.json").read_text()


def test_sources_outside_the_working_directory_keep_only_the_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = _example().build()
    text = (Path(gc.save(net["step"], tmp_path / "step.json"))).read_text()
    sources = [n["source"] for n in json.loads(text)["graph"]["nodes"] if "source" in n]
    assert sources and all(s.startswith("two_layer_net.py:") for s in sources)
    assert str(REPO) not in text and "/" not in "".join(sources)


def _broadcast_model():
    """x + y: whether it runs depends on the fed shapes."""
    x = gc.placeholder((None,), name="x")
    y = gc.placeholder((None,), name="y")
    line = next_line()
    return gc.compile(x + y, inputs=[x, y]), line


def test_a_loaded_model_cites_the_defining_line_in_run_time_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    fn, line = _broadcast_model()
    loaded = _roundtrip(fn, tmp_path)
    np.testing.assert_array_equal(loaded(np.ones(3, "float32"), np.ones(3, "float32")), np.full(3, 2, "float32"))
    with pytest.raises(gc.ExecutionError, match=rf"add 'add': .*\(defined at tests/{HERE}:{line}\)"):
        loaded(np.ones(3, "float32"), np.ones(4, "float32"))


def test_a_kernel_error_in_a_loaded_model_cites_the_defining_line(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    logits = gc.placeholder((None, 3), name="logits")
    labels = gc.placeholder((None,), "int32", name="labels")
    line = next_line()
    loss = gc.softmax_cross_entropy(logits, labels)
    loaded = _roundtrip(gc.compile(loss, inputs=[logits, labels]), tmp_path)
    with pytest.raises(gc.ExecutionError, match=rf"labels must lie in \[0, 3\).*\(defined at tests/{HERE}:{line}\)"):
        loaded(np.zeros((2, 3), "float32"), np.array([0, 7], "int32"))


# -- a fresh process without the defining code ------------------------------------------------------

CHILD = """
import importlib.util, os, sys
import numpy as np
import graphc as gc

# the defining code is nowhere on the path: not the example, not the tests
assert importlib.util.find_spec("graphs") is None and importlib.util.find_spec("conftest") is None
assert not any(os.path.exists(os.path.join(p or ".", "graphs", "two_layer_net.py")) for p in sys.path)
predict, step = gc.load("predict.json"), gc.load("step.json")
x, y = np.load("x.npy"), np.load("y.npy")
np.save("predicted.npy", predict(x))
np.save("losses.npy", np.array([step(x=x, y=y) for _ in range(3)]))
try:
    gc.load("broadcast.json")(np.ones(3, "float32"), np.ones(4, "float32"))
except gc.ExecutionError as e:
    open("error.txt", "w").write(str(e))
"""


def test_a_fresh_process_without_the_defining_code_loads_and_runs_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    net = _example().build()
    fn, line = _broadcast_model()
    gc.save(net["predict"], tmp_path / "predict.json")
    gc.save(net["step"], tmp_path / "step.json")
    gc.save(fn, tmp_path / "broadcast.json")
    x, y = _batch(32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    site = tmp_path / "site"  # a path entry holding only the graphc package, wherever it is installed
    site.mkdir()
    (site / "graphc").symlink_to(Path(gc.__file__).parent, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_same(np.load(tmp_path / "predicted.npy"), net["predict"](x))
    live = np.array([net["step"](x=x, y=y) for _ in range(3)])
    assert_same(np.load(tmp_path / "losses.npy"), live)
    assert f"(defined at tests/{HERE}:{line})" in (tmp_path / "error.txt").read_text()


# -- graphs and checkpoints -------------------------------------------------------------------------


def test_a_loaded_graph_compiles_by_tensor_name(tmp_path):
    net = _example().build()
    graph = gc.load(gc.save(net["graph"], tmp_path / "graph.json"))
    assert isinstance(graph, gc.Graph)
    assert [n.name for n in graph.nodes] == [n.name for n in net["graph"].nodes]
    x, y = _batch(8)
    loss = gc.compile(graph.tensor("loss"))
    assert_same(loss(x=x, y=y), gc.compile(net["loss"])(x=x, y=y))
    # the loaded graph is an ordinary graph: build on it, differentiate, train
    with graph:
        w1, w2 = graph.tensor("w1"), graph.tensor("w2")
        g1, g2 = gc.grad(graph.tensor("loss"), [w1, w2])
        step = gc.compile(graph.tensor("loss"), updates=[(w1, w1 - 1e-5 * g1), (w2, w2 - 1e-5 * g2)])
    losses = [float(step(x=x, y=y)) for _ in range(5)]
    assert losses == [float(net["step"](x=x, y=y)) for _ in range(5)]


def test_a_loaded_graph_keeps_its_implicit_updates(tmp_path):
    """Dropout's random state and batch norm's running statistics advance in a loaded graph as in the live one."""
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(16, 6)).astype("float32")
    with gc.Graph("bn") as live:
        x = gc.placeholder((None, 6), name="x")
        model = gc.nn.Sequential([gc.nn.Dense(5, name="dense"), gc.nn.BatchNorm(name="bn"), gc.nn.Dropout(0.5)])
        out = gc.identity(model(x, training=True), name="out")
    assert len(live.implicit_updates) == 3  # running mean, running variance, the dropout counter
    path = gc.save(live, tmp_path / "graph.json")
    assert len(json.loads(Path(path).read_text())["graph"]["implicit_updates"]) == 3
    loaded = gc.load(path)
    state = [v.node.name for _, v, _ in live.implicit_updates]
    assert [v.node.name for _, v, _ in loaded.implicit_updates] == state
    f_live, f_loaded = gc.compile(out), gc.compile(loaded.tensor("out"))
    for _ in range(3):  # same outputs (same dropout masks), same state after each call
        assert_same(f_loaded(x=xs), f_live(x=xs))
    for name in state:
        assert_same(loaded.variables[name], live.variables[name])
    assert not np.array_equal(live.variables["bn/running_mean"], np.zeros(5, "float32"))


def test_checkpoint_restores_variable_values(tmp_path):
    net = _example().build()
    x, y = _batch(16)
    net["step"](x=x, y=y)
    gc.save_checkpoint(net["step"], tmp_path / "ckpt.json")
    after = [float(net["step"](x=x, y=y)) for _ in range(3)]
    gc.restore_checkpoint(net["graph"], tmp_path / "ckpt.json")
    assert [float(net["step"](x=x, y=y)) for _ in range(3)] == after
    doc = _doc(tmp_path / "ckpt.json")
    assert doc["kind"] == "checkpoint" and sorted(doc["variables"]) == ["w1", "w2"] and "graph" not in doc


def test_checkpoint_restores_into_a_loaded_function(tmp_path):
    net = _example().build()
    x, y = _batch(16)
    step = _roundtrip(net["step"], tmp_path)
    gc.save_checkpoint(step, tmp_path / "ckpt.json")
    after = [float(step(x=x, y=y)) for _ in range(3)]
    gc.restore_checkpoint(step, tmp_path / "ckpt.json")
    assert [float(step(x=x, y=y)) for _ in range(3)] == after


def test_a_mismatched_checkpoint_raises_and_changes_nothing(tmp_path):
    with gc.Graph("other") as g:
        gc.variable(np.zeros((100, 10), "float32"), name="w2")
        gc.variable(np.zeros(3, "float32"), name="w1")  # w1 of another shape
    gc.save_checkpoint(g, tmp_path / "ckpt.json")
    net = _example().build()
    before = {k: v.copy() for k, v in net["graph"].variables.items()}
    with pytest.raises(gc.FormatError, match=r"ckpt.json: variable 'w1': stored \(3,\) float32, expected"):
        gc.restore_checkpoint(net["step"], tmp_path / "ckpt.json")
    for k, v in before.items():  # w2 matched, but the restore is all or nothing
        np.testing.assert_array_equal(net["graph"].variables[k], v)
    with gc.Graph("partial") as p:
        gc.variable(np.zeros((100, 10), "float32"), name="w2")
    gc.save_checkpoint(p, tmp_path / "partial.json")
    with pytest.raises(gc.FormatError, match=r"partial.json: no value for variable 'w1'"):
        gc.restore_checkpoint(net["step"], tmp_path / "partial.json")
    for k, v in before.items():
        np.testing.assert_array_equal(net["graph"].variables[k], v)


def test_loading_a_checkpoint_as_a_model_says_what_to_do(tmp_path):
    net = _example().build()
    gc.save_checkpoint(net["graph"], tmp_path / "ckpt.json")
    with pytest.raises(gc.FormatError, match="restore_checkpoint"):
        gc.load(tmp_path / "ckpt.json")


def test_a_save_that_dies_before_its_rename_leaves_the_old_model_whole(tmp_path, monkeypatch):
    net = _example().build()
    x, y = _batch(8)
    gc.save(net["step"], tmp_path / "step.json")
    old_files, old_w1 = _files(tmp_path), net["w1"].value
    net["step"](x=x, y=y)  # new weights: a new sidecar

    def crash(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt  # the process dies after the new sidecar, before the JSON's rename
        return os.rename(src, dst)

    monkeypatch.setattr(sys.modules["graphc.serialize.save"].os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        gc.save(net["step"], tmp_path / "step.json")
    monkeypatch.undo()
    files = _files(tmp_path)
    assert {k: v for k, v in files.items() if k in old_files} == old_files  # old JSON and sidecar untouched
    assert not [k for k in files if k.endswith(".tmp")]
    np.testing.assert_array_equal(gc.load(tmp_path / "step.json").graph.variables["w1"], old_w1)
    gc.save(net["step"], tmp_path / "step.json")  # the next save completes and drops the orphaned sidecar
    assert len(_files(tmp_path)) == 2
    np.testing.assert_array_equal(gc.load(tmp_path / "step.json").graph.variables["w1"], net["w1"].value)


def test_a_loaded_function_names_its_file_for_a_failure_no_step_explains(tmp_path, monkeypatch):
    """Errors a plan step raises name the node; any other failure while a loaded function runs
    (here: as if no step could be found) names the file, on the inference path too."""
    from graphc.runtime.executor import Function

    with gc.Graph():
        z = gc.placeholder((4, 3), "float32", name="z")
        t = gc.placeholder((4,), "int64", name="t")
        fn = gc.compile(gc.softmax_cross_entropy(z, t, name="xent"))
        path = gc.save(fn, tmp_path / "xent.json")
    loaded = gc.load(path)
    bad = {"z": np.zeros((4, 3), np.float32), "t": np.array([0, 1, 5, 2])}
    with pytest.raises(gc.ExecutionError, match=r"xent.*labels must lie in"):
        loaded(**bad)
    monkeypatch.setattr(Function, "_error", staticmethod(lambda plan, e: None))
    with pytest.raises(gc.ExecutionError, match=r"xent\.json: the stored program failed: ValueError"):
        loaded(**bad)
    with pytest.raises(ValueError, match="labels must lie in"):  # (a compiled function: raised as it is)
        fn(**bad)
