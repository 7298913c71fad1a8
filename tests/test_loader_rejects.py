"""The loader treats a file as untrusted data: every kind of bad file is a FormatError saying what and where.

Each test starts from a valid saved model, breaks one thing in its JSON (or its sidecar), and
checks the error's class and that its message names the file and the node, key or value at fault.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

X = np.arange(12, dtype="float32").reshape(3, 4)


def _build():
    """x -> relu(x @ w + b) -> split -> sum: a sidecar array (w), inline ones (b, a constant)."""
    x = gc.placeholder((None, 4), name="x")
    w = gc.variable(np.arange(2048, dtype="float32").reshape(4, 512) / 100, name="w")  # 8 KB: the sidecar
    b = gc.variable(np.zeros(512, "float32"), name="b")  # 2 KB: inline
    h = gc.relu(x @ w + b, name="h")
    left, right = gc.split(h, 2, axis=1)
    return gc.compile(gc.sum(left * 3.0 - right, axis=1, name="out"), inputs=[x])


@pytest.fixture
def model(tmp_path) -> Path:
    with gc.Graph("model"):
        path = Path(gc.save(_build(), tmp_path / "model.json"))
    assert gc.load(path)(X).shape == (3,)  # the unedited file is fine
    return path


def _edit(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))
    return path


def _node(doc: dict, name: str) -> dict:
    return next(n for n in doc["graph"]["nodes"] if n["name"] == name)


def _sidecar(path: Path) -> Path:
    return path.parent / json.loads(path.read_text())["sidecar"]["file"]


def rejects(path, match: str, **load_args) -> gc.FormatError:
    with pytest.raises(gc.FormatError, match=match) as info:
        gc.load(path, **load_args)
    assert isinstance(info.value, gc.GraphcError)
    return info.value


def test_format_error_is_a_graphc_error():
    assert issubclass(gc.FormatError, gc.GraphcError)


# -- not a graphc document --------------------------------------------------------------------------


def test_malformed_json(model):
    model.write_text(model.read_text().replace('"version": 1,', '"version": 1,,'))
    rejects(model, r"model\.json: malformed or truncated JSON: Expecting property name .*line 3")


def test_truncated_json(model):
    model.write_bytes(model.read_bytes()[:1000])
    rejects(model, r"model\.json: malformed or truncated JSON")


def test_empty_file(model):
    model.write_bytes(b"")
    rejects(model, r"model\.json: malformed or truncated JSON")


def test_not_utf8(model):
    model.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    rejects(model, r"model\.json: not UTF-8 text")


def test_json_that_is_not_an_object(model):
    model.write_text("[1, 2, 3]")
    rejects(model, r"model\.json: not a graphc file: format is 'list', expected 'graphc'")


def test_wrong_format(model):
    _edit(model, lambda d: d.update(format="onnx"))
    rejects(model, r"model\.json: not a graphc file: format is 'onnx', expected 'graphc'")


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unsupported_version(model, version):
    _edit(model, lambda d: d.update(version=version))
    rejects(model, rf"model\.json: unsupported format version {re.escape(repr(version))}: this graphc reads version 1")


def test_unknown_top_level_key(model):
    _edit(model, lambda d: d.update(code="import os"))
    rejects(model, r"model\.json: \$: unknown key 'code'")


def test_missing_required_key(model):
    _edit(model, lambda d: _node(d, "h").pop("inputs"))
    rejects(model, r"model\.json: \$\.graph\.nodes\[5\]: missing required key 'inputs'")


def test_wrong_type_with_its_key_path(model):
    _edit(model, lambda d: d["signature"].update(inputs="x"))
    rejects(model, r"model\.json: \$\.signature\.inputs: got str, expected array")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_literal_is_not_json(model, literal):
    text = model.read_text().replace('"keepdims": false', f'"keepdims": {literal}')
    assert literal in text
    model.write_text(text)
    rejects(model, rf"model\.json: malformed or truncated JSON: {literal} is not valid JSON")


def test_deeply_nested_json(model):
    model.write_text("[" * 100_000 + "]" * 100_000)
    rejects(model, r"model\.json: JSON nested too deeply")


def test_deeply_nested_attribute(model):
    value = 1
    for _ in range(500):  # parses as JSON, but deeper than any attribute graphc writes
        value = [value]
    _edit(model, lambda d: _node(d, "out")["attrs"].update(axes=value))
    rejects(model, r"node 10 'out' \(sum\): attribute 'axes': nested more than 16 deep")


# -- nodes --------------------------------------------------------------------------------------------


def test_unknown_op(model):
    _edit(model, lambda d: _node(d, "h").update(op="frobnicate"))
    rejects(model, r"model\.json: node 5 'h' \(frobnicate\): unknown op 'frobnicate'")


def test_op_name_that_is_code(model):
    _edit(model, lambda d: _node(d, "h").update(op="__import__('os')"))
    rejects(model, r"model\.json: \$\.graph\.nodes\[5\]\.op: .* does not match")


def test_fused_ops_are_never_read_from_a_file(model):
    body = [["add", [0, 9], [], "float32"]]  # a body that indexes past its inputs
    _edit(model, lambda d: _node(d, "h").update(op="fused_elementwise", attrs={"body": body}))
    rejects(model, r"node 5 'h' \(fused_elementwise\): fused ops are made when a plan is specialized")


def test_unknown_attribute(model):
    _edit(model, lambda d: _node(d, "out")["attrs"].update(bogus=1))
    rejects(model, r"node 10 'out' \(sum\): bad attributes \['axes', 'bogus', 'keepdims'\].*'bogus'")


def test_missing_attribute(model):
    _edit(model, lambda d: _node(d, "out")["attrs"].pop("axes"))
    rejects(model, r"node 10 'out' \(sum\): bad attributes \['keepdims'\].*missing .*'axes'")


@pytest.mark.parametrize(
    "node, attr, value, message",
    [
        ("out", "axes", [1.0], r"distinct axes in \[0, 32\): got \(1\.0,\)"),
        ("out", "axes", [True], r"distinct axes in \[0, 32\): got \(True,\)"),
        ("out", "axes", [1, 1], r"distinct axes in \[0, 32\): got \(1, 1\)"),
        ("out", "axes", [-1], r"distinct axes in \[0, 32\): got \(-1,\)"),
        ("out", "keepdims", 0, r"a bool: got 0"),
        ("split", "sections", 10**9, r"a number of sections .*: got 1000000000"),  # a billion output types
        ("split", "axis", "1", r"an axis in \[0, 32\) or null: got '1'"),
        ("x", "dtype", "float32", r"a dtype: got 'float32'"),
        ("matmul", "transpose_a", False, r"true \(omitted when false\): got False"),
        ("matmul", "transpose_b", 1, r"true \(omitted when false\): got 1"),
    ],
)
def test_attribute_of_the_wrong_kind(model, node, attr, value, message):
    _edit(model, lambda d: _node(d, node)["attrs"].update({attr: value}))
    rejects(model, rf"model\.json: node \d+ '{node}' \(\w+\): attribute '{attr}' must be {message}")


@pytest.mark.parametrize(
    "node, attr, value, message",
    [
        ("conv", "stride", [1, "1); system(\"x\"); ("], r"a pair of ints >= 1: got \(1, '1\); system"),
        ("conv", "stride", [0, 1], r"a pair of ints >= 1: got \(0, 1\)"),
        ("conv", "dilation", [1.5, 1], r"a pair of ints >= 1: got \(1\.5, 1\)"),
        ("conv", "groups", True, r"an int >= 1: got True"),
        ("conv", "padding", [[0, 0], [0, -1]], r"a pair of ints >= 0, or two pairs of them"),
        ("pool", "kernel", [2], r"a pair of ints >= 1: got \(2,\)"),
        ("pool", "padding", [0, "0"], r"a pair of ints >= 0, or two pairs of them"),
    ],
)
def test_convolution_attributes_are_numbers(tmp_path, node, attr, value, message):
    """The native tier writes a convolution's geometry into C source: only ints get that far."""
    with gc.Graph("cnn"):
        x = gc.placeholder((2, 1, 6, 6), name="x")
        w = gc.variable(np.ones((2, 1, 3, 3), "float32"), name="w")
        y = gc.max_pool2d(gc.conv2d(x, w, padding=1, name="conv"), 2, name="pool")
        path = Path(gc.save(gc.compile(y), tmp_path / "cnn.json"))
    assert gc.load(path)(x=np.ones((2, 1, 6, 6), "float32")).shape == (2, 2, 3, 3)
    _edit(path, lambda d: _node(d, node)["attrs"].update({attr: value}))
    rejects(path, rf"cnn\.json: node \d+ '{node}' \(\w+\): attribute '{attr}' must be {message}")


