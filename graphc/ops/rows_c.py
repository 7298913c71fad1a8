"""C kernels of the ops that work row by row: reductions over adjacent axes (or around one kept
block: a bias gradient over N, H and W), softmax,
log_softmax and softmax cross-entropy over the last axis (for the native CPU tier).

A reduction sees its input as (A, R, B), reducing R: B = 1 sums along memory (in double for
float32, more accurate than NumPy's pairwise float32 sum), B > 1 adds rows into the output in
NumPy's order (bit for bit its result). Softmax rows use the row maximum as NumPy's kernels do.
"""

from __future__ import annotations

import math

from .ckernel import INDEX_TYPES, CFunction, float_ctype


def _runs(shape, axes) -> list:
    """[reduced?, size] of each run of adjacent dims reduced or kept alike (size-1 dims dropped)."""
    runs: list = []
    for i, d in enumerate(shape):
        if d == 1:
            continue
        if runs and runs[-1][0] == (i in axes):
            runs[-1][1] *= d
        else:
            runs.append([i in axes, d])
    return runs


def _split(shape, axes):
    """(A, R, B) for reducing ``axes`` of ``shape``, or None when the reduced dims are not adjacent
    (dims of size 1 do not count)."""
    runs = _runs(shape, axes)
    flags = [r for r, _ in runs]
    if flags.count(True) > 1:
        return None
    if True not in flags:
        return math.prod(shape), 1, 1
    k = flags.index(True)
    return math.prod(d for _, d in runs[:k]), runs[k][1], math.prod(d for _, d in runs[k + 1 :])


def reduction(ufunc: str):
    """sum (ufunc add), max or min over adjacent axes."""

    def c_kernel(name, in_types, out_type, axes, keepdims):
        (x,) = in_types
        ct = float_ctype(x, out_type)
        if ct is None:
            return f"dtype {x.dtype}"
        split = _split(x.shape, axes)
        if split is None:
            return _around(name, ct, x.shape, axes, ufunc)
        a, r, b = split
        if r == 0 and ufunc != "add":
            return "an empty reduction (NumPy raises)"
        op = {"add": "acc + v", "maximum": "max(acc, v)", "minimum": "min(acc, v)"}[ufunc]
        acc_type = "double" if ufunc == "add" and ct == "float" else ct
        if r == 0:
            body = f"for (int64_t j = 0; j < {b}; j++) dst[j] = 0;"
        elif b == 1 and ufunc == "add":
            body = f"""{acc_type} acc = 0;
        #pragma omp simd reduction(+:acc)
        for (int64_t i = 0; i < {r}; i++) acc += src[i];
        dst[0] = ({ct})acc;"""
        elif b == 1:
            body = f"""{ct} acc = src[0];
        for (int64_t i = 1; i < {r}; i++) {{ const {ct} v = src[i]; acc = {op}; }}
        dst[0] = acc;"""
        else:
            vertical = op.replace("acc", "dst[j]")
            body = f"""for (int64_t j = 0; j < {b}; j++) dst[j] = src[j];
        for (int64_t i = 1; i < {r}; i++) {{
            #pragma omp simd
            for (int64_t j = 0; j < {b}; j++) {{ const {ct} v = src[i * {b} + j]; dst[j] = {vertical}; }}
        }}"""
        source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0];
    {ct} *y = ({ct} *)p[1];
    for (int64_t a = lo; a < hi; a++) {{
        const {ct} *src = x + a * {r * b};
        {ct} *dst = y + a * {b};
        {body}
    }}
    return 0;
}}
"""
        return CFunction(source, a, b, work=r * b)

    return c_kernel


def _around(name, ct, shape, axes, ufunc):
    """A reduction of the dims on both sides of a kept block, (R1, K, R2) -> (K,): a bias gradient
    over (N, C, H, W). Each output element is a row of the loop."""
    runs = _runs(shape, axes)
    if [r for r, _ in runs] != [True, False, True]:
        return "reduced axes that are neither adjacent nor around one kept block"
    (_, r1), (_, k), (_, r2) = runs
    if ufunc == "add":
        acc_type = "double" if ct == "float" else ct
        start = "0"
        inner = f"""#pragma omp simd reduction(+:acc)
            for (int64_t i2 = 0; i2 < {r2}; i2++) acc += src[i2];"""
    else:
        acc_type, start = ct, f"x[j * {r2}]"
        fn = {"maximum": "max", "minimum": "min"}[ufunc]
        inner = f"for (int64_t i2 = 0; i2 < {r2}; i2++) {{ const {ct} v = src[i2]; acc = {fn}(acc, v); }}"
    source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0];
    {ct} *y = ({ct} *)p[1];
    for (int64_t j = lo; j < hi; j++) {{
        {acc_type} acc = {start};
        for (int64_t i1 = 0; i1 < {r1}; i1++) {{
            const {ct} *src = x + (i1 * {k} + j) * {r2};
            {inner}
        }}
        y[j] = ({ct})acc;
    }}
    return 0;
}}
"""
    return CFunction(source, k, 1, work=r1 * r2)


