"""C kernels of the convolution and pooling ops (ops/conv.py), for the native CPU tier.

Each takes the static types and attributes of one node and returns the C text of a function over
rows of the output (ops/ckernel.py): images for conv2d, (image, channel) planes for pooling.
Geometry is baked in as constants, and so are the bounds checks: a window that can leave the image
(padding) is checked tap by tap, one that cannot is not.
"""

from __future__ import annotations

from .ckernel import CFunction, float_ctype

TILE = 4  # output pixels per register tile of conv2d: each weight vector load feeds TILE FMAs
TAP_BLOCK = 4  # weight taps per register tile of conv2d_grad_weight: each g vector feeds 4 FMAs
# Direct convolution keeps a group's weights in L1/L2 and its accumulators in registers; bigger
# layers are faster as im2col + one BLAS GEMM (the NumPy kernel).
CONV_MAX_OUT_CHANNELS = 64
CONV_MAX_TAPS = 1024  # input channels per group x kernel height x kernel width


def _valid_range(k: int, stride: int, dilation: int, pad: int, size: int, out: int) -> tuple[int, int]:
    """The output positions [lo, hi) whose tap ``k`` lands inside the input (0 <= pos*s + k*d - pad < size)."""
    off = k * dilation - pad
    lo = max(0, -(off // stride)) if off < 0 else 0
    while lo < out and lo * stride + off < 0:
        lo += 1
    hi = out
    while hi > lo and (hi - 1) * stride + off >= size:
        hi -= 1
    return lo, hi


def conv2d(name, in_types, out_type, stride, padding, dilation, groups):
    """Direct convolution: for each output pixel, the output channels of its group as one vector
    (weights re-laid [group][c][ky][kx][o] once per call), TILE pixels at a time."""
    x, w = in_types
    ct = float_ctype(x, w, out_type)
    if ct is None:
        return f"dtype {x.dtype}"
    o, cg, kh, kw = w.shape
    groups = int(groups)
    # (ints only reach the C text: a loaded file's attributes are checked, this makes sure)
    pads = (int(padding[0][0]), int(padding[1][0]))
    source = f"w[(((g * {o // groups} + k) * {cg} + ch) * {kh} + ky) * {kw} + kx]"
    return _direct(name, ct, x.shape, out_type.shape, (kh, kw), groups, tuple(map(int, stride)), pads,
                   tuple(map(int, dilation)), source, 2)  # fmt: skip


def conv2d_grad_input(name, in_types, out_type, stride, padding, dilation, groups):
    """The gradient of conv2d by its input at stride 1: a direct convolution of g with the
    weights flipped and their channels swapped, padded so that every input pixel sees the output
    pixels whose windows held it."""
    g, w, _ref = in_types
    ct = float_ctype(g, w, out_type)
    if ct is None:
        return f"dtype {g.dtype}"
    if tuple(map(int, stride)) != (1, 1) or int(groups) != 1:
        return "a stride or groups (col2im + BLAS)"
    o, c, kh, kw = w.shape
    (dh, dw) = map(int, dilation)
    pads = ((kh - 1) * dh - int(padding[0][0]), (kw - 1) * dw - int(padding[1][0]))
    if min(pads) < 0:
        return "padding wider than the window"
    source = f"w[((ch * {c} + k) * {kh} + {kh - 1} - ky) * {kw} + {kw - 1} - kx]"
    return _direct(name, ct, g.shape, out_type.shape, (kh, kw), 1, (1, 1), pads, (dh, dw), source, 3)


def conv2d_grad_weight(name, in_types, out_type, stride, padding, dilation, groups):
    """The gradient of conv2d by its weights (groups 1): for each block of TAP_BLOCK taps, the
    output channels as vectors of accumulators, summed over every pixel of every image (g is
    first re-laid with the channels last, so that a pixel's channels are one vector)."""
    x, g, _ref = in_types
    ct = float_ctype(x, g, out_type)
    if ct is None:
        return f"dtype {x.dtype}"
    if int(groups) != 1:
        return "groups (im2col + BLAS)"
    n, c, h, wd = x.shape
    o, _, kh, kw = out_type.shape
    _, _, ho, wo = g.shape
    if o > CONV_MAX_OUT_CHANNELS:
        return "a large layer (im2col + BLAS is faster)"
    (sh, sw), (pt, pl), (dh, dw) = map(int, stride), (int(padding[0][0]), int(padding[1][0])), map(int, dilation)
    checked = any(_valid_range(ky, sh, dh, pt, h, ho) != (0, ho) for ky in range(kh)) or any(
        _valid_range(kx, sw, dw, pl, wd, wo) != (0, wo) for kx in range(kw)
    )
    taps, b = c * kh * kw, TAP_BLOCK

    def block(m: int) -> str:
        """Taps t0 .. t0 + m - 1 accumulated over all pixels, then stored."""
        setup = "".join(
            f"""
            const int64_t c{i} = (t0 + {i}) / {kh * kw}, dy{i} = ((t0 + {i}) / {kw}) % {kh} * {dh} - {pt},
                          dx{i} = (t0 + {i}) % {kw} * {dw} - {pl};"""
            for i in range(m)
        )
        loads = []
        for i in range(m):
            at = f"x[((nn * {c} + c{i}) * {h} + iy{i}) * {wd} + ix{i}]"
            valid = f"iy{i} >= 0 && iy{i} < {h} && ix{i} >= 0 && ix{i} < {wd}"
            loads.append(f"const int64_t iy{i} = oy * {sh} + dy{i}, ix{i} = ox * {sw} + dx{i};")
            loads.append(f"const {ct} v{i} = {f'{valid} ? {at} : 0' if checked else at};")
        fmas = "\n".join(f"                    acc[{i}][k] = MADD(gv[k], v{i}, acc[{i}][k]);" for i in range(m))
        stores = "\n".join(f"            dw[k * {taps} + t0 + {i}] = acc[{i}][k];" for i in range(m))
        return f"""{{{setup}
            {ct} acc[{m}][{o}];
            for (int64_t i = 0; i < {m * o}; i++) (&acc[0][0])[i] = 0;
            for (int64_t nn = 0; nn < {n}; nn++)
            for (int64_t oy = 0; oy < {ho}; oy++)
            for (int64_t ox = 0; ox < {wo}; ox++) {{
                const {ct} *gv = gt + ((nn * {ho} + oy) * {wo} + ox) * {o};
                {(chr(10) + "                ").join(loads)}
                #pragma omp simd
                for (int64_t k = 0; k < {o}; k++) {{
{fmas}
                }}
            }}
            for (int64_t k = 0; k < {o}; k++) {{
{stores}
            }}
        }}"""

    blocks = -(-taps // b)
    last = taps - (blocks - 1) * b
    source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0], *g = (const {ct} *)p[1];
    {ct} *dw = ({ct} *)p[3];
    {ct} *gt = ({ct} *)malloc({max(n * ho * wo * o, 1)} * sizeof({ct}));
    if (!gt) return 1;
    for (int64_t nn = 0; nn < {n}; nn++)
        for (int64_t k = 0; k < {o}; k++)
            for (int64_t q = 0; q < {ho * wo}; q++)
                gt[(nn * {ho * wo} + q) * {o} + k] = g[(nn * {o} + k) * {ho * wo} + q];
    for (int64_t tb = lo; tb < hi; tb++) {{
        const int64_t t0 = tb * {b};
        if (tb < {blocks - 1}) {block(b)}
        else {block(last)}
    }}
    free(gt);
    return 0;
}}
"""
    return CFunction(source, blocks, o * b, work=o * b * n * ho * wo)


def _direct(name, ct, x_shape, out_shape, kernel, groups, stride, pads, dilation, weight, out_arg):
    """The C of a direct convolution of p[0] (N, C, H, W) by weights p[1] into p[out_arg]
    (N, O, Ho, Wo). ``weight`` is the C expression of weight (g, k, ch, ky, kx): output channel k
    of group g, input channel ch of the group, tap (ky, kx); it is read once per call into the
    layout the loops want."""
    n, c, h, wd = x_shape
    _, o, ho, wo = out_shape
    kh, kw = kernel
    cg, og = c // groups, o // groups
    if og > CONV_MAX_OUT_CHANNELS or cg * kh * kw > CONV_MAX_TAPS:
        return "a large layer (im2col + BLAS is faster)"
    (sh, sw), (pt, pl), (dh, dw) = stride, pads, dilation
    rows_checked = any(_valid_range(ky, sh, dh, pt, h, ho) != (0, ho) for ky in range(kh))
    cols = [_valid_range(kx, sw, dw, pl, wd, wo) for kx in range(kw)]
    cols_checked = any(r != (0, wo) for r in cols)
    size = o * cg * kh * kw

    def tile(t: int) -> list[str]:
        """The loop body computing pixels ox .. ox + t - 1 of output row oy."""
        lines = [f"{ct} acc[{t}][{og}];", f"for (int64_t i = 0; i < {t * og}; i++) (&acc[0][0])[i] = 0;"]
        lines.append(f"for (int64_t ch = 0; ch < {cg}; ch++) {{")
        lines.append(f"  for (int64_t ky = 0; ky < {kh}; ky++) {{")
        lines.append(f"    const int64_t iy = oy * {sh} + ky * {dh} - {pt};")
        if rows_checked:
            lines.append(f"    if (iy < 0 || iy >= {h}) continue;")
        lines.append(f"    const {ct} *row = x + ((n * {c} + g * {cg} + ch) * {h} + iy) * {wd};")
        lines.append(f"    const {ct} *wk = wt + ((g * {cg} + ch) * {kh} + ky) * {kw * og};")
        lines.append(f"    for (int64_t kx = 0; kx < {kw}; kx++, wk += {og}) {{")
        for i in range(t):
            lines.append(f"      const int64_t ix{i} = (ox + {i}) * {sw} + kx * {dw} - {pl};")
            check = f"ix{i} >= 0 && ix{i} < {wd} ? row[ix{i}] : 0" if cols_checked else f"row[ix{i}]"
            lines.append(f"      const {ct} v{i} = {check};")
        lines.append("      #pragma omp simd")
        lines.append(f"      for (int64_t k = 0; k < {og}; k++) {{")
        lines.extend(f"        acc[{i}][k] = MADD(wk[k], v{i}, acc[{i}][k]);" for i in range(t))
        lines.append("      }")
        lines += ["    }", "  }", "}"]
        lines.append(f"for (int64_t k = 0; k < {og}; k++) {{")
        lines.append(f"  {ct} *dst = y + ((n * {o} + g * {og} + k) * {ho} + oy) * {wo} + ox;")
        lines.extend(f"  dst[{i}] = acc[{i}][k];" for i in range(t))
        lines.append("}")
        return lines

    body = "\n".join("            " + line for line in tile(TILE))
    tail = "\n".join("            " + line for line in tile(wo % TILE)) if wo % TILE else ""
    source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0], *w = (const {ct} *)p[1];
    {ct} *y = ({ct} *)p[{out_arg}];
    {ct} *wt = ({ct} *)malloc({max(size, 1)} * sizeof({ct}));
    if (!wt) return 1;
    for (int64_t g = 0; g < {groups}; g++)
    for (int64_t k = 0; k < {og}; k++)
    for (int64_t ch = 0; ch < {cg}; ch++)
    for (int64_t ky = 0; ky < {kh}; ky++)
    for (int64_t kx = 0; kx < {kw}; kx++)
        wt[(((g * {cg} + ch) * {kh} + ky) * {kw} + kx) * {og} + k] = {weight};
    for (int64_t n = lo; n < hi; n++)
    for (int64_t g = 0; g < {groups}; g++)
    for (int64_t oy = 0; oy < {ho}; oy++) {{
        int64_t ox = 0;
        for (; ox + {TILE} <= {wo}; ox += {TILE}) {{
{body}
        }}
        if (ox < {wo}) {{  /* the last {wo % TILE} pixels */
{tail}
        }}
    }}
    free(wt);
    return 0;
}}
"""
    return CFunction(source, n, o * ho * wo, work=o * ho * wo * cg * kh * kw)


