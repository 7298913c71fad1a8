"""What an op's C kernel is: a C function over rows of its output, for the native CPU tier.

An op's ``c_kernel(name, in_types, out_type, **attrs)`` returns a ``CFunction`` holding the text
of ``int name(char **p, int64_t lo, int64_t hi)``: ``p`` points at the inputs then the output,
all C-contiguous with the given static types, and the call computes rows [lo, hi) of ``rows``
(images, planes, ...), so that the backend can split them over threads. It returns 0, or nonzero
to decline values it cannot handle (a label out of range) before writing anything: the NumPy
kernel then runs the call and raises its error. Or ``c_kernel`` returns why these types or
attributes have no C kernel. backends/native.py compiles and calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The element types of fused C kernels. NumPy's bool is one byte holding 0 or 1.
C_TYPES = {np.dtype("float32"): "float", np.dtype("float64"): "double", np.dtype("bool"): "unsigned char"}
# Integer types that ops' C kernels read as indices (labels); fused kernels never compute in them.
INDEX_TYPES = {np.dtype("int64"): "int64_t", np.dtype("int32"): "int32_t"}


@dataclass(frozen=True)
class CFunction:
    source: str  # C text defining the function
    rows: int  # what [lo, hi) ranges over
    row_size: int  # output elements per row
    work: int = 0  # operations per row (multiply-adds, taps ...), to decide on threads; 0: row_size
    how: str = ""  # for explain, where the kind of kernel is worth saying ("BLAS GEMM, then the epilogue")

    @property
    def total_work(self) -> int:
        return self.rows * (self.work or self.row_size)


def float_ctype(*types) -> str | None:
    """The C type of these tensors' common float dtype (None: not all float32 or all float64)."""
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.dtype("float32"), np.dtype("float64")):
        return None
    return C_TYPES[next(iter(dtypes))]
