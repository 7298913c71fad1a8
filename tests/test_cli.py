"""The graphc command line, run for real: ``python -m graphc`` (and once the installed ``graphc``
script) in a subprocess, on models saved from graphs/two_layer_net.py and a small MLP.

Each subprocess costs ~0.4 s, so each test runs a few commands and checks several things.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

ROOT = Path(__file__).resolve().parents[1]
NET_ARGS = dict(n_in=20, n_hidden=8, n_out=3)
BUILD_ARGS = [f"--build-arg={k}={v}" for k, v in NET_ARGS.items()]
COMMANDS = ["compile", "run", "inspect", "viz", "bench", "check", "diff", "explain"]


def graphc(*args, cwd=None, script: bool = False) -> subprocess.CompletedProcess:
    """Run the real entry point: ``python -m graphc`` or the installed console script."""
    exe = [str(Path(sys.executable).parent / "graphc")] if script else [sys.executable, "-m", "graphc"]
    return subprocess.run([*exe, *map(str, args)], cwd=cwd or ROOT, capture_output=True, text=True, timeout=120)


def assert_user_error(r, status: int, *words: str) -> None:
    """Exit status, and one line on stderr naming the problem, without a traceback."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphc: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def _two_layer_net():
    spec = importlib.util.spec_from_file_location("two_layer_net_cli", ROOT / "graphs" / "two_layer_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(**NET_ARGS)


def _mlp():
    rng = np.random.default_rng(3)
    with gc.Graph("mlp"):
        x = gc.placeholder((None, 4), name="x")
        w1 = gc.variable(rng.standard_normal((4, 5)).astype("float32"), name="w1")
        b1 = gc.variable(np.zeros(5, "float32"), name="b1")
        w2 = gc.variable(rng.standard_normal((5, 3)).astype("float32"), name="w2")
        logits = gc.relu(x @ w1 + b1) @ w2
        return gc.compile({"probs": gc.softmax(logits), "label": gc.argmax(logits, axis=1)}, inputs=[x])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Saved models: the net's train step (inline arrays), its predict function, its graph, and an
    MLP with dict outputs whose arrays all live in the sidecar; plus feeds as files."""
    d = tmp_path_factory.mktemp("cli")
    net = _two_layer_net()
    gc.save(net["step"], d / "step.json")
    gc.save(net["predict"], d / "predict.json")
    gc.save(net["graph"], d / "graph.json")
    mlp = _mlp()
    gc.save(mlp, d / "mlp.json", inline_max_bytes=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 20)).astype("float32"), rng.standard_normal((5, 3)).astype("float32")
    np.save(d / "x.npy", x)
    np.savez(d / "xy.npz", x=x, y=y)
    (d / "y.json").write_text(json.dumps(y.tolist()))
    xm = rng.standard_normal((2, 4)).astype("float32")
    np.save(d / "xm.npy", xm)
    return dict(dir=d, net=net, mlp=mlp, x=x, y=y, xm=xm)


def test_help_on_every_command_and_the_installed_script():
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: graphc(c, "--help"), COMMANDS))
    for command, r in zip(COMMANDS, results):
        assert r.returncode == 0, (command, r.stderr)
        assert r.stdout.startswith(f"usage: graphc {command}"), r.stdout[:80]
    r = graphc("--help", script=True)
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)
    r = graphc("--version", script=True)
    assert r.returncode == 0 and r.stdout.strip() == f"graphc {gc.__version__} (file format version 1)"


def test_usage_errors_exit_2_with_one_line():
    with ThreadPoolExecutor(3) as pool:
        no_command, unknown, bad_choice = pool.map(
            lambda a: graphc(*a), [(), ("frobnicate",), ("compile", "x.py", "-o", "m.json", "--opt-level", "5")]
        )
    assert_user_error(no_command, 2, "COMMAND")
    assert_user_error(unknown, 2, "frobnicate")
    assert_user_error(bad_choice, 2, "compile:", "--opt-level", "graphc compile --help")


def test_compile_python_definition_matches_the_api(models, tmp_path):
    out = tmp_path / "step.json"
    r = graphc("compile", "graphs/two_layer_net.py", "-o", out, *BUILD_ARGS, "--opt-level", "1")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "2 updates" in r.stdout
    fn = gc.load(out)
    assert fn.metadata["opt_level"] == 1 and sorted(n for n, _ in fn.program.updates) == ["w1", "w2"]
    step = _two_layer_net()["step"]  # the same seed: the same initial weights
    x, y = models["x"], models["y"]
    for _ in range(2):  # the loaded copy keeps training like the live one
        np.testing.assert_allclose(fn(x=x, y=y), step(x=x, y=y), rtol=1e-5)
    # provenance names the definition file, relative to the working directory
    doc = json.loads(out.read_text())
    assert any(n.get("source", "").startswith("graphs/two_layer_net.py:") for n in doc["graph"]["nodes"])

    out = tmp_path / "predict.json"
    r = graphc("compile", "graphs/two_layer_net.py", "--key", "predict", "-o", out, *BUILD_ARGS)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(gc.load(out)(x), models["net"]["predict"](x), rtol=1e-6)


def test_compile_json_sources(models, tmp_path):
    d = models["dir"]
    with ThreadPoolExecutor(3) as pool:
        refit, fetched, nothing = pool.map(lambda a: graphc(*a), [
            ("compile", d / "predict.json", "--opt-level", "0", "-o", tmp_path / "p0.json"),
            ("compile", d / "graph.json", "--fetch", "loss", "--fetch", "matmul_1", "-o", tmp_path / "g.json"),
            ("compile", d / "graph.json", "--no-updates", "-o", tmp_path / "none.json"),
        ])  # fmt: skip
    assert refit.returncode == 0 and fetched.returncode == 0, (refit.stderr, fetched.stderr)
    p0 = gc.load(tmp_path / "p0.json")
    assert p0.metadata["opt_level"] == 0
    np.testing.assert_allclose(p0(models["x"]), models["net"]["predict"](models["x"]), rtol=1e-6)
    g = gc.load(tmp_path / "g.json")
    assert g.structure.kind == "dict" and g.structure.keys == ("loss", "matmul_1") and len(g.program.updates) == 2
    assert_user_error(nothing, 1, "--fetch")


def test_compile_errors(tmp_path):
    (tmp_path / "nobuild.py").write_text("x = 1\n")
    (tmp_path / "shape.py").write_text(
        "import graphc as gc\n\ndef build():\n    x = gc.placeholder((None, 3), name='x')\n"
        "    w = gc.variable([[1.0, 2.0]], name='w')\n    return {'outputs': x @ w}\n"
    )
    cases = [("missing.py", "no such file"), ("nobuild.py", "defines no build()"), ("shape.py", "shape.py:6")]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda c: graphc("compile", c[0], "-o", "m.json", cwd=tmp_path), cases))
    for (_, words), r in zip(cases, results):
        assert_user_error(r, 1, words)
    assert not (tmp_path / "m.json").exists()


def test_run_feeds_from_npy_npz_json_and_prints(models):
    d = models["dir"]
    x, y = models["x"], models["y"]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda a: graphc(*a), [
            ("run", d / "step.json", "--input", f"x={d / 'x.npy'}", "--input", f"y={d / 'y.json'}"),
            ("run", d / "predict.json", "-i", f"x={d / 'xy.npz'}"),
        ])  # fmt: skip
    assert a.returncode == 0, a.stderr
    name, value = a.stdout.splitlines()[:2]
    assert name == "loss: float32 ()"
    want = _two_layer_net()["step"](x=x, y=y)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    assert "w1, w2" in a.stderr and "unchanged" in a.stderr  # the updates are not saved anywhere
    assert b.returncode == 0, b.stderr
    assert b.stdout.startswith("matmul_1: float32 (5, 3)\n")


def test_run_writes_npz_and_npy(models, tmp_path):
    d = models["dir"]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda a: graphc(*a), [
            ("run", d / "mlp.json", "-i", f"x={d / 'xm.npy'}", "-o", tmp_path / "out.npz"),
            ("run", d / "predict.json", "-i", f"x={d / 'xy.npz'}:x", "-o", tmp_path / "out.npy"),
        ])  # fmt: skip
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    want = models["mlp"](models["xm"])
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["label", "probs"]
        np.testing.assert_allclose(z["probs"], want["probs"], rtol=1e-6)
        np.testing.assert_array_equal(z["label"], want["label"])
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), models["net"]["predict"](models["x"]), rtol=1e-6)


def test_run_rejects_bad_input(models, tmp_path):
    d = models["dir"]
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "bad.json").write_text('{"format": "graphc", "vers')
    cases = [
        (("run", d / "predict.json", "-i", f"z={d / 'x.npy'}"), "no input 'z'"),
        (("run", d / "predict.json", "-i", f"x={d / 'y.json'}"), "wrong shape"),
        (("run", d / "predict.json", "-i", f"x={tmp_path / 'obj.npy'}"), "allow_pickle=False"),
        (("run", d / "predict.json", "-i", f"x={tmp_path / 'nope.npy'}"), "no such file"),
        (("run", tmp_path / "bad.json", "-i", f"x={d / 'x.npy'}"), "malformed or truncated JSON"),
        (("run", tmp_path / "missing.json"), "no such file"),
        (("run", d / "graph.json"), "graph file"),
        (("run", d / "mlp.json", "-i", f"x={d / 'xm.npy'}", "-o", tmp_path / "two.npy"), "use a .npz"),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: graphc(*c[0]), cases))
    for (_, words), r in zip(cases, results):
        assert_user_error(r, 1, words)


def test_inspect_text_and_json(models):
    d = models["dir"]
    with ThreadPoolExecutor(2) as pool:
        text, js = pool.map(lambda a: graphc(*a), [("inspect", d / "step.json"), ("inspect", d / "mlp.json", "--json")])
    assert text.returncode == 0, text.stderr
    for expected in ("x                float32  (None, 20)", "loss", "w1               <- ",
                     "variables: 2 (184 parameters", "passes applied (opt_level 2): prune", "matmul"):  # fmt: skip
        assert expected in text.stdout, expected
    info = json.loads(js.stdout)
    assert info["kind"] == "function" and info["output_structure"] == "dict"
    assert [o["name"] for o in info["outputs"]] == ["probs", "label"]
    assert info["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32", "positional": True}]
    assert info["parameters"] == 4 * 5 + 5 + 5 * 3 and info["parameter_bytes"] == 4 * info["parameters"]
    assert info["ops"]["variable"] == 3 and info["storage"]["sidecar"]["nbytes"] > 0


def test_check_validates_without_running(models, tmp_path):
    d = models["dir"]
    for name in ("mlp.json", *(p.name for p in d.glob("mlp.*.bin"))):  # a copy whose sidecar we corrupt
        (tmp_path / name).write_bytes((d / name).read_bytes())
    sidecar = next(tmp_path.glob("mlp.*.bin"))
    blob = bytearray(sidecar.read_bytes())
    blob[10] ^= 1
    sidecar.write_bytes(bytes(blob))
    with ThreadPoolExecutor(4) as pool:
        ok, plan, corrupt, limited = pool.map(lambda a: graphc(*a), [
            ("check", d / "mlp.json"),
            ("check", d / "step.json", "--batch", "64"),
            ("check", tmp_path / "mlp.json"),
            ("check", d / "step.json", "--max-nodes", "5"),
        ])  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {d / 'mlp.json'}: function of graph 'mlp'"), ok.stdout
    assert "sidecar" in ok.stdout and "verified" in ok.stdout
    assert plan.returncode == 0 and "plan for x=(64, 20), y=(64, 3)" in plan.stdout, plan.stdout
    assert_user_error(corrupt, 1, "sha256")
    assert_user_error(limited, 1, "max_nodes=5")


def test_viz_writes_dot_svg_and_html(models, tmp_path):
    d = models["dir"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda a: graphc(*a), [
            ("viz", d / "step.json", "-o", tmp_path / "g.dot"),
            ("viz", d / "step.json", "-o", tmp_path / "g.svg"),
            ("viz", d / "mlp.json", "--fused", "--shape", "x=2,4", "-o", tmp_path / "fused.html"),
            ("viz", d / "step.json", "-o", tmp_path / "g.png"),
        ]))  # fmt: skip
    assert [r.returncode for r in results] == [0, 0, 0, 1], [r.stderr for r in results]
    assert_user_error(results[3], 1, ".svg, .html or .dot")
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith('digraph "two_layer_net"') and '"w1" -> ' in dot and '"update:w1"' in dot
    svg = ET.parse(tmp_path / "g.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.tag == f"{ns}svg"
    labels = {"".join(t.itertext()) for t in svg.iter(f"{ns}text")}
    assert {"matmul", "w1", "output loss", "update w2"} <= labels
    assert len(svg.findall(f".//{ns}path[@marker-end]")) >= 10  # edges with arrowheads
    page = (tmp_path / "fused.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "plan for x=(2, 4)" in page and "fused kernel" in page
    body = page[page.index("<svg xmlns") : page.rindex("</svg>") + 6]
    fused = ET.fromstring(body)
    clusters = [g for g in fused.iter(f"{ns}g") if g.get("class") == "cluster"]
    assert clusters and "fused_matmul" in "".join(clusters[0].itertext())


def test_bench_prints_latency_and_throughput(models):
    d = models["dir"]
    with ThreadPoolExecutor(3) as pool:
        text, js, bad = pool.map(lambda a: graphc(*a), [
            ("bench", d / "step.json", "--repeat", "5", "--warmup", "1", "--batch", "16"),
            ("bench", d / "mlp.json", "--repeat", "3", "--warmup", "0", "--json"),
            ("bench", d / "step.json", "--shape", "x=16"),
        ])  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "x=(16, 20) float32" in text.stdout and "5 calls after 1 warm-up calls" in text.stdout
    assert "latency: median" in text.stdout and "samples/s (batch 16)" in text.stdout
    assert "updates w1, w2" in text.stdout  # it says that the calls trained the loaded copy only
    result = json.loads(js.stdout)
    assert result["calls"] == 3 and result["batch"] == 1 and result["min_seconds"] <= result["median_seconds"]
    assert_user_error(bad, 1, "--shape x=16", "does not fit")


def test_diff_follows_diff_exit_codes(models, tmp_path):
    d = models["dir"]
    fn = gc.load(d / "step.json")
    fn(x=models["x"], y=models["y"])  # one training step changes both weights
    gc.save(fn, tmp_path / "trained.json")
    with ThreadPoolExecutor(4) as pool:
        same, trained, other, missing = pool.map(lambda a: graphc(*a), [
            ("diff", d / "step.json", d / "step.json"),
            ("diff", d / "step.json", tmp_path / "trained.json"),
            ("diff", d / "step.json", d / "predict.json"),
            ("diff", d / "step.json", tmp_path / "nope.json"),
        ])  # fmt: skip
    assert same.returncode == 0 and same.stdout.startswith("no differences"), same.stdout
    assert trained.returncode == 1, trained.stderr
    assert "variables: 2 differ of 2" in trained.stdout and "~ w1 float32 (20, 8):" in trained.stdout
    assert "max abs diff" in trained.stdout and "nodes:" not in trained.stdout
    assert other.returncode == 1 and "signature updates:" in other.stdout and "nodes:" in other.stdout
    assert_user_error(missing, 2, "no such file")


def test_explain_specializes_for_the_shapes(models):
    d = models["dir"]
    with ThreadPoolExecutor(2) as pool:
        text, js = pool.map(lambda a: graphc(*a), [
            ("explain", d / "predict.json", "--batch", "2"),
            ("explain", d / "mlp.json", "--shape", "x=7,4", "--json"),
        ])  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "== plan for x=(2, 20) ==" in text.stdout and "kernels:" in text.stdout and "def run(" in text.stdout
    plans = json.loads(js.stdout)["plans"]
    assert [p["signature"] for p in plans] == [{"x": [7, 4]}]