def pool2d(kind: str):
    """max_pool2d or avg_pool2d over each (image, channel) plane; one output row at a time, each
    tap a vector pass over the row. Sums in NumPy's tap order, so results match it bit for bit."""

    def c_kernel(name, in_types, out_type, kernel, stride, padding):
        (x,) = in_types
        ct = float_ctype(x, out_type)
        if ct is None:
            return f"dtype {x.dtype}"
        n, c, h, wd = x.shape
        _, _, ho, wo = out_type.shape
        (kh, kw), (sh, sw), (ph, pw) = map(int, kernel), map(int, stride), map(int, padding)
        start = "-INFINITY" if kind == "max" else "0"
        step = "max(m[ox], v)" if kind == "max" else "m[ox] + v"
        taps = []
        for ky in range(kh):
            lo, hi = _valid_range(ky, sh, 1, ph, h, ho)
            taps.append(f"        if (oy >= {lo} && oy < {hi}) {{")
            taps.append(f"            const {ct} *row = in + (oy * {sh} + {ky - ph}) * {wd};")
            for kx in range(kw):
                clo, chi = _valid_range(kx, sw, 1, pw, wd, wo)
                taps.append("            #pragma omp simd")
                taps.append(f"            for (int64_t ox = {clo}; ox < {chi}; ox++) {{")
                taps.append(f"                const {ct} v = row[ox * {sw} + {kx - pw}];")
                taps.append(f"                m[ox] = {step};")
                taps.append("            }")
            taps.append("        }")
        finish = "m[ox]" if kind == "max" else f"m[ox] * ({ct})(1.0 / {kh * kw})"
        taps_text = "\n".join(taps)
        source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0];
    {ct} *y = ({ct} *)p[1];
    for (int64_t r = lo; r < hi; r++) {{
    const {ct} *in = x + r * {h * wd};
    for (int64_t oy = 0; oy < {ho}; oy++) {{
        {ct} m[{wo}];
        for (int64_t ox = 0; ox < {wo}; ox++) m[ox] = {start};
{taps_text}
        for (int64_t ox = 0; ox < {wo}; ox++) y[(r * {ho} + oy) * {wo} + ox] = {finish};
    }}
    }}
    return 0;
}}
"""
        return CFunction(source, n * c, ho * wo, work=ho * wo * kh * kw)

    return c_kernel


def max_pool2d_grad(name, in_types, out_type, kernel, stride, padding):
    """Each window's gradient routed to its first maximum (padding counts as -inf, a window
    holding NaN routes nowhere), as the NumPy kernel does; windows that overlap add up.

    Per output row, branch-free vector passes over the windows: the maximum tap by tap, then the
    taps in reverse, each keeping its position where it equals the maximum (so the first wins),
    then one scatter-add. Which tap holds a maximum is data: a version that branched on it ran
    2-3x slower than NumPy on random inputs."""
    x, g = in_types
    ct = float_ctype(x, g, out_type)
    if ct is None:
        return f"dtype {x.dtype}"
    n, c, h, wd = x.shape
    _, _, ho, wo = g.shape
    (kh, kw), (sh, sw), (ph, pw) = map(int, kernel), map(int, stride), map(int, padding)
    maxima, firsts = [], []
    for ky in range(kh):
        lo, hi = _valid_range(ky, sh, 1, ph, h, ho)
        for kx in range(kw):
            clo, chi = _valid_range(kx, sw, 1, pw, wd, wo)
            row = f"const {ct} *row = in + (oy * {sh} + {ky - ph}) * {wd};"
            tap = f"row[ox * {sw} + {kx - pw}]"
            at = f"(oy * {sh} + {ky - ph}) * {wd} + {kx - pw} + ox * {sw}"
            # a padded tap is -inf: the first maximum only of windows whose maximum is -inf
            padded = "to[ox] = best[ox] == -INFINITY ? -1 : to[ox];"
            maxima.append(f"""if (oy >= {lo} && oy < {hi}) {{
                {row}
                #pragma omp simd
                for (int64_t ox = {clo}; ox < {chi}; ox++) best[ox] = max(best[ox], {tap});
            }}""")
            edges = f"if (ox < {clo} || ox >= {chi}) {padded}" if (clo, chi) != (0, wo) else ""
            firsts.append(f"""if (oy >= {lo} && oy < {hi}) {{
                {row}
                #pragma omp simd
                for (int64_t ox = {clo}; ox < {chi}; ox++) to[ox] = {tap} == best[ox] ? {at} : to[ox];
                {f"for (int64_t ox = 0; ox < {wo}; ox++) {edges}" if edges else ""}
            }} else {{
                for (int64_t ox = 0; ox < {wo}; ox++) {padded}
            }}""")
    nl = "\n            "
    source = f"""