def _last_axis(x, axis) -> str | None:
    if x.ndim == 0 or axis != x.ndim - 1:
        return "an axis other than the last"
    return None


def _row_max(ct: str, k: int) -> str:
    return f"{ct} m = a[0];\n        for (int64_t j = 1; j < {k}; j++) m = max(m, a[j]);"


def softmax(name, in_types, out_type, axis, log: bool = False):
    """softmax or log_softmax over the last axis."""
    (x,) = in_types
    ct = float_ctype(x, out_type)
    if ct is None:
        return f"dtype {x.dtype}"
    why = _last_axis(x, axis)
    if why:
        return why
    k = x.shape[-1]
    if k == 0:
        return "an empty axis (NumPy raises)"
    rows = math.prod(x.shape[:-1])
    if log:  # s = x - m; s - log(sum(exp(s)))
        finish = f"""{ct} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < {k}; j++) s += exp(a[j] - m);
        const {ct} l = log(s);
        #pragma omp simd
        for (int64_t j = 0; j < {k}; j++) o[j] = (a[j] - m) - l;"""
    else:  # e = exp(x - m); e / sum(e)
        finish = f"""{ct} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < {k}; j++) {{ const {ct} e = exp(a[j] - m); o[j] = e; s += e; }}
        #pragma omp simd
        for (int64_t j = 0; j < {k}; j++) o[j] = o[j] / s;"""
    source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0];
    {ct} *y = ({ct} *)p[1];
    for (int64_t r = lo; r < hi; r++) {{
        const {ct} *a = x + r * {k};
        {ct} *o = y + r * {k};
        {_row_max(ct, k)}
        {finish}
    }}
    return 0;
}}
"""
    return CFunction(source, rows, k, work=4 * k)


def log_softmax(name, in_types, out_type, axis):
    return softmax(name, in_types, out_type, axis, log=True)


def cross_entropy(grad: bool):
    """softmax_cross_entropy (per row: log(sum(exp(x - m))) - (x[label] - m)) or its gradient
    (softmax(x) - one_hot(label)). Declines a label outside [0, classes) before writing."""

    def c_kernel(name, in_types, out_type):
        logits, labels = in_types
        ct = float_ctype(logits, out_type)
        if ct is None:
            return f"dtype {logits.dtype}"
        it = INDEX_TYPES.get(labels.dtype)
        if it is None:
            return f"label dtype {labels.dtype}"
        k = logits.shape[-1]
        if k == 0:
            return "no classes (NumPy raises)"
        rows = math.prod(logits.shape[:-1])
        if grad:
            finish = f"""{ct} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < {k}; j++) {{ const {ct} e = exp(a[j] - m); o[j] = e; s += e; }}
        #pragma omp simd
        for (int64_t j = 0; j < {k}; j++) o[j] = o[j] / s;
        o[t[r]] -= 1;"""
            out = f"{ct} *o = y + r * {k};"
        else:
            finish = f"""{ct} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < {k}; j++) s += exp(a[j] - m);
        y[r] = log(s) - (a[t[r]] - m);"""
            out = ""
        source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0];
    const {it} *t = (const {it} *)p[1];
    {ct} *y = ({ct} *)p[2];
    for (int64_t r = lo; r < hi; r++)
        if (t[r] < 0 || t[r] >= {k}) return 1;
    for (int64_t r = lo; r < hi; r++) {{
        const {ct} *a = x + r * {k};
        {out}
        {_row_max(ct, k)}
        {finish}
    }}
    return 0;
}}
"""
        return CFunction(source, rows, k if grad else 1, work=4 * k)

    return c_kernel
