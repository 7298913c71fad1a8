"""C source for the native tier: a fused body's scalar expression in a loop nest over its output.

Takes a node with static shapes and returns a C function ``int NAME(char **p, int64_t lo,
int64_t hi)`` computing rows [lo, hi) of the output (elements, when the loop nest is flat) from
the pointers ``p`` (inputs, then the output, all C-contiguous). For a fused node or a plain
elementwise op every op contributes its ``expr`` template (OpDef.expr) and broadcasting is baked
in as constant strides; a fused matmul of few rows gets its product here too (``small_gemm``);
other ops bring their own ``c_kernel``. backends/native.py compiles and calls the functions; a
CUDA backend can reuse ``expression`` with its own indexing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir.types import broadcast_shapes
from ..ops.ckernel import C_TYPES, CFunction
from ..ops.registry import ELEMENTWISE, MATMUL, REGISTRY

# What the op templates need beyond C's <tgmath.h>: NumPy's maximum/minimum propagate NaN (C's
# fmax does not); sign keeps NaN and zeros.
PRELUDE = r"""#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>
#define max(a, b) __extension__({ __typeof__((a) + (b)) a_ = (a), b_ = (b); (a_ != a_ || a_ > b_) ? a_ : b_; })
#define min(a, b) __extension__({ __typeof__((a) + (b)) a_ = (a), b_ = (b); (a_ != a_ || a_ < b_) ? a_ : b_; })
#define sign(a) __extension__({ __typeof__(a) s_ = (a); (__typeof__(a))(s_ > 0 ? 1 : s_ < 0 ? -1 : s_); })
/* a * b + c for the products of matmul and convolution kernels: one rounding where the CPU has
   FMA, as BLAS does (elementwise bodies never use it: they round as NumPy does) */
#ifdef __FMA__
#define MADD(a, b, c) fma(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif
/* The CBLAS GEMMs of the BLAS NumPy loaded (backends/blas.py), set by graphc_set_gemm when the
   library is loaded: C = alpha * op(A) @ op(B) + beta * C, integers passed as 64-bit. */
typedef void (*graphc_sgemm_t)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, const float *,
                               int64_t, const float *, int64_t, float, float *, int64_t);
typedef void (*graphc_dgemm_t)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, const double *,
                               int64_t, const double *, int64_t, double, double *, int64_t);
static graphc_sgemm_t graphc_sgemm;
static graphc_dgemm_t graphc_dgemm;
void graphc_set_gemm(void *s, void *d) {
    graphc_sgemm = (graphc_sgemm_t)s;
    graphc_dgemm = (graphc_dgemm_t)d;
}
/* whether the byte ranges [a, a + na) and [b, b + nb) share a byte */
static inline int graphc_overlap(const void *a, int64_t na, const void *b, int64_t nb) {
    return (const char *)a < (const char *)b + nb && (const char *)b < (const char *)a + na;
}
"""

# Math functions used by op templates that glibc's libmvec has vector versions of (single and
# double precision, AVX2/AVX-512 and SSE variants): declared SIMD so that loops calling them
# vectorize. Only used where the link with libmvec succeeds (see native.py).
VECTOR_MATH = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "erf", "pow")


def vector_math_declarations() -> str:
    decls = []
    for fn in VECTOR_MATH:
        args = 2 if fn == "pow" else 1
        for ctype, suffix in (("float", "f"), ("double", "")):
            params = ", ".join([ctype] * args)
            decls.append(f'__attribute__((simd("notinbranch"))) {ctype} {fn}{suffix}({params});')
    return "\n".join(decls) + "\n"


def supports(node) -> str | None:
    """None when ``node`` may run as C, else why not (for explain): the checks that need no C.
    ``function`` may still find these types or attributes have none (a large convolution)."""
    if not all(t.type.is_static for t in node.inputs) or not all(t.is_static for t in node.types):
        return "a dim known only at run time"
    if REGISTRY[node.op].kind == MATMUL:  # (a fused matmul's epilogue runs as C after any GEMM)
        if node.inputs[0].ndim != 2 or node.inputs[1].ndim != 2:
            return "a batched matmul"
        return None if node.types[0].dtype in (np.float32, np.float64) else f"a {node.types[0].dtype} matmul"
    if node.op not in ("fused_elementwise", "fused_matmul") and not _elementwise(node):
        return "no C kernel" if REGISTRY[node.op].c_kernel is None else None
    for t in node.inputs[2:] if node.op == "fused_matmul" else node.inputs:
        if t.type.dtype not in C_TYPES:
            return f"input dtype {t.type.dtype}"
    for op, _args, _attrs, dtype in body_of(node):
        if REGISTRY[op].expr is None:
            return f"{op} has no C expression"
        if np.dtype(dtype) not in C_TYPES:
            return f"{op} computes {np.dtype(dtype)}"
    return None


@dataclass(frozen=True)
class Loop:
    """The loop nest of a fused kernel: output dims after merging, and each operand's strides in
    elements (0 along a broadcast dim). ``rows`` is the extent that [lo, hi) ranges over."""

    dims: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]  # per input, then the output

    @property
    def rows(self) -> int:
        return self.dims[0] if self.dims else 1

    @property
    def row_size(self) -> int:
        return math.prod(self.dims[1:])


def strides(shape, out_shape) -> list[int]:
    """A C-contiguous operand's stride in elements along each output dim (0 where it broadcasts)."""
    rank = len(out_shape)
    aligned = (1,) * (rank - len(shape)) + tuple(shape)
    contiguous = [math.prod(aligned[k + 1 :]) for k in range(rank)]
    return [contiguous[k] if aligned[k] == out_shape[k] != 1 else 0 for k in range(rank)]


