"""Loader fuzzing: thousands of documents derived from a valid model by random damage.

Whatever the damage (keys deleted, values replaced by JSON of other types, strings and numbers
changed, nodes duplicated, reordered or dropped, bytes truncated, the sidecar corrupted), loading
either works, and then a call with a valid feed works or raises a GraphcError, or raises a
GraphcError itself: never any other exception, and never with unbounded memory.
"""

from __future__ import annotations

import copy
import json
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc

EXAMPLES = 2000
LIMITS = gc.LoadLimits(max_file_bytes=1 << 20, max_tensor_bytes=8 << 20, max_constant_bytes=8 << 20)
MAX_PEAK = 64 << 20  # traced bytes allocated at once while loading and calling one document
TRACE_ONE_IN = 4
FEEDS = {"x": np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4), "labels": np.array([0, 2, 1], "int32")}


def _build():
    """Most op families in two dozen nodes: one array in the sidecar (w), the others inline."""
    x = gc.placeholder((None, 4), name="x")
    labels = gc.placeholder((None,), "int32", name="labels")
    w = gc.variable(np.linspace(-1, 1, 32, dtype="float32").reshape(4, 8), name="w")  # 128 bytes: the sidecar
    b = gc.variable(np.full(8, 0.5, "float32"), name="b")  # 32 bytes: inline
    h = gc.relu(x @ w + b)
    left, right = gc.split(h, [3], axis=1)
    logits = gc.concatenate([left[:, ::-1], gc.pad(right[:, :1], ((0, 0), (1, 0)))], axis=1)[:, :3]
    loss = gc.mean(gc.softmax_cross_entropy(logits, labels), name="loss")
    picked = gc.take(gc.transpose(h), labels, axis=1) * gc.one_hot(labels, 3)[:1, :]
    return gc.compile({"loss": loss, "picked": gc.sum(picked, axis=0, keepdims=True)}, inputs=[x, labels],
                      updates=[(b, b - 0.1 * gc.mean(h, axis=0))])  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The valid document, its raw bytes, and its sidecar's name and bytes."""
    folder = tmp_path_factory.mktemp("fuzz_base")
    with gc.Graph("fuzz"):
        path = gc.save(_build(), folder / "model.json", inline_max_bytes=64)
    raw = Path(path).read_bytes()
    doc = json.loads(raw)
    sidecar = doc["sidecar"]["file"]
    assert len(doc["graph"]["nodes"]) >= 15 and "data" in doc["variables"]["b"] and "offset" in doc["variables"]["w"]
    return doc, raw, sidecar, (folder / sidecar).read_bytes()


# -- mutations --------------------------------------------------------------------------------------