@pytest.mark.parametrize("value", [{"dtype": "object"}, {"dtype": "complex128"}, {"eval": "1"}, {"float": "1e5"}])
def test_attribute_values_that_do_not_decode(model, value):
    _edit(model, lambda d: _node(d, "x")["attrs"].update(dtype=value))
    rejects(model, r"node 0 'x' \(placeholder\): attribute 'dtype': (unsupported dtype|unrecognized attribute value)")


def test_dangling_input_reference(model):
    _edit(model, lambda d: _node(d, "h").update(inputs=["nowhere"]))
    rejects(model, r"node 5 'h' \(relu\): refers to 'nowhere', which is not defined before it")


def test_reference_to_a_later_node_is_a_cycle(model):
    _edit(model, lambda d: _node(d, "matmul").update(inputs=["x", "h"]))  # h is computed from matmul
    rejects(model, r"node 3 'matmul' \(matmul\): refers to 'h', which is not defined before it")


def test_reference_to_a_missing_output(model):
    _edit(model, lambda d: _node(d, "subtract").update(inputs=["multiply", "split:2"]))
    rejects(model, r"node 9 'subtract' \(subtract\): refers to output 2 of 'split', which has 2 outputs")


def test_duplicate_node_name(model):
    _edit(model, lambda d: _node(d, "h").update(name="add"))
    rejects(model, r"node 5 'add' \(relu\): duplicate node name")


