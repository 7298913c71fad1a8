"""The BLAS NumPy itself calls, for the GEMMs of generated C (backends/native.py).

A C kernel that computes a matmul calls the CBLAS GEMM of the library NumPy has loaded (OpenBLAS
in NumPy's wheels, OpenBLAS or MKL in conda): the same code, tuning and threads as ``np.matmul``,
but called from C, so that no Python runs between a GEMM and its epilogue, and with BLAS's
``C = alpha * A @ B + beta * C``, so that a GEMM can accumulate into its output (an SGD update
folded into its weight gradient's GEMM) where NumPy's matmul can only overwrite it.

The library is found among the files the process has mapped (Linux), by its CBLAS symbol
(``cblas_sgemm``, or with the ``scipy_`` prefix and the ``64_`` suffix of the OpenBLAS NumPy's
wheels bundle), and checked against ``np.matmul`` on small products before any kernel uses it.
Integer arguments are passed as 64-bit: exact for a 64-bit-integer BLAS, and read correctly by a
32-bit one on the 64-bit Linux ABIs allowed here (an int is the low half of its register or its
8-byte stack slot). Where no library passes, matmuls stay with NumPy.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from pathlib import Path

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # the CBLAS enums
# the 64-bit Linux ABIs on which 64-bit integer arguments reach a 32-bit BLAS intact
ABIS = {("Linux", "x86_64"), ("Linux", "aarch64")}
SYMBOLS = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_", "cblas_{}gemm")


class Gemm:
    """The addresses of a BLAS's single and double precision CBLAS GEMMs (``None``, and
    ``reason`` saying why, where there is none to use)."""

    def __init__(self, sgemm: int | None = None, dgemm: int | None = None, library: str = "", reason: str = ""):
        self.sgemm, self.dgemm, self.library, self.reason = sgemm, dgemm, library, reason


def _mapped_libraries() -> list[str]:
    """Shared libraries mapped into this process whose name says BLAS (or MKL), in map order."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        name = Path(path).name.lower()
        if path.startswith("/") and ".so" in name and ("blas" in name or "mkl_rt" in name) and path not in found:
            found.append(path)
    return found


def _signature(ctype) -> ctypes.CFUNCTYPE:
    i64, p = ctypes.c_int64, ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, i64, i64, i64, i64, i64, i64, ctype, p, i64, p, i64, ctype, p, i64)


def _agrees(address: int, dtype) -> bool:
    """Whether the GEMM at ``address`` computes alpha * op(A) @ op(B) + beta * C as NumPy does,
    for each pair of transpose flags, on a small product of odd sizes."""
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    fn = _signature(ctype)(address)
    rng = np.random.default_rng(0)
    m, n, k = 3, 5, 7
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
            c = rng.standard_normal((m, n)).astype(dtype)
            want = 0.5 * (a.T if ta else a).astype(np.float64) @ (b.T if tb else b) - 2.0 * c
            fn(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 0.5,
               a.ctypes.data, m if ta else k, b.ctypes.data, k if tb else n, -2.0, c.ctypes.data, n)  # fmt: skip
            if not np.allclose(c, want, rtol=1e-4, atol=1e-4):
                return False
    return True


@functools.lru_cache(maxsize=1)
def gemm() -> Gemm:
    """The GEMMs of the BLAS NumPy loaded, probed once per process."""
    if (platform.system(), platform.machine()) not in ABIS:
        return Gemm(reason=f"BLAS is called from C only on 64-bit Linux (this is {platform.system()} "
                           f"{platform.machine()})")  # fmt: skip
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # (NumPy loads its BLAS with its first product)
    for path in _mapped_libraries():
        try:
            lib = ctypes.CDLL(path)  # (already mapped: this finds it, it does not load another)
        except OSError:
            continue
        for pattern in SYMBOLS:
            found = [getattr(lib, pattern.format(t), None) for t in "sd"]
            if all(f is not None for f in found):
                s, d = (ctypes.cast(f, ctypes.c_void_p).value for f in found)
                if _agrees(s, np.float32) and _agrees(d, np.float64):
                    return Gemm(s, d, f"{Path(path).name} ({pattern.format('s')})")
                return Gemm(reason=f"{Path(path).name}: its {pattern.format('s')} disagrees with np.matmul")
    return Gemm(reason="NumPy's BLAS has no CBLAS GEMM this process can find")