TAGS = st.sampled_from(["dtype", "array", "float", "graph", "shape", "data", "offset", "nbytes", "x"])
SPECIAL_NUMBERS = [-1, 0, 1, 2, 3, 7, 31, 32, 4096, 2**31, 2**53, 2**62, 2**64, 10**12, -(2**63), 0.5, 1e308, -0.0]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from(SPECIAL_NUMBERS)
    | st.floats() | st.text(max_size=8) | st.sampled_from(["float32", "int64", "../x", "x", "h:1", "nan", "inf"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TAGS | st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def _paths(value, prefix=()):
    """Every (container, key, path from the root) location in a JSON value, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield value, key, (*prefix, key)
        yield from _paths(child, (*prefix, key))


# Damage is aimed at a region half of the time, so that the few places where values matter most
# (attributes, shapes, references, stored arrays) are hit as often as the many that matter less.
REGIONS = {
    "anywhere": lambda path: True,
    "attributes": lambda path: "attrs" in path,
    "shapes": lambda path: "shape" in path or "dtype" in path,
    "references": lambda path: "inputs" in path or "signature" in path,
    "arrays": lambda path: "variables" in path or "array" in path or "sidecar" in path,
}


def _mutate_string(data, s: str, names: list[str]) -> str:
    choice = data.draw(st.integers(0, 5))
    if choice == 0:
        return data.draw(st.sampled_from(names))  # another node: types clash, references go backwards
    if choice == 1:
        return s[: data.draw(st.integers(0, len(s)))]
    if choice == 2:
        return s + data.draw(st.sampled_from([":1", ":0", "_1", "\n", "\x00", "/..", "x"]))
    if choice == 3:
        return data.draw(st.sampled_from(["../" + s, "/" + s, s.upper(), s[::-1], ""]))
    if choice == 4:
        return data.draw(st.text(max_size=12))
    return s * 2


def _mutate_number(data, n):
    choice = data.draw(st.integers(0, 4))
    if choice == 0:
        return n + data.draw(st.sampled_from([-2, -1, 1, 2]))
    if choice == 1:
        return -n
    if choice == 2:
        return data.draw(st.sampled_from(SPECIAL_NUMBERS))
    if choice == 3:
        return n * data.draw(st.sampled_from([2, 1000, 2**40]))
    return float(n) + 0.5


def _mutate_nodes(data, nodes: list) -> None:
    if not nodes:
        return
    i = data.draw(st.integers(0, len(nodes) - 1))
    j = data.draw(st.integers(0, len(nodes) - 1))
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        nodes.insert(j, copy.deepcopy(nodes[i]))  # duplicate
    elif choice == 1:
        nodes[i], nodes[j] = nodes[j], nodes[i]  # reorder
    else:
        del nodes[i]  # drop


def _mutate_doc(data, doc: dict, names: list[str]) -> None:
    choice = data.draw(st.integers(0, 9))
    nodes = doc.get("graph", {}).get("nodes") if isinstance(doc.get("graph"), dict) else None
    if choice == 9 and isinstance(nodes, list):
        _mutate_nodes(data, nodes)
        return
    region = REGIONS[data.draw(st.sampled_from(["anywhere"] * 4 + list(REGIONS)))]
    locations = [loc for loc in _paths(doc) if region(loc[2])] or list(_paths(doc))
    container, key, _ = locations[data.draw(st.integers(0, len(locations) - 1))]
    value = container[key]
    if choice <= 1:
        del container[key]
    elif choice <= 4:
        container[key] = data.draw(json_values)
    elif isinstance(value, str):
        container[key] = _mutate_string(data, value, names)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        container[key] = _mutate_number(data, value)
    elif isinstance(value, list) and value:
        container[key] = value[:-1] if choice <= 6 else [*value, copy.deepcopy(value[-1])]
    else:
        container[key] = data.draw(json_values)


def _damage(data, doc: dict, raw: bytes, blob: bytes) -> tuple[bytes, bytes]:
    """New JSON bytes and sidecar bytes, derived from the valid ones."""
    kind = data.draw(st.sampled_from(["doc"] * 8 + ["truncate", "flip", "sidecar"]))
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1))], blob
    if kind == "flip":
        out = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
        return bytes(out), blob
    if kind == "sidecar":
        out = bytearray(blob)
        if data.draw(st.booleans()):
            out[data.draw(st.integers(0, len(out) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del out[data.draw(st.integers(0, len(out) - 1)) :]
        return raw, bytes(out)
    names = [n["name"] for n in doc["graph"]["nodes"]]
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate_doc(data, doc, names)
    return json.dumps(doc, indent=1).encode(), blob  # NaN and Infinity come out as such literals


def _load_and_call(path: Path) -> str:
    try:
        fn = gc.load(path, limits=LIMITS)
    except gc.GraphcError:
        return "rejected"
    if not isinstance(fn, gc.Function):
        return "loaded a graph"
    try:
        fn(**FEEDS)
    except gc.GraphcError:
        return "loaded, call failed"
    return "ran"


# -- the test -------------------------------------------------------------------------------------


def test_damaged_documents_raise_only_graphc_errors_with_bounded_memory(base, tmp_path):
    doc, raw, sidecar, blob = base
    path = tmp_path / "model.json"
    outcomes = Counter()
    peaks = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(st.data())
    def fuzz(data):
        text, side = _damage(data, doc, raw, blob)
        path.write_bytes(text)
        (tmp_path / sidecar).write_bytes(side)
        if data.draw(st.integers(0, TRACE_ONE_IN - 1)):
            outcomes[_load_and_call(path)] += 1  # anything but a GraphcError fails the test here
            return
        tracemalloc.start()  # traced loads run several times slower: measure a random sample
        try:
            outcomes[_load_and_call(path)] += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peaks.append(peak)
        assert peak < MAX_PEAK

    fuzz()
    assert sum(outcomes.values()) >= EXAMPLES
    # the damage was varied: most documents are rejected, some still load and run
    assert outcomes["rejected"] > EXAMPLES // 2 and outcomes["ran"] + outcomes["loaded, call failed"] > 10, outcomes
    assert len(peaks) > EXAMPLES // (2 * TRACE_ONE_IN) and max(peaks) < MAX_PEAK


def test_the_undamaged_document_loads_and_runs_like_the_live_function(base, tmp_path):
    doc, raw, sidecar, blob = base
    (tmp_path / "model.json").write_bytes(raw)
    (tmp_path / sidecar).write_bytes(blob)
    fn = gc.load(tmp_path / "model.json", limits=LIMITS)
    with gc.Graph("fuzz"):
        live = _build()
    for _ in range(3):  # b is updated by every call
        got, expected = fn(**FEEDS), live(**FEEDS)
        assert list(got) == ["loss", "picked"]
        for k in got:
            np.testing.assert_array_equal(got[k], expected[k], strict=True)
    np.testing.assert_array_equal(fn.graph.variables["b"], live.graph.variables["b"], strict=True)
    assert not np.array_equal(fn.graph.variables["b"], np.full(8, 0.5, "float32"))