def loop_nest(in_shapes, out_shape) -> Loop:
    """Merge the output's dims where every operand is contiguous across them (a bias added to a
    (N, C) array stays 2-D; two arrays of one shape become one flat loop); drop dims of size 1."""
    operands = [strides(shape, out_shape) for shape in (*in_shapes, out_shape)]
    dims = [d for d in out_shape if d != 1]
    steps = [[s for s, d in zip(st, out_shape) if d != 1] for st in operands]
    k = len(dims) - 1
    while k > 0:  # merge dim k-1 into k when every operand steps over dim k contiguously
        if all(st[k - 1] == st[k] * dims[k] for st in steps):
            dims[k - 1 : k + 1] = [dims[k - 1] * dims[k]]
            for st in steps:
                st[k - 1 : k + 1] = [st[k]]
        k -= 1
    return Loop(tuple(dims), tuple(tuple(st) for st in steps))


def expression(body, args: list[str], out_ctype: str) -> list[str]:
    """C statements computing a body from scalar ``args``; the last assigns ``result``."""
    vals = list(args)
    lines = []
    for i, (op, inputs, attrs, dtype) in enumerate(body):
        attrs = dict(attrs)
        if "dtype" in attrs:
            attrs["dtype"] = C_TYPES[np.dtype(attrs["dtype"])]
        expr = REGISTRY[op].expr.format(*(vals[a] for a in inputs), **attrs)
        ctype = C_TYPES[np.dtype(dtype)]
        lines.append(f"const {ctype} t{i} = ({ctype})({expr});")
        vals.append(f"t{i}")
    lines.append(f"const {out_ctype} result = ({out_ctype}){vals[-1]};")
    return lines