def test_name_with_a_trailing_newline(model):
    # Python's "$" would accept it; node names end up in comments of generated code
    model.write_text(model.read_text().replace('"name": "h"', '"name": "h\\n"'))
    rejects(model, r"\$\.graph\.nodes\[5\]\.name: 'h\\n' does not match")


def test_recorded_dtype_disagrees_with_inference(model):
    _edit(model, lambda d: _node(d, "h")["outputs"][0].update(dtype="float64"))
    rejects(model, r"node 5 'h' \(relu\): recorded output types f64\[\?,512\] disagree with shape inference: f32")


def test_recorded_shape_disagrees_with_inference(model):
    _edit(model, lambda d: _node(d, "out")["outputs"][0].update(shape=[None, 3]))
    rejects(model, r"node 10 'out' \(sum\): recorded output types f32\[\?,3\] disagree with shape inference: f32\[\?\]")


def test_recorded_type_disagrees_with_a_placeholder(model):
    _edit(model, lambda d: _node(d, "x")["outputs"][0].update(shape=[None, 5]))
    rejects(model, r"node 0 'x' \(placeholder\): recorded type f32\[\?,5\] disagrees with its attributes: f32\[\?,4\]")


def test_variable_value_disagrees_with_its_node(model):
    _edit(model, lambda d: d["variables"]["b"].update(shape=[256, 2], data=d["variables"]["b"]["data"]))
    rejects(model, r"node 2 'b' \(variable\): stored value \(256, 2\) float32 does not match \(512,\) float32")


def test_variable_without_a_value(model):
    _edit(model, lambda d: d["variables"].pop("b"))
    rejects(model, r"node 2 'b' \(variable\): the file holds no value for this variable")


def test_inline_data_of_the_wrong_length(model):
    _edit(model, lambda d: d["variables"]["b"].update(data="AAAA"))
    rejects(model, r"variable 'b': 3 bytes of data for shape \[512\] float32: expected 2048")


def test_inline_data_that_is_not_base64(model):
    _edit(model, lambda d: d["variables"]["b"].update(data="not base64!"))
    rejects(model, r"variable 'b': data is not valid base64")


def test_array_offset_outside_the_sidecar(model):
    _edit(model, lambda d: d["variables"]["w"].update(offset=8000))
    rejects(model, r"variable 'w': offset/nbytes lie outside the sidecar file")


# -- dimensions ---------------------------------------------------------------------------------------


def _set_x_shape(doc, shape, where="outputs"):
    if where == "outputs":
        _node(doc, "x")["outputs"][0]["shape"] = shape
    else:
        _node(doc, "x")["attrs"]["shape"] = shape


