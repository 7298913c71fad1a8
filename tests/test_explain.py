"""explain(): what each pass did, the fused kernels, memory and generated code, as text and JSON;
deterministic across compiles; one plan per input-shape signature, in a bounded cache."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import next_line

import graphc as gc
from graphc.runtime import executor

F64 = "float64"


@pytest.fixture(autouse=True)
def verify_ir(monkeypatch):
    """The pass manager checks the IR after every pass of every function these tests compile."""
    monkeypatch.setenv("GRAPHC_VERIFY", "1")


def build(graph_name: str = "net", batch=8):
    """A small network whose compile exercises every pass: the same code builds identical graphs."""
    with gc.Graph(graph_name) as graph:
        x = gc.placeholder((batch, 4), F64, name="x")
        w = gc.variable(np.linspace(-1.0, 1.0, 12).reshape(4, 3), name="w")
        b = gc.variable(np.zeros(3), name="b")
        h = gc.relu(x @ w + b)
        big = gc.broadcast_to(gc.constant(0.5), (300, 300))  # kept unfolded: over the size cap
        scale = gc.exp(gc.constant(0.0)) * 1.0  # folded, then x * 1 simplified away
        y = gc.log(1.0 + gc.exp(h * scale))  # stabilized to log1p, then softplus
        z = gc.tanh(y) + y * y  # y also feeds the sum below: a second consumer
        loss = gc.sum(z) + gc.sum(y) + gc.sum(big) * 0.0
    return graph, x, [loss, z]


def test_explain_text_reports_passes_kernels_memory_and_code(rng):
    graph, x, outs = build()
    fn = gc.compile(outs)
    text = fn.explain()
    assert text.startswith("function of graph 'net' (opt_level 2)\n")
    assert "inputs: x (8, 4) float64" in text
    assert "== compile-time passes ==" in text and "== plan for x=(8, 4) ==" in text
    for name in ("prune", "fold_constants", "merge", "simplify", "stabilize", "fuse"):
        assert re.search(rf"^{name} +\d+ -> +\d+ nodes$", text, re.M), name
    for rule in ("x * 1 -> x", "log(1 + x) -> log1p(x)", "constant inputs", "not folded: size cap",
                 "not fused: second consumer", "matmul epilogue"):  # fmt: skip
        assert rule in text, rule
    assert "test_explain.py:" in text  # events cite the user's lines
    assert "kernels:" in text and "fused_matmul" in text and "fused_elementwise" in text
    assert "= add(tanh(" in text or "tanh(" in text.split("kernels:")[1]
    assert re.search(r"memory: \d+ planned buffers, arena [\d.]+ KiB, peak [\d.]+ (KiB|MiB)", text)
    assert "generated code:" in text and "  def run(F, V, C, B):" in text and "return [" in text
    # the node counts are the real ones
    first = fn.reports[0]
    assert f"prune            {first.nodes_before:5d} -> {first.nodes_after:5d} nodes" in text
    # and the function works
    fn(x=rng.normal(size=(8, 4)))


def test_explain_json_has_the_same_content(rng):
    graph, x, outs = build()
    fn = gc.compile(outs)
    d = fn.explain(format="json")
    json.dumps(d)  # JSON-ready
    assert d["graph"] == "net" and d["opt_level"] == 2 and d["inputs"] == {"x": "(8, 4) float64"}
    passes = [p["pass"] for p in d["passes"]]
    assert passes[:5] == ["prune", "fold_constants", "merge", "simplify", "stabilize"]
    assert all(isinstance(p["nodes_before"], int) and isinstance(p["nodes_after"], int) for p in d["passes"])
    assert d["passes"][0]["nodes_before"] == len(fn.program.nodes) + sum(
        p["nodes_before"] - p["nodes_after"] for p in d["passes"]
    )  # the counts chain: each pass starts where the previous one ended
    events = [e for p in d["passes"] for e in p["events"]]
    assert {"kind", "rule", "nodes", "source", "detail"} <= set(events[0])
    keep = next(e for e in events if e["kind"] == "keep")
    assert keep["rule"] == "not folded: size cap" and "90000 elements" in keep["detail"]
    (plan,) = d["plans"]
    assert plan["signature"] == {"x": [8, 4]}
    assert [p["pass"] for p in plan["passes"]][-1] == "fuse"
    exprs = [k["expression"] for k in plan["kernels"] if "expression" in k]
    assert any("(%x @ %w)" in e and "relu" in e for e in exprs), exprs
    assert any("softplus" in e for e in exprs), exprs
    assert [k["step"] for k in plan["kernels"]] == list(range(len(fn.plan.steps)))
    assert [k["op"] for k in plan["kernels"]] == [s.node.op for s in fn.plan.steps]
    mem = plan["memory"]
    assert mem["peak_bytes"] == fn.plan.memory.peak_bytes > 0
    assert mem["arena_bytes"] == sum(mem["buffers"])
    assert plan["code"] == fn.plan.source and plan["code"].startswith("def run(F, V, C, B):")


def test_explain_names_the_users_line_of_a_rewrite():
    x = gc.placeholder((3,), F64, name="x")
    line = next_line()
    y = gc.exp(x) * 1.0
    text = gc.compile(y).explain()
    assert re.search(rf"rewrite x \* 1 -> x: multiply  \[.*test_explain\.py:{line}\]", text), text


def test_compiling_the_same_graph_twice_gives_byte_identical_explain():
    texts, jsons = [], []
    for _ in range(2):
        _graph, x, outs = build()
        fn = gc.compile(outs)
        fn(x=np.ones((8, 4)))
        texts.append(fn.explain())
        jsons.append(json.dumps(fn.explain(format="json"), sort_keys=True))
    assert texts[0] == texts[1]
    assert jsons[0] == jsons[1]
    assert not re.search(r"\d ms\b", texts[0])  # no timings unless asked for
    assert '"ms"' not in jsons[0]


def test_timings_add_milliseconds_per_pass():
    _graph, x, outs = build()
    fn = gc.compile(outs)
    text = fn.explain(timings=True)
    lines = [ln for ln in text.splitlines() if re.match(r"^\w+ +\d+ -> +\d+ nodes", ln)]
    assert lines and all(re.search(r"nodes  \d+\.\d\d ms$", ln) for ln in lines), lines
    d = fn.explain(format="json", timings=True)
    assert all(p["ms"] >= 0 for p in d["passes"]) and all(p["ms"] >= 0 for p in d["plans"][0]["passes"])


def test_unknown_dims_have_no_plan_until_called_then_one_per_signature(rng):
    x = gc.placeholder((None, 4), F64, name="x")
    w = gc.variable(rng.normal(size=(4, 3)), name="w")
    fn = gc.compile(gc.tanh(x @ w) * 2.0)
    assert fn.plan is None
    text = fn.explain()
    assert "inputs: x (None, 4) float64" in text
    assert "(no plan yet: shapes are specialized on the first call)" in text
    assert fn.explain(format="json")["plans"] == []
    fn(x=rng.normal(size=(2, 4)))
    fn(x=rng.normal(size=(5, 4)))
    fn(x=rng.normal(size=(2, 4)))  # a cached plan: no third one
    text = fn.explain()
    assert "no plan yet" not in text
    assert text.count("== plan for ") == 2
    assert "== plan for x=(2, 4) ==" in text and "== plan for x=(5, 4) ==" in text
    assert "f64[2,3]" in text and "f64[5,3]" in text
    sigs = [p["signature"] for p in fn.explain(format="json")["plans"]]
    assert sorted(s["x"][0] for s in sigs) == [2, 5]


def test_the_plan_cache_is_a_bounded_lru(monkeypatch, rng):
    monkeypatch.setattr(executor, "PLAN_CACHE_SIZE", 2)
    x = gc.placeholder((None, 3), F64, name="x")
    fn = gc.compile(gc.exp(x) + 1.0)
    for n in (1, 2, 3):
        xv = rng.normal(size=(n, 3))
        np.testing.assert_allclose(fn(x=xv), np.exp(xv) + 1.0, rtol=1e-12)
    assert len(fn._plans) == 2
    assert [sig[0][0] for sig in fn._plans] == [2, 3]  # the least recently used (1 row) went
    fn(x=np.zeros((2, 3)))  # 2 is now the most recent
    fn(x=np.zeros((4, 3)))  # evicts 3
    assert [sig[0][0] for sig in fn._plans] == [2, 4]
    assert fn.explain().count("== plan for ") == 2
    xv = rng.normal(size=(3, 3))  # an evicted signature is specialized again, correctly
    np.testing.assert_allclose(fn(x=xv), np.exp(xv) + 1.0, rtol=1e-12)
    assert len(fn._plans) == 2


def test_explain_of_an_unoptimized_function_lists_only_pruning():
    _graph, x, outs = build()
    fn = gc.compile(outs, opt_level=0)
    d = fn.explain(format="json")
    assert {p["pass"] for p in d["passes"]} <= {"prune", "trim"}
    assert not [e for p in d["passes"] for e in p["events"]]
    assert "fused_" not in fn.explain()
    assert "(opt_level 0)" in fn.explain()