int {name}(char **p, int64_t lo, int64_t hi) {{
    const {ct} *x = (const {ct} *)p[0], *g = (const {ct} *)p[1];
    {ct} *dx = ({ct} *)p[2];
    for (int64_t r = lo; r < hi; r++) {{
        const {ct} *in = x + r * {h * wd}, *gr = g + r * {ho * wo};
        {ct} *d = dx + r * {h * wd};
        for (int64_t i = 0; i < {h * wd}; i++) d[i] = 0;
        for (int64_t oy = 0; oy < {ho}; oy++) {{
            {ct} best[{wo}];
            int64_t to[{wo}];
            for (int64_t ox = 0; ox < {wo}; ox++) best[ox] = -INFINITY, to[ox] = -1;  /* -1: nowhere */
            {nl.join(maxima)}
            {nl.join(reversed(firsts))}
            for (int64_t ox = 0; ox < {wo}; ox++)
                if (to[ox] >= 0) d[to[ox]] += gr[oy * {wo} + ox];
        }}
    }}
    return 0;
}}
"""
    return CFunction(source, n * c, h * wd, work=ho * wo * kh * kw * 2)


def conv2d_pool(name, in_types, out_type, stride, padding, dilation, groups, pool, pool_kernel, pool_stride,
                pool_padding):  # fmt: skip
    """conv2d then pooling, a few images at a time: the convolution into a scratch block small
    enough to stay in L2, then the pooling of that block into the output. The convolution's
    output never reaches memory (W4's first one is 1.4 MB, written and read back otherwise)."""
    from ..ir import TensorType

    x, w = in_types
    ct = float_ctype(x, w, out_type)
    if ct is None:
        return f"dtype {x.dtype}"
    n, c, h, wd = x.shape
    o = w.shape[0]
    conv_out = TensorType((n, o, *_conv_hw(x.shape, w.shape, stride, padding, dilation)), x.dtype)
    conv = conv2d(f"{name}_conv", [x, w], conv_out, stride, padding, dilation, groups)
    pooled = pool2d(pool)(f"{name}_pool", [conv_out], out_type, pool_kernel, pool_stride, pool_padding)
    if isinstance(conv, str) or isinstance(pooled, str):
        return conv if isinstance(conv, str) else pooled
    plane = o * conv_out.shape[2] * conv_out.shape[3]
    chunk = max(1, min(n, (128 << 10) // (plane * x.dtype.itemsize)))  # images per scratch block
    pooled_plane = o * out_type.shape[2] * out_type.shape[3]
    source = f"""{conv.source}{pooled.source}
int {name}(char **p, int64_t lo, int64_t hi) {{
    {ct} *scratch = ({ct} *)malloc({chunk * plane} * sizeof({ct}));
    if (!scratch) return 1;
    for (int64_t n0 = lo; n0 < hi; n0 += {chunk}) {{
        const int64_t m = hi - n0 < {chunk} ? hi - n0 : {chunk};
        char *conv[3] = {{(char *)((const {ct} *)p[0] + n0 * {c * h * wd}), p[1], (char *)scratch}};
        char *pooling[2] = {{(char *)scratch, (char *)(({ct} *)p[2] + n0 * {pooled_plane})}};
        if ({name}_conv(conv, 0, m) || {name}_pool(pooling, 0, m * {o})) {{
            free(scratch);
            return 1;
        }}
    }}
    free(scratch);
    return 0;
}}
"""
    return CFunction(source, n, pooled_plane, work=conv.work + pooled.work // max(n, 1))


def _conv_hw(x_shape, w_shape, stride, padding, dilation) -> tuple[int, int]:
    """The convolution's output height and width (static shapes)."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
    kh, kw = w_shape[2:]
    return ((x_shape[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1, (x_shape[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1)