def test_negative_dimension(model):
    _edit(model, lambda d: _set_x_shape(d, [-1, 4]))
    rejects(model, r"model\.json: \$\.graph\.nodes\[0\]\.outputs\[0\]\.shape\[0\]: -1 is below the minimum 0")


@pytest.mark.parametrize(
    "dim, message",
    [(-1, r"shape must hold non-negative ints or null: got \(-1, 4\)"),  # -1 is fine in a reshape's shape
     (-3, r"attribute 'shape' must be a list of ints or nulls: got \(-3, 4\)")],
)  # fmt: skip
def test_negative_dimension_in_an_attribute(model, dim, message):
    _edit(model, lambda d: _set_x_shape(d, [dim, 4], "attrs"))
    rejects(model, rf"node 0 'x' \(placeholder\): {message}")


def test_negative_dimension_of_a_stored_array(model):
    _edit(model, lambda d: d["variables"]["b"].update(shape=[-512]))
    rejects(model, r"model\.json: \$\.variables\.b\.shape\[0\]: -512 is below the minimum 0")


@pytest.mark.parametrize("dim, kind", [(1.5, "float"), (1e308, "float"), ("3", "str"), (True, "bool")])
def test_non_integer_dimension(model, dim, kind):
    _edit(model, lambda d: _set_x_shape(d, [None, dim]))
    rejects(model, rf"\$\.graph\.nodes\[0\]\.outputs\[0\]\.shape\[1\]: got {kind}, expected integer or null")


@pytest.mark.parametrize("dim", [1.5, 1e308, "3"])
def test_non_integer_dimension_in_an_attribute(model, dim):
    _edit(model, lambda d: _set_x_shape(d, [None, dim], "attrs"))
    rejects(model, r"node 0 'x' \(placeholder\): attribute 'shape' must be a list of ints or nulls")


def test_non_integer_dimension_of_a_stored_array(model):
    _edit(model, lambda d: d["variables"]["b"].update(shape=[512.0]))
    rejects(model, r"\$\.variables\.b\.shape\[0\]: got float, expected integer")


@pytest.mark.parametrize("shape", [[2**62, 4], [None, 2**62], [2**62, 0], [2**70, 0]])
def test_absurd_dimension(model, shape):
    def change(doc):
        _set_x_shape(doc, shape)
        _set_x_shape(doc, shape, "attrs")

    _edit(model, change)
    rejects(model, r"node 0 'x' \(placeholder\): a tensor of shape \(.*\) (needs \d+ bytes|has an absurd dimension)")


def test_absurd_dimension_of_a_stored_array(model):
    _edit(model, lambda d: d["variables"]["b"].update(shape=[2**62, 0], data=""))
    rejects(model, r"variable 'b': shape \[4611686018427387904, 0\] has an absurd dimension, more than max_tensor")


# -- the sidecar ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../model.bin", "sub/model.bin", "..", "", "a\u0000b"])
def test_sidecar_name_that_leaves_the_folder(model, name):
    _edit(model, lambda d: d["sidecar"].update(file=name))
    rejects(model, rf"model\.json: sidecar name {re.escape(repr(name))} must be a plain file name")


def test_absolute_sidecar_path(model):
    sidecar = _sidecar(model)
    _edit(model, lambda d: d["sidecar"].update(file=str(sidecar)))  # the right bytes, but by absolute path
    rejects(model, r"model\.json: sidecar name '/.*' must be a plain file name in the model's folder")


def test_sidecar_that_is_a_symbolic_link(model, tmp_path):
    sidecar = _sidecar(model)
    elsewhere = tmp_path / "elsewhere.bin"
    sidecar.rename(elsewhere)
    sidecar.symlink_to(elsewhere)  # same bytes, same hash: only the link is wrong
    rejects(model, rf"model\.json: sidecar '{sidecar.name}' is a symbolic link")


def test_sidecar_that_is_a_directory(model):
    sidecar = _sidecar(model)
    sidecar.unlink()
    sidecar.mkdir()
    rejects(model, rf"model\.json: (cannot read )?sidecar '{sidecar.name}'(: Is a directory| is not a regular file)")


def test_sidecar_hash_mismatch(model):
    sidecar = _sidecar(model)
    data = bytearray(sidecar.read_bytes())
    data[100] ^= 0x01
    sidecar.write_bytes(bytes(data))
    rejects(model, rf"model\.json: sidecar '{sidecar.name}' does not match its sha256")