def kernel_source(name: str, body, in_dtypes, out_dtype, loop: Loop) -> str:
    """``int name(char **p, int64_t lo, int64_t hi)``: rows [lo, hi) of the output (no restrict:
    the output may be one of the inputs, element for element, which a SIMD loop keeps correct)."""
    n_in = len(in_dtypes)
    out_ctype = C_TYPES[np.dtype(out_dtype)]
    lines = [f"int {name}(char **p, int64_t lo, int64_t hi) {{"]
    for j, d in enumerate(in_dtypes):
        lines.append(f"    const {C_TYPES[np.dtype(d)]} *x{j} = (const {C_TYPES[np.dtype(d)]} *)p[{j}];")
    lines.append(f"    {out_ctype} *y = ({out_ctype} *)p[{n_in}];")
    rank = len(loop.dims)
    for k in range(rank):
        lo, hi = ("lo", "hi") if k == 0 else ("0", str(loop.dims[k]))
        if k == rank - 1:
            lines.append("    " * (k + 1) + "#pragma omp simd")
        lines.append("    " * (k + 1) + f"for (int64_t i{k} = {lo}; i{k} < {hi}; i{k}++) {{")
    if rank == 0:  # one element
        lines.append("    if (lo < hi) {")
    pad = "    " * (max(rank, 1) + 1)

    def offset(steps):
        terms = [f"i{k} * {s}" if s != 1 else f"i{k}" for k, s in enumerate(steps) if s]
        return " + ".join(terms) or "0"

    args = []
    for j in range(n_in):
        lines.append(f"{pad}const {C_TYPES[np.dtype(in_dtypes[j])]} a{j} = x{j}[{offset(loop.strides[j])}];")
        args.append(f"a{j}")
    lines += [pad + s for s in expression(body, args, out_ctype)]
    lines.append(f"{pad}y[{offset(loop.strides[-1])}] = result;")
    for k in reversed(range(max(rank, 1))):
        lines.append("    " * (k + 1) + "}")
    lines.append("    return 0;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _elementwise(node) -> bool:
    opdef = REGISTRY[node.op]
    return opdef.kind == ELEMENTWISE and opdef.expr is not None and len(node.outputs) == 1


def body_of(node) -> tuple:
    """A fused node's body; a plain elementwise op as a body of one instruction."""
    if "body" in node.attrs:
        return node.attrs["body"]
    attrs = tuple(sorted(node.attrs.items()))
    return ((node.op, tuple(range(len(node.inputs))), attrs, node.types[0].dtype.str),)


def is_gemm(node) -> bool:
    """A matmul, or a fused matmul: a GEMM (then an epilogue)."""
    return node.op == "fused_matmul" or REGISTRY[node.op].kind == MATMUL


def function(node, name: str, blas: bool = False) -> tuple[list, CFunction | str, bool]:
    """The node's C function (or why these types or attributes have none), the types of the
    inputs it reads, and whether NumPy's GEMM runs first. A product calls the BLAS GEMM from C
    (``blas``: backends/blas.py found one; see ``blas_gemm``), or is computed in C when it has
    few rows (``small_gemm``); else NumPy's GEMM runs first, into the output buffer, and a fused
    matmul's epilogue then reads the product there in place of the two operands. Call it on
    nodes ``supports``."""
    out_type = node.types[0]
    in_types = [t.type for t in node.inputs]
    if is_gemm(node):
        made = small_gemm(node, name) or (blas_gemm(node, name) if blas else None)
        if made is not None:
            return in_types, made, False
        if node.op != "fused_matmul":
            return in_types, "a matmul with no BLAS to call from C (NumPy calls it)", False
        in_types = [out_type, *in_types[2:]]
    elif node.op != "fused_elementwise" and not _elementwise(node):
        return in_types, REGISTRY[node.op].c_kernel(name, in_types, out_type, **node.attrs), False
    body = body_of(node)
    if node.attrs.get("reduce") is not None:
        made = _reduction(node, name)
        return in_types, f"a fused reduction: {made}" if isinstance(made, str) else made, False
    loop = loop_nest([t.shape for t in in_types], out_type.shape)
    source = kernel_source(name, body, [t.dtype for t in in_types], out_type.dtype, loop)
    work = max(loop.row_size, 1) * len(body)
    return in_types, CFunction(source, loop.rows, loop.row_size, work=work), node.op == "fused_matmul"


def _reduction(node, name: str) -> CFunction | str:
    """A fused body with a trailing reduction: the body into a scratch array of the full shape,
    then the reduction op's own C kernel over it (ops/rows_c.py). Or why not."""
    from ..ir import TensorType
    from ..ops.rows_c import reduction

    ufunc, axes, keepdims = node.attrs["reduce"]
    if ufunc not in ("add", "maximum", "minimum"):
        return f"a {ufunc} reduction"
    body = node.attrs["body"]
    full = TensorType(broadcast_shapes(*(t.type.shape for t in node.inputs)), np.dtype(body[-1][3]))
    out = node.types[0]
    reduced = reduction(ufunc)(f"{name}_reduce", [full], out, axes=axes, keepdims=keepdims)
    if isinstance(reduced, str):
        return reduced
    in_types = [t.type for t in node.inputs]
    loop = loop_nest([t.shape for t in in_types], full.shape)
    elementwise = kernel_source(f"{name}_body", body, [t.dtype for t in in_types], full.dtype, loop)
    n_in, ct, size = len(in_types), C_TYPES[full.dtype], math.prod(full.shape)
    source = f"""{elementwise}{reduced.source}
int {name}(char **p, int64_t lo, int64_t hi) {{
    if (lo >= hi) return 0;
    {ct} *scratch = ({ct} *)malloc({max(size, 1)} * sizeof({ct}));
    if (!scratch) return 1;
    char *body[{n_in + 1}], *reduce[2] = {{(char *)scratch, p[{n_in}]}};
    for (int i = 0; i < {n_in}; i++) body[i] = p[i];
    body[{n_in}] = (char *)scratch;
    {name}_body(body, 0, {loop.rows});
    {name}_reduce(reduce, 0, {reduced.rows});
    free(scratch);
    return 0;
}}
"""
    return CFunction(source, 1, math.prod(out.shape), work=size * (len(body) + 1))


# A product with at most this many rows (batch-1 inference) is computed in C with its epilogue,
# reading the right operand once for all rows: as fast as BLAS there, and no call into NumPy.
SMALL_GEMM_ROWS = 8
SMALL_GEMM_COLUMNS = 4096  # (the accumulators live on the stack)


def small_gemm(node, name: str) -> CFunction | None:
    """A 2-D fused matmul of few rows as one C function: A @ B (either transposed), 4 rows of B
    per step, then the epilogue on each row of accumulators. None when the product is larger."""
    a, b = node.inputs[0].type, node.inputs[1].type
    out = node.types[0]
    if a.ndim != 2 or b.ndim != 2 or a.dtype != out.dtype or b.dtype != out.dtype:
        return None
    m, n = out.shape
    if m > SMALL_GEMM_ROWS or n > SMALL_GEMM_COLUMNS or out.dtype not in (np.float32, np.float64):
        return None
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    k = a.shape[0] if ta else a.shape[1]
    ct = C_TYPES[out.dtype]
    rest = [t.type for t in node.inputs[2:]]

    def A(i, kk):  # element (i, kk) of the left operand
        return f"A[({kk}) * {m} + {i}]" if ta else f"A[{i} * {k} + ({kk})]"

    if tb:  # B is (n, k): a dot product per output
        product = f"""for (int64_t i = 0; i < {m}; i++)
    for (int64_t j = 0; j < {n}; j++) {{
        {ct} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t kk = 0; kk < {k}; kk++) s += {A("i", "kk")} * B[j * {k} + kk];
        acc[i][j] = s;
    }}"""
    else:  # B is (k, n): rows of B scaled into the accumulators, four at a time
        product = f"""for (int64_t i = 0; i < {m}; i++) for (int64_t j = 0; j < {n}; j++) acc[i][j] = 0;
    int64_t kk = 0;
    for (; kk + 4 <= {k}; kk += 4) {{
        const {ct} *b0 = B + kk * {n}, *b1 = b0 + {n}, *b2 = b1 + {n}, *b3 = b2 + {n};
        for (int64_t i = 0; i < {m}; i++) {{
            const {ct} a0 = {A("i", "kk")}, a1 = {A("i", "kk + 1")}, a2 = {A("i", "kk + 2")}, a3 = {A("i", "kk + 3")};
            #pragma omp simd
            for (int64_t j = 0; j < {n}; j++)
                acc[i][j] = MADD(a3, b3[j], MADD(a2, b2[j], MADD(a1, b1[j], MADD(a0, b0[j], acc[i][j]))));
        }}
    }}
    for (; kk < {k}; kk++)
        for (int64_t i = 0; i < {m}; i++) {{
            const {ct} a0 = {A("i", "kk")};
            #pragma omp simd
            for (int64_t j = 0; j < {n}; j++) acc[i][j] = MADD(a0, B[kk * {n} + j], acc[i][j]);
        }}"""
    pointers = "".join(f"\n    const {C_TYPES[t.dtype]} *x{j + 1} = (const {C_TYPES[t.dtype]} *)p[{j + 2}];"
                       for j, t in enumerate(rest))  # fmt: skip
    loads = "".join(
        f"\n            const {C_TYPES[t.dtype]} a{j + 1} = x{j + 1}[{_index(strides(t.shape, out.shape))}];"
        for j, t in enumerate(rest)
    )
    args = [f"a{j}" for j in range(len(rest) + 1)]
    body = "".join(f"\n            {line}" for line in expression(node.attrs.get("body", ()), args, ct))
    source = f"""int {name}(char **p, int64_t lo, int64_t hi) {{
    if (lo >= hi) return 0;
    const {ct} *A = (const {ct} *)p[0], *B = (const {ct} *)p[1];{pointers}
    {ct} *y = ({ct} *)p[{len(rest) + 2}];
    {ct} acc[{m}][{n}];
    {product}
    for (int64_t i = 0; i < {m}; i++) {{  /* the epilogue, reading the product from the accumulators */
        #pragma omp simd
        for (int64_t j = 0; j < {n}; j++) {{
            const {ct} a0 = acc[i][j];{loads}{body}
            y[i * {n} + j] = result;
        }}
    }}
    return 0;
}}
"""
    return CFunction(source, 1, m * n, work=m * n * k, how="product in C (few rows)")


def _index(st) -> str:
    """The offset of element (i, j) of an operand with these strides."""
    return " + ".join(f"{v} * {s}" for v, s in zip(("i", "j"), st) if s) or "0"


def blas_gemm(node, name: str) -> CFunction | None:
    """A 2-D product (plain or fused) as one C function calling the BLAS GEMM (csource's
    ``graphc_sgemm``/``graphc_dgemm``), or None for other types. Two forms:

    - accumulate: an epilogue ``alpha * product + beta * x``, where alpha and beta are computed
      from inputs of one element and x is an input of the output's type (``w - lr * g``, an SGD
      update; a plain matmul is alpha 1, no x), is BLAS's own: x is copied to the output (unless
      it is the output: an in-place update) and the GEMM accumulates into it;
    - epilogue: the GEMM writes the output (or scratch memory, when an epilogue input shares the
      output's memory), then the epilogue runs over it as a fused body's C loop.

    It declines (NumPy's kernel then runs the call) when no GEMM was set, when the output shares
    memory with an operand of the GEMM, and when alpha or beta is 0 at run time (BLAS would skip
    a product or input that NumPy multiplies by 0, NaN included)."""
    a, b = node.inputs[0].type, node.inputs[1].type
    out = node.types[0]
    if a.ndim != 2 or b.ndim != 2 or not a.dtype == b.dtype == out.dtype or out.dtype not in (np.float32, np.float64):
        return None
    m, n = out.shape
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    k = a.shape[0] if ta else a.shape[1]
    if not m * n * k:
        return None
    ct, size = C_TYPES[out.dtype], m * n * out.dtype.itemsize
    gemm = "graphc_sgemm" if out.dtype == np.float32 else "graphc_dgemm"
    rest = [t.type for t in node.inputs[2:]]
    nbytes = [math.prod(t.shape) * t.dtype.itemsize for t in (a, b, *rest)]
    y = f"p[{len(rest) + 2}]"

    def call(alpha: str, beta: str, c: str) -> str:
        flags = f"{112 if ta else 111}, {112 if tb else 111}"
        return (f"{gemm}(101, {flags}, {m}, {n}, {k}, {alpha}, (const {ct} *)p[0], {m if ta else k}, "
                f"(const {ct} *)p[1], {k if tb else n}, {beta}, ({ct} *){c}, {n});")  # fmt: skip

    checks = " || ".join([f"!{gemm}"] + [f"graphc_overlap(p[{i}], {nbytes[i]}, {y}, {size})" for i in (0, 1)])
    head = f"int {name}(char **p, int64_t lo, int64_t hi) {{\n    if (lo >= hi) return 0;\n    if ({checks}) return 1;"
    affine = _affine(node.attrs.get("body", ()), rest, out)
    if affine is not None:
        alpha, beta, x = affine
        copy = ""
        if x is not None:
            copy = f"""
    if (p[{x + 2}] != {y}) {{
        if (graphc_overlap(p[{x + 2}], {size}, {y}, {size})) return 1;
        memcpy({y}, p[{x + 2}], {size});
    }}"""
        source = f"""{head}
    const {ct} alpha = {alpha}, beta = {beta};  /* read before the output is written */
    if (alpha == 0 || beta == 0) return 1;{copy}
    {call("alpha", "beta" if x is not None else "0", y)}
    return 0;
}}
"""
        if x is not None:
            how = "BLAS GEMM accumulating into the output"
        else:
            how = "BLAS GEMM, scaled" if node.attrs.get("body") else "BLAS GEMM"
        return CFunction(source, 1, m * n, work=m * n, how=how)  # (the GEMM is BLAS's work, in C or not)
    body = node.attrs["body"]
    loop = loop_nest([out.shape, *(t.shape for t in rest)], out.shape)
    epilogue = kernel_source(f"{name}_epilogue", body, [out.dtype, *(t.dtype for t in rest)], out.dtype, loop)
    shared = " || ".join(f"graphc_overlap(p[{j + 2}], {nbytes[j + 2]}, {y}, {size})" for j in range(len(rest)))
    operands = ", ".join(["(char *)g", *(f"p[{j + 2}]" for j in range(len(rest))), y])
    source = f"""{epilogue}
{head}
    {ct} *g = ({ct} *){y};
    if ({shared or "0"}) {{  /* the GEMM would overwrite an input of the epilogue: scratch */
        g = ({ct} *)malloc({size});
        if (!g) return 1;
    }}
    {call("1", "0", "g")}
    char *q[] = {{{operands}}};
    {name}_epilogue(q, 0, {loop.rows});
    if (g != ({ct} *){y}) free(g);
    return 0;
}}
"""
    return CFunction(source, 1, m * n, work=m * n * len(body), how="BLAS GEMM, then the epilogue")


def _affine(body, rest, out):
    """(alpha, beta, j) when ``body`` computes alpha * product + beta * input j (j None: no such
    term), alpha and beta as C expressions over inputs of one element; else None.

    Each value is a C expression (of one-element inputs only) or a linear form {term: coefficient}
    with terms "G" (the product, body input 0) and the indices of inputs of the output's type."""
    ct = C_TYPES[out.dtype]
    vals: list = [{"G": "1"}]
    for j, t in enumerate(rest):
        if t.dtype != out.dtype:
            vals.append(None)
        elif math.prod(t.shape) == 1:
            vals.append(f"(({ct} *)p[{j + 2}])[0]")
        else:
            vals.append({j: "1"} if t.shape == out.shape else None)
    for op, args, attrs, dtype in body:
        xs = [vals[i] for i in args]
        ok = not attrs and np.dtype(dtype) == out.dtype and None not in xs
        vals.append(_linear(op, xs) if ok else None)
    form = vals[-1]
    if not isinstance(form, dict) or "G" not in form or len(form) > 2:
        return None
    x = next((term for term in form if term != "G"), None)
    return form["G"], "1" if x is None else form[x], x


def _linear(op, xs):
    """The value of ``op`` on scalars and linear forms, when it is one of them (else None)."""
    forms = [isinstance(x, dict) for x in xs]

    def scaled(form: dict, c: str) -> dict:
        return {t: f"({v} * {c})" for t, v in form.items()}

    if op == "negative":
        return scaled(xs[0], "-1") if forms[0] else f"(-{xs[0]})"
    if len(xs) != 2:
        return None
    x, y = xs
    if op in ("add", "subtract"):
        sign = "+" if op == "add" else "-"
        if not any(forms):
            return f"({x} {sign} {y})"
        if not all(forms):
            return None
        merged = dict(x)
        for t, v in y.items():
            merged[t] = f"({merged[t]} {sign} {v})" if t in merged else (v if op == "add" else f"(-{v})")
        return merged
    if op == "multiply":
        if all(forms):
            return None
        return scaled(x, y) if forms[0] else scaled(y, x) if forms[1] else f"({x} * {y})"
    if op == "divide" and not forms[1]:
        return {t: f"({v} / {y})" for t, v in x.items()} if forms[0] else f"({x} / {y})"
    return None
