"""Explain: what the compiler did to a function and the plan it runs, as text or JSON.

Reports every pass (node counts, each rewrite with its rule and the user's source line, what was
folded, merged and fused, and why candidates were *not* fused or folded), then each specialized
plan: kernels, buffers, peak memory and the generated code. Deterministic: the same graph and
options give byte-identical text (timings only with ``timings=True``).
"""

from __future__ import annotations

from ..ir.types import fmt_shape
from ..ops.fused import body_text
from ..ops.registry import MATMUL, REGISTRY


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def _passes(reports, timings: bool) -> dict:
    return [
        {
            "pass": r.name, "nodes_before": r.nodes_before, "nodes_after": r.nodes_after,
            **({"ms": round(r.seconds * 1e3, 3)} if timings else {}),
            "events": [
                {"kind": e.kind, "rule": e.rule, "nodes": list(e.nodes), "source": e.source, "detail": e.detail}
                for e in r.events
            ],
        }
        for r in reports
    ]  # fmt: skip


def _plan(fn, signature, plan, reports, names, timings: bool) -> dict:
    kernels = []
    why_not_native = getattr(fn.backend, "why_not_native", None)  # (backends with a C tier)
    for s in plan.steps:
        n = s.node
        k = {"step": len(kernels), "op": n.op, "node": n.name, "type": str(n.types[0]),
             "source": str(n.source) if n.source else ""}  # fmt: skip
        if "body" in n.attrs:
            operands = [f"%{t.name}" for t in n.inputs]
            if n.op == "fused_matmul":  # body input 0 is the GEMM's result
                operands = [f"(%{n.inputs[0].name} @ %{n.inputs[1].name})", *operands[2:]]
            k["expression"] = body_text(n.attrs["body"], len(operands), operands)
        if why_not_native is not None and ("body" in n.attrs or REGISTRY[n.op].c_kernel is not None
                                           or REGISTRY[n.op].kind == MATMUL):  # fmt: skip
            why = None if getattr(s.kernel, "native", False) else (
                why_not_native(n, fn.native) or "a small plan (compiling it would cost more than it saves; native=True)"
            )
            k["runs"] = "NumPy" if why else "C"
            if not why and getattr(s.kernel, "how", ""):
                k["c_kernel"] = s.kernel.how  # (a product: BLAS's GEMM from C, accumulating ...)
            if why:
                k["why_not_c"] = why
        if s.out_buffer is not None:
            k["buffer"] = plan.arena_layout[s.out_buffer][0]
        if s.out_variable is not None:
            k["writes_variable"] = plan.variables[s.out_variable][1]
        if s.prepared:
            k["prepared"] = True
        kernels.append(k)
    return {
        "signature": {name: list(shape) for name, shape in zip(names, signature)},
        "passes": _passes(reports, timings),
        "kernels": kernels,
        "memory": {
            "buffers": list(plan.memory.buffers),
            "arena_bytes": int(sum(plan.memory.buffers)),
            "peak_bytes": plan.memory.peak_bytes,
            "in_place_steps": len(plan.memory.inplace),
        },
        "code": plan.source,
    }


def explain_dict(fn, timings: bool = False) -> dict:
    names = [name for name, _ in fn._placeholders]
    return {
        "graph": fn.graph.name,
        "opt_level": fn.opt_level,
        "inputs": {name: fmt_shape(t.shape) + " " + str(t.dtype) for name, t in fn._placeholders},
        "passes": _passes(fn.reports, timings),
        "plans": [_plan(fn, sig, plan, reps, names, timings) for sig, (plan, reps, _) in fn._plans.items()],
    }


def _text(d: dict) -> str:
    out = [f"function of graph '{d['graph']}' (opt_level {d['opt_level']})"]
    out.append("inputs: " + (", ".join(f"{k} {v}" for k, v in d["inputs"].items()) or "none"))

    def passes(ps, title):
        out.append(f"\n== {title} ==")
        for p in ps:
            ms = f"  {p['ms']:.2f} ms" if "ms" in p else ""
            out.append(f"{p['pass']:16s} {p['nodes_before']:5d} -> {p['nodes_after']:5d} nodes{ms}")
            for e in p["events"]:
                src = f"  [{e['source']}]" if e["source"] else ""
                detail = f": {e['detail']}" if e["detail"] else ""
                out.append(f"    {e['kind']:7s} {e['rule']}: {', '.join(e['nodes'])}{detail}{src}")

    passes(d["passes"], "compile-time passes")
    if not d["plans"]:
        out.append("\n(no plan yet: shapes are specialized on the first call)")
    for p in d["plans"]:
        sig = ", ".join(f"{k}={fmt_shape(tuple(v))}" for k, v in p["signature"].items())
        passes(p["passes"], f"plan for {sig or 'no inputs'}")
        out.append("\nkernels:")
        for k in p["kernels"]:
            where = f" -> buffer {k['buffer']}" if "buffer" in k else ""
            where += f" -> in place into variable '{k['writes_variable']}'" if "writes_variable" in k else ""
            where += " (by prepare: once per version of the variables)" if k.get("prepared") else ""
            detail = k.get("why_not_c") or k.get("c_kernel")
            runs = f"  [{k['runs']}{': ' + detail if detail else ''}]" if "runs" in k else ""
            out.append(f"  {k['step']:3d} {k['op']} '{k['node']}' {k['type']}{where}{runs}")
            if "expression" in k:
                out.append(f"        = {k['expression']}")
        m = p["memory"]
        out.append(f"\nmemory: {len(m['buffers'])} planned buffers, arena {_kb(m['arena_bytes'])}, "
                   f"peak {_kb(m['peak_bytes'])}, {m['in_place_steps']} steps write in place")  # fmt: skip
        out.append("\ngenerated code:")
        out.extend("  " + line for line in p["code"].rstrip().splitlines())
    return "\n".join(out) + "\n"


def explain(fn, format: str = "text", timings: bool = False):
    """The explanation of compiled function ``fn`` as text (default) or a JSON-ready dict."""
    d = explain_dict(fn, timings)
    return d if format == "json" else _text(d)