def test_sidecar_size_mismatch(model):
    sidecar = _sidecar(model)
    sidecar.write_bytes(sidecar.read_bytes() + b"\0")
    rejects(model, rf"model\.json: sidecar '{sidecar.name}' has 8193 bytes: expected 8192")


def test_missing_sidecar(model):
    sidecar = _sidecar(model)
    sidecar.unlink()
    rejects(model, rf"model\.json: cannot read sidecar '{sidecar.name}': No such file or directory")


def test_missing_sidecar_entry(model):
    _edit(model, lambda d: d.pop("sidecar"))
    rejects(model, r"model\.json: an array refers to a sidecar file but the file names none")


# -- signature ----------------------------------------------------------------------------------------


def test_signature_input_that_is_not_a_placeholder(model):
    _edit(model, lambda d: d["signature"].update(inputs=["w"]))
    rejects(model, r"model\.json: signature: input 'w' is not a placeholder of the graph")


def test_signature_input_listed_twice(model):
    _edit(model, lambda d: d["signature"].update(inputs=["x", "x"]))
    rejects(model, r"model\.json: signature: input 'x' is listed twice")


def test_signature_output_that_dangles(model):
    _edit(model, lambda d: d["signature"]["outputs"].update(tensors=["ghost"]))
    rejects(model, r"model\.json: signature: refers to 'ghost'")


def test_signature_structure_that_does_not_fit(model):
    _edit(model, lambda d: d["signature"]["outputs"].update(structure="dict", keys=["a", "b"]))
    rejects(model, r"model\.json: signature: output structure 'dict' does not fit 1 outputs")


def test_update_of_something_that_is_not_a_variable(model):
    _edit(model, lambda d: d["signature"].update(updates=[{"variable": "h", "value": "h"}]))
    rejects(model, r"model\.json: signature: update of 'h', which is not a variable")


def test_update_with_a_value_of_another_type(model):
    _edit(model, lambda d: d["signature"].update(updates=[{"variable": "b", "value": "h"}]))
    rejects(model, r"model\.json: signature: update of 'b' f32\[512\] with a value of type f32\[\?,512\]")


def test_variable_updated_twice(model):
    twice = [{"variable": "b", "value": "b"}, {"variable": "b", "value": "b"}]
    _edit(model, lambda d: d["signature"].update(updates=twice))
    rejects(model, r"model\.json: signature: variable 'b' is updated twice")


# -- resource limits ----------------------------------------------------------------------------------


def test_max_file_bytes(model):
    size = model.stat().st_size
    rejects(model, rf"model\.json: {size} bytes exceed max_file_bytes=1000", limits=gc.LoadLimits(max_file_bytes=1000))


def test_max_file_bytes_applies_to_the_sidecar(model):
    limits = gc.LoadLimits(max_file_bytes=model.stat().st_size)  # the JSON fits, the 8 KB sidecar does not
    rejects(model, r"sidecar 'model\.\w+\.bin' has 8192 bytes, more than max_file_bytes", limits=limits)


def test_max_nodes(model):
    rejects(model, r"model\.json: 11 nodes exceed max_nodes=10", limits=gc.LoadLimits(max_nodes=10))
    assert gc.load(model, limits=gc.LoadLimits(max_nodes=11))(X).shape == (3,)


def test_max_constant_bytes(model):
    limits = gc.LoadLimits(max_constant_bytes=9000)  # w (8,192 bytes) fits; w + b (2,048) does not
    rejects(model, r"variable '[wb]': \d+ bytes exceed the load limits .*max_constant_bytes=9000", limits=limits)
    assert gc.load(model, limits=gc.LoadLimits(max_constant_bytes=10_244)) is not None


def test_max_tensor_bytes_of_a_stored_array(model):
    limits = gc.LoadLimits(max_tensor_bytes=4096)
    rejects(model, r"variable 'w': 8192 bytes exceed the load limits \(max_tensor_bytes=4096", limits=limits)


