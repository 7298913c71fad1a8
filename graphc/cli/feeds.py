"""CLI data files: feeds read from .npy/.npz/JSON, outputs printed or written to .npz/.npy, random feeds.

Files are read as data only: NumPy files with ``allow_pickle=False`` (an object array is an
error), JSON with the standard parser.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ..runtime import Function
from .common import CLIError

_KEYED = (".npz", ".json")


def split_input(text: str) -> tuple[str, str, str | None]:
    """``x=batch.npz:key`` -> ("x", "batch.npz", "key"); the key is optional."""
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise CLIError(f"--input {text!r}: expected NAME=FILE (a .npy, .npz[:key] or .json file)")
    path, key = spec, None
    head, colon, tail = spec.rpartition(":")
    if colon and head.lower().endswith(_KEYED):
        path, key = head, tail
    return name, path, key


def _pick(arrays: dict, name: str, key: str | None, path: str):
    if key is not None:
        if key not in arrays:
            raise CLIError(f"{path}: no array named {key!r}: it holds {', '.join(sorted(arrays)) or 'nothing'}")
        return arrays[key]
    if name in arrays:
        return arrays[name]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise CLIError(f"{path}: holds {len(arrays)} arrays ({', '.join(sorted(arrays))}) and none is named {name!r}: "
                   f"choose one with {name}={path}:KEY")  # fmt: skip


def read_array(name: str, path: str, key: str | None = None) -> np.ndarray:
    """The array in ``path`` for input ``name`` (never unpickles anything)."""
    if not os.path.exists(path):
        raise CLIError(f"--input {name}={path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            if key is not None:
                raise CLIError(f"--input {name}={path}:{key}: a .npy file holds one array; keys are for .npz/.json")
            return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            return _pick(arrays, name, key, path)
        if ext == ".json":
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
            if isinstance(value, dict):
                value = _pick(value, name, key, path)
            elif key is not None:
                raise CLIError(f"{path}: holds a JSON array, not an object with key {key!r}")
            arr = np.asarray(value)
            if arr.dtype == object or arr.dtype.kind in "USV":
                raise CLIError(f"{path}: not a numeric array (ragged nesting or strings)")
            return arr
    except CLIError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as e:
        raise CLIError(f"--input {name}={path}: cannot read it as a {ext} file: {e}") from None
    raise CLIError(f"--input {name}={path}: unsupported file type {ext or '(none)'!r}: use .npy, .npz or .json")


def read_feeds(fn: Function, specs) -> dict:
    """Feeds for ``fn`` from ``--input NAME=FILE`` options (names checked against the inputs)."""
    names = [name for name, _ in fn._placeholders]
    declared = [t.node.name for t in fn.inputs]
    known = set(names) | set(declared)
    feeds = {}
    for text in specs or ():
        name, path, key = split_input(text)
        if name not in known:
            raise CLIError(f"--input {name}=...: the model has no input {name!r}: its inputs are "
                           f"{', '.join(names) or 'none'}")  # fmt: skip
        if name in feeds:
            raise CLIError(f"--input {name}=...: given twice")
        feeds[name] = read_array(name, path, key)
    missing = [n for n in names if n not in feeds]
    if missing:
        types = dict(fn._placeholders)
        raise CLIError(f"missing --input for {', '.join(f'{n} {types[n]}' for n in missing)}")
    return feeds


def flat_outputs(fn: Function, result) -> list[np.ndarray]:
    kind = fn.structure.kind
    if kind == "tensor":
        return [result]
    if kind == "dict":
        return [result[k] for k in fn.structure.keys]
    return list(result or ())


def format_outputs(names, values) -> str:
    if not names:
        return "(the function has no outputs)\n"
    lines = []
    with np.printoptions(threshold=200, edgeitems=3, linewidth=100):
        for name, value in zip(names, values):
            value = np.asarray(value)
            lines.append(f"{name}: {value.dtype} {value.shape}")
            lines.extend("  " + line for line in np.array2string(value).splitlines())
    return "\n".join(lines) + "\n"


def write_outputs(path: str, names, values) -> str:
    """Write outputs to .npz (one array per name) or .npy (a single output); returns a summary."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        if len(values) != 1:
            raise CLIError(f"--output {path}: a .npy file holds one array but the function has {len(values)} "
                           f"outputs: use a .npz file")  # fmt: skip
        with open(path, "wb") as f:
            np.save(f, np.asarray(values[0]), allow_pickle=False)
    elif ext == ".npz":
        # written entry by entry (as np.savez does) so that any output name, even "file", is a key
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for name, value in zip(names, values):
                with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    else:
        raise CLIError(f"--output {path}: unsupported file type {ext or '(none)'!r}: use .npz or .npy")
    return f"wrote {path}: {', '.join(names) or 'no arrays'}"


def random_feeds(fn: Function, signature: tuple, seed: int = 0) -> dict:
    """Random feeds of the given shapes: standard normal floats; zeros for ints and bools (always
    valid indices and labels)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for (name, t), shape in zip(fn._placeholders, signature):
        if t.dtype.kind in "fc":
            feeds[name] = rng.standard_normal(shape).astype(t.dtype)
        else:
            feeds[name] = np.zeros(shape, t.dtype)
    return feeds
