"""Arrays in files: small ones inline (base64, little-endian), large ones in a sidecar file.

The sidecar is named after its content (``<model>.<sha256 prefix>.bin``) so that a crash in the
middle of a save never leaves the old JSON pointing at new weights; the JSON records its relative
name, size and full sha256, which the loader verifies.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import stat
from dataclasses import dataclass

import numpy as np

from ..dtypes import SUPPORTED
from ..errors import FormatError
from .schema import validate

INLINE_MAX_BYTES = 4096  # larger arrays go to the sidecar file


@dataclass(frozen=True)
class LoadLimits:
    """Resource limits a loader enforces before allocating anything (configurable per load)."""

    max_file_bytes: int = 1 << 30
    max_nodes: int = 100_000
    max_depth: int = 16  # nesting of subgraphs
    max_constant_bytes: int = 1 << 30  # all arrays in the file together
    max_tensor_bytes: int = 1 << 32  # the largest tensor a plan may allocate


def _le(arr: np.ndarray) -> np.ndarray:
    """The array as contiguous little-endian data."""
    arr = np.ascontiguousarray(arr)
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False) if arr.dtype.byteorder == ">" else arr


class ArrayWriter:
    """Collects arrays while a document is built; big ones go into one sidecar blob."""

    def __init__(self, inline_max: int = INLINE_MAX_BYTES):
        self.inline_max = inline_max
        self.blob = bytearray()

    def encode(self, arr: np.ndarray) -> dict:
        arr = np.asarray(arr)
        data = _le(arr).tobytes()
        entry = {"dtype": arr.dtype.name, "shape": list(arr.shape)}
        if len(data) <= self.inline_max:
            entry["data"] = base64.b64encode(data).decode("ascii")
        else:
            pad = -len(self.blob) % 64  # keep every array 64-byte aligned in the sidecar
            self.blob.extend(b"\0" * pad)
            entry["offset"] = len(self.blob)
            entry["nbytes"] = len(data)
            self.blob.extend(data)
        return entry


class ArrayReader:
    """Decodes array entries, reading the sidecar once and checking its name, size and hash."""

    def __init__(self, folder: str, sidecar: dict | None, where: str, limits: LoadLimits):
        self.folder = folder
        self.sidecar = sidecar
        self.where = where
        self.limits = limits
        self._blob = None
        self.total = 0

    def _blob_bytes(self) -> bytes:
        if self._blob is None:
            if self.sidecar is None:
                raise FormatError(f"{self.where}: an array refers to a sidecar file but the file names none")
            self._blob = read_sidecar(self.folder, self.sidecar, self.where, self.limits.max_file_bytes)
        return self._blob

    def decode(self, entry: dict, what: str) -> np.ndarray:
        """The array an entry describes; ``what`` names it in errors (after the file's name)."""
        validate(entry, self.where, "array", what)  # entries inside attributes escaped the document's check
        dtype = entry["dtype"]
        if dtype not in SUPPORTED:
            raise FormatError(f"{self.where}: {what}: unsupported dtype {dtype!r}")
        shape = tuple(entry["shape"])
        if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
            raise FormatError(f"{self.where}: {what}: shape must hold non-negative ints: got {list(shape)}")
        dt = np.dtype(dtype).newbyteorder("<")
        nbytes = math.prod(shape) * dt.itemsize
        self.total += nbytes
        if any(d > self.limits.max_tensor_bytes for d in shape):  # absurd even when another dim is 0
            raise FormatError(f"{self.where}: {what}: shape {list(shape)} has an absurd dimension, more than "
                              f"max_tensor_bytes={self.limits.max_tensor_bytes}")  # fmt: skip
        if nbytes > self.limits.max_tensor_bytes or self.total > self.limits.max_constant_bytes:
            raise FormatError(
                f"{self.where}: {what}: {nbytes} bytes exceed the load limits "
                f"(max_tensor_bytes={self.limits.max_tensor_bytes}, "
                f"max_constant_bytes={self.limits.max_constant_bytes})"
            )
        if "data" in entry:
            try:
                data = base64.b64decode(entry["data"], validate=True)
            except (ValueError, TypeError):
                raise FormatError(f"{self.where}: {what}: data is not valid base64") from None
        else:
            offset, size = entry.get("offset"), entry.get("nbytes")
            blob = self._blob_bytes()
            if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or offset + size > len(blob):
                raise FormatError(f"{self.where}: {what}: offset/nbytes lie outside the sidecar file")
            data = blob[offset : offset + size]
        if len(data) != nbytes:
            raise FormatError(f"{self.where}: {what}: {len(data)} bytes of data for shape {list(shape)} {dtype}: "
                              f"expected {nbytes}")  # fmt: skip
        return np.frombuffer(data, dtype=dt).astype(np.dtype(dtype), copy=True).reshape(shape)


def sidecar_name(stem: str, blob: bytes) -> str:
    return f"{stem}.{hashlib.sha256(blob).hexdigest()[:16]}.bin"


def read_sidecar(folder: str, sidecar: dict, where: str, max_bytes: int | None = None) -> bytes:
    """The sidecar's bytes, after checking that it stays in the model's folder, is a regular file
    of at most ``max_bytes`` (checked before reading), and matches its recorded size and hash."""
    name = sidecar.get("file")
    plain = isinstance(name, str) and name not in ("", ".", "..") and not os.path.isabs(name)
    if not plain or "/" in name or "\\" in name or "\0" in name:
        raise FormatError(f"{where}: sidecar name {name!r} must be a plain file name in the model's folder")
    path = os.path.join(folder, name)
    if os.path.islink(path):
        raise FormatError(f"{where}: sidecar {name!r} is a symbolic link; refusing to follow it")
    if os.path.realpath(os.path.dirname(path)) != os.path.realpath(folder):
        raise FormatError(f"{where}: sidecar {name!r} leaves the model's folder")
    try:  # no following a link swapped in after the check above; no blocking on a FIFO
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise FormatError(f"{where}: sidecar {name!r} is not a regular file")
            if st.st_size != sidecar.get("nbytes"):
                raise FormatError(f"{where}: sidecar {name!r} has {st.st_size} bytes: expected {sidecar.get('nbytes')}")
            if max_bytes is not None and st.st_size > max_bytes:
                raise FormatError(
                    f"{where}: sidecar {name!r} has {st.st_size} bytes, more than max_file_bytes={max_bytes}"
                )
            blob = f.read()
    except OSError as e:
        raise FormatError(f"{where}: cannot read sidecar {name!r}: {e.strerror}") from None
    if hashlib.sha256(blob).hexdigest() != sidecar.get("sha256"):
        raise FormatError(f"{where}: sidecar {name!r} does not match its sha256 (corrupt or replaced)")
    return blob