def test_max_tensor_bytes_at_load_for_static_shapes(tmp_path):
    x = gc.placeholder((300, 4), name="x")
    outer = gc.reshape(x, (1200, 1)) * gc.reshape(x, (1, 1200))  # 1200 x 1200 float32: 5.76 MB
    gc.save(gc.compile(gc.sum(outer), inputs=[x]), tmp_path / "m.json")
    message = r"node \d+ 'multiply' \(multiply\): a tensor of shape \(1200, 1200\) float32 needs 5760000 bytes"
    limits = gc.LoadLimits(max_tensor_bytes=10**6)
    rejects(tmp_path / "m.json", message + ", more than max_tensor_bytes=1000000", limits=limits)
    assert gc.load(tmp_path / "m.json", limits=gc.LoadLimits(max_tensor_bytes=6 * 10**6)) is not None


def test_max_tensor_bytes_at_call_time_before_allocating(tmp_path):
    x = gc.placeholder((None,), name="x")
    gc.save(gc.compile(gc.sum(x[:, None] * x[None, :]), inputs=[x]), tmp_path / "m.json")
    fn = gc.load(tmp_path / "m.json")  # unknown dims: nothing to check until a call
    assert fn(np.ones(10, "float32")) == 100
    feed = np.ones(500_000, "float32")  # the outer product would need 10**12 bytes
    tracemalloc.start()
    try:
        with pytest.raises(gc.FormatError, match=r"multiply 'multiply': with these feeds it would allocate "
                           r"1000000000000 bytes for f32\[500000,500000\], more than max_tensor_bytes"):  # fmt: skip
            fn(feed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_a_nested_graph_is_checked_against_the_body_schema(model):
    # control-flow bodies arrive as {"graph": {...}} (tests/test_control_flow.py covers max_depth)
    _edit(model, lambda d: _node(d, "out")["attrs"].update(body={"graph": {"nodes": []}}))
    rejects(model, r"node 10 'out' \(sum\): attribute 'body': \$: missing required key 'params'")


def test_max_depth(tmp_path):
    x = gc.placeholder((None,), name="x")
    inner = lambda: gc.cond(gc.mean(x) > 1, lambda: x * 2, lambda: x * 3)  # noqa: E731
    fn = gc.compile(gc.cond(gc.sum(x) > 0, inner, lambda: -x), inputs=[x])  # bodies nested 2 deep
    gc.save(fn, tmp_path / "m.json")
    rejects(tmp_path / "m.json", r"m\.json: .*control-flow bodies nested 2 deep, more than max_depth=1",
            limits=gc.LoadLimits(max_depth=1))  # fmt: skip
    feed = np.array([1.0, 2.0], "float32")
    np.testing.assert_array_equal(gc.load(tmp_path / "m.json", limits=gc.LoadLimits(max_depth=2))(feed), fn(feed))


# -- the loader reads; it never executes ----------------------------------------------------------------


def test_loading_never_imports_or_evaluates_file_content(model, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    _edit(model, lambda d: _node(d, "out")["attrs"].update(axes=payload))
    rejects(model, r"attribute 'axes' must be distinct axes")
    _edit(model, lambda d: _node(d, "out")["attrs"].update(axes=[1], keepdims={"__reduce__": payload}))
    rejects(model, r"attribute 'keepdims': unrecognized attribute value")
    assert not marker.exists()


# -- a graph's implicit updates -----------------------------------------------------------------------


@pytest.fixture
def graph_file(tmp_path) -> Path:
    with gc.Graph("g") as g:
        gc.nn.Dropout(0.5, name="drop")(gc.placeholder((None, 4), name="x"), training=True)
    return Path(gc.save(g, tmp_path / "graph.json"))


def _implicit(doc: dict) -> dict:
    return doc["graph"]["implicit_updates"][0]


def test_implicit_update_of_a_non_variable(graph_file):
    _edit(graph_file, lambda d: _implicit(d).update(variable="x"))
    rejects(graph_file, r"graph\.json: graph implicit update 0: 'x' is not a variable")


def test_implicit_update_with_a_dangling_reference(graph_file):
    _edit(graph_file, lambda d: _implicit(d).update(value="nowhere"))
    rejects(graph_file, r"graph\.json: graph implicit update 0: refers to 'nowhere'")


def test_implicit_update_of_the_wrong_type(graph_file):
    _edit(graph_file, lambda d: _implicit(d).update(value="x"))
    rejects(graph_file, r"graph\.json: graph implicit update 0: update of '.*counter' i64\[\] with a value of type")


def test_implicit_updates_in_a_function_file(model):
    _edit(model, lambda d: d["graph"].update(implicit_updates=[]))
    rejects(model, r"model\.json: a function file keeps its implicit updates among its signature's updates")
