"""The ``graphc`` command: compile, run, inspect, check, diff, explain, bench and draw saved models.

Exit status: 0 success, 1 a user error (a GraphcError, a missing or unreadable file), 2 bad usage
(argparse); ``graphc diff`` follows diff(1): 0 same, 1 different, 2 trouble. Errors are one line
on stderr: ``graphc: error: ...``. docs/cli.md documents every command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..errors import GraphcError
from ..ir.types import fmt_shape
from ..serialize.format import VERSION
from ..serialize.save import save
from .common import (
    CLIError,
    batch_size,
    check_output,
    fmt_bytes,
    fmt_seconds,
    limits_from,
    open_model,
    output_names,
    require_function,
    resolve_signature,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


# -- commands ----------------------------------------------------------------------------------
def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _describe_function(fn) -> str:
    inputs = ", ".join(f"{n} {t}" for n, t in fn._placeholders) or "none"
    return (f"function of graph '{fn.graph.name}': {len(fn.program.nodes)} nodes; inputs {inputs}; "
            f"{_count(len(fn.program.outputs), 'output')}; {_count(len(fn.program.updates), 'update')}")  # fmt: skip


def cmd_compile(args) -> int:
    from .source import compile_source, parse_build_args

    check_output(args.output)
    fn = compile_source(args.src, args.opt_level, parse_build_args(args.build_arg), args.key, args.fetch,
                        not args.no_updates)  # fmt: skip
    save(fn, args.output, created=args.timestamp)
    with open(args.output, encoding="utf-8") as f:
        sidecar = json.load(f).get("sidecar")
    side = f" + {sidecar['file']} ({fmt_bytes(sidecar['nbytes'])})" if sidecar else ""
    print(f"wrote {args.output}{side}: {_describe_function(fn)}; opt_level {fn.opt_level}")
    return EXIT_OK


def cmd_run(args) -> int:
    from .feeds import flat_outputs, format_outputs, read_feeds, write_outputs

    if args.output:
        check_output(args.output)
    fn = require_function(open_model(args.model, device=args.device), "run")
    feeds = read_feeds(fn, args.input)
    values = flat_outputs(fn, fn(feeds))  # a dict of feeds: placeholder names need not be identifiers
    names = output_names(fn)
    if args.output:
        print(write_outputs(args.output, names, values))
    else:
        sys.stdout.write(format_outputs(names, values))
    if fn.program.updates:
        updated = ", ".join(name for name, _ in fn.program.updates)
        print(f"note: the function updated {updated} in memory; {args.model} is unchanged", file=sys.stderr)
    return EXIT_OK


def cmd_inspect(args) -> int:
    from .report import format_summary, summary

    d = summary(open_model(args.model))
    sys.stdout.write(json.dumps(d, indent=1) + "\n" if args.json else format_summary(d))
    return EXIT_OK


def cmd_check(args) -> int:
    model = open_model(args.model, limits=limits_from(args), verify_sidecar=True)
    parts = [f"{model.kind}" + (f" of graph '{model.doc['graph'].get('name')}'" if "graph" in model.doc else "")]
    if model.kind != "checkpoint":
        parts.append(f"{len(model.nodes)} nodes")
    fn = model.obj if model.kind == "function" else None
    if fn is not None:
        parts.append(_count(len(fn._placeholders), "input") + ", " + _count(len(fn.program.outputs), "output") + ", "
                     + _count(len(fn.program.updates), "update"))  # fmt: skip
    elif args.shape:
        raise CLIError(f"--shape: {args.model} is a {model.kind} file; only functions have a plan to check")
    variables = model.variables
    params = sum(v.size for v in variables.values())
    parts.append(f"{len(variables)} variables ({params:,} parameters, "
                 f"{fmt_bytes(sum(v.nbytes for v in variables.values()))})")  # fmt: skip
    sidecar = model.doc.get("sidecar")
    if sidecar:
        parts.append(f"sidecar {sidecar['file']} verified ({fmt_bytes(sidecar['nbytes'])})")
    if fn is not None and (args.shape or args.batch is not None or all(t.is_static for _, t in fn._placeholders)):
        signature = resolve_signature(fn, args.shape, args.batch or 1)
        plan = fn._plan_for(signature)[0]  # specializes and checks max_tensor_bytes; runs nothing
        shapes = ", ".join(f"{n}={fmt_shape(s)}" for (n, _), s in zip(fn._placeholders, signature))
        parts.append(f"plan for {shapes or 'no inputs'}: {len(plan.steps)} kernels, "
                     f"peak {fmt_bytes(plan.memory.peak_bytes)}")  # fmt: skip
    print(f"ok: {args.model}: " + "; ".join(parts))
    return EXIT_OK


def cmd_diff(args) -> int:
    from .report import diff

    a, b = open_model(args.a), open_model(args.b)
    text, different = diff(a, b)
    sys.stdout.write(text)
    return 1 if different else 0


def cmd_explain(args) -> int:
    fn = require_function(open_model(args.model), "explain")
    fn._plan_for(resolve_signature(fn, args.shape, args.batch))
    if args.json:
        sys.stdout.write(json.dumps(fn.explain(format="json"), indent=1) + "\n")
        return EXIT_OK
    meta = getattr(fn, "metadata", {})
    passes = ", ".join(meta.get("passes", [])) or "none recorded"
    print(f"# {args.model}: saved by graphc {meta.get('graphc_version', '?')} at opt_level {fn.opt_level}; "
          f"its compile-time passes ran before saving: {passes}")  # fmt: skip
    sys.stdout.write(fn.explain())
    return EXIT_OK


def cmd_bench(args) -> int:
    from .feeds import random_feeds

    model = open_model(args.model, device=args.device)
    fn = require_function(model, "bench")
    signature = resolve_signature(fn, args.shape, args.batch)
    feeds = random_feeds(fn, signature, args.seed)
    fn._plan_for(signature)  # specialize and lower outside the timed calls
    for _ in range(args.warmup):
        fn(feeds)
    repeat = args.repeat
    if repeat is None:  # about one second of calls, at least 10
        t0 = time.perf_counter()
        fn(feeds)
        repeat = int(min(max(1.0 / max(time.perf_counter() - t0, 1e-6), 10), 10_000))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(feeds)
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
    batch = batch_size(fn, signature)
    updates = [name for name, _ in fn.program.updates]
    result = {
        "file": args.model,
        "inputs": {n: {"shape": list(s), "dtype": t.dtype.name} for (n, t), s in zip(fn._placeholders, signature)},
        "seed": args.seed, "warmup": args.warmup, "calls": repeat,
        "median_seconds": median, "min_seconds": times[0], "calls_per_second": 1 / median,
        "batch": batch, "samples_per_second": batch / median if batch else None, "updates": updates,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    shapes = ", ".join(f"{n}={fmt_shape(s)} {t.dtype.name}" for (n, t), s in zip(fn._placeholders, signature))
    print(f"{args.model}: {shapes or 'no inputs'} (random feeds, seed {args.seed})")
    if updates:
        print(f"note: every call updates {', '.join(updates)}: the calls ran on the copy loaded from the file, "
              f"which is unchanged")  # fmt: skip
    print(f"{repeat} calls after {args.warmup} warm-up calls")
    print(f"latency: median {fmt_seconds(median)}, min {fmt_seconds(times[0])}")
    samples = f", {batch / median:,.0f} samples/s (batch {batch})" if batch else ""
    print(f"throughput: {1 / median:,.1f} calls/s{samples}")
    return EXIT_OK


_VIZ_FORMATS = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".html": "html", ".htm": "html"}


def cmd_viz(args) -> int:
    from . import viz

    fmt = _VIZ_FORMATS.get(os.path.splitext(args.output)[1].lower())
    if fmt is None:
        raise CLIError(f"-o {args.output}: unknown picture format: use .svg, .html or .dot")
    check_output(args.output)
    model = open_model(args.model)
    if model.kind == "checkpoint":
        raise CLIError(f"{args.model}: a checkpoint holds only variable values: there is no graph to draw")
    facts = [("file", args.model), ("graphc", str(model.metadata.get("graphc_version", "?")))]
    if model.kind == "function":
        fn = model.obj
        program = fn.program
        title = f"{fn.graph.name}"
        if args.fused:
            signature = resolve_signature(fn, args.shape, args.batch)
            program = fn._plan_for(signature)[0].program
            title += " (plan for " + (", ".join(f"{n}={fmt_shape(s)}" for (n, _), s in
                                                zip(fn._placeholders, signature)) or "no inputs") + ")"  # fmt: skip
        elif args.shape:
            raise CLIError("--shape chooses the shapes of the --fused plan: add --fused")
        v = viz.view(program.nodes, list(zip(output_names(fn), program.outputs)), program.updates, title)
        facts += [("inputs", ", ".join(f"{n} {t}" for n, t in fn._placeholders) or "none"),
                  ("outputs", ", ".join(output_names(fn)) or "none"),
                  ("updates", ", ".join(n for n, _ in program.updates) or "none"),
                  ("opt_level", str(fn.opt_level)),
                  ("passes", ", ".join(model.metadata.get("passes", [])) or "none recorded")]  # fmt: skip
        nodes = program.nodes
    else:
        if args.fused or args.shape:
            raise CLIError(f"--fused: {args.model} is a graph file; fusion happens in compiled functions")
        nodes = model.obj.nodes
        v = viz.view(nodes, title=model.obj.name)
    fused = len(v.clusters)
    facts.insert(1, ("nodes", f"{len(nodes)}" + (f" ({_count(fused, 'fused kernel')})" if fused else "")))
    if fmt == "dot":
        text = viz.to_dot(v)
    elif fmt == "svg":
        text = viz.to_svg(v)
    else:
        drawn = "as the plan for these shapes, after fusion" if args.fused else "as saved, before fusion"
        subtitle = f"{model.kind} file, drawn {drawn}" if model.kind == "function" else f"{model.kind} file"
        text = viz.to_html(v, subtitle, facts)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}: {len(nodes)} nodes" + (f", {_count(fused, 'fused group')}" if fused else ""))
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``graphc: error: <command>: <problem>``, with exit status 2."""

    def error(self, message):
        command = self.prog.removeprefix("graphc").strip()
        hint = f"graphc {command} --help" if command else "graphc --help"
        self.exit(EXIT_USAGE, f"graphc: error: {command + ': ' if command else ''}{message} (see '{hint}')\n")


def _shape_options(p, what: str) -> None:
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help=f"the shape of input NAME for {what} (fills its unknown dims); repeatable")  # fmt: skip
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="size of every leading unknown (batch) dim not given by --shape (default 1)")  # fmt: skip


COMPILE_EPILOG = """\
SRC is either
  a Python graph definition (*.py): graphc runs the file and calls its build(), which returns
    - a dict with "outputs" (a Tensor, a list or a dict of Tensors) and optionally "inputs"
      (placeholders fed positionally) and "updates" (gc.assign results or (variable, value)
      pairs): graphc compiles them at --opt-level (default 2); other keys are ignored;
    - or a compiled graphc.Function, or a dict with "function": saved as compiled
      (--key NAME picks build()[NAME] instead).
    Only run definitions you trust: the file is Python code.
  or a graphc JSON file: a function file is re-optimized at --opt-level (or saved unchanged
    without it; passes add optimizations, they cannot undo those already applied); a graph file,
    which has no signature, is compiled with the --fetch tensors as outputs and its assign
    nodes as updates (unless --no-updates).

examples:
  graphc compile graphs/two_layer_net.py -o model.json
  graphc compile graphs/two_layer_net.py --key predict -o predict.json
  graphc compile saved_graph.json --fetch logits --no-updates -o infer.json
"""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="graphc", description="graphc: compile, run, inspect and draw saved graphc models.",
                     epilog="exit status: 0 ok, 1 user error, 2 usage error (graphc diff: 0 same, 1 different, "
                            "2 trouble). 'graphc COMMAND --help' for details.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"graphc {__version__} (file format version {VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("compile", help="compile a Python graph definition or a JSON graph to a saved function",
                       description="Compile SRC and save the optimized function (JSON + sidecar).",
                       epilog=COMPILE_EPILOG, formatter_class=raw)  # fmt: skip
    p.add_argument("src", metavar="SRC", help="a Python graph definition (.py) or a graphc JSON file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json", help="the file to write")
    p.add_argument("--opt-level", type=int, choices=(0, 1, 2), default=None,
                   help="optimization level (default 2; see below)")  # fmt: skip
    p.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="keyword argument for build() (VALUE is JSON, else a string); repeatable")  # fmt: skip
    p.add_argument("--key", metavar="NAME", help="save build()[NAME], a compiled Function")
    p.add_argument("--fetch", action="append", default=[], metavar="REF",
                   help="graph files: a tensor to output ('name' or 'name:i'); repeatable")  # fmt: skip
    p.add_argument("--no-updates", action="store_true", help="graph files: ignore the graph's assign nodes")
    p.add_argument(
        "--timestamp", action="store_true", help="record the creation time (the file is then not reproducible)"
    )
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("run", help="run a saved function on arrays from .npy/.npz/.json files",
                       description="Load MODEL, feed its inputs from files, print the outputs or write them.",
                       epilog="examples:\n  graphc run model.json -i x=batch.npy -i y=labels.npz:y\n"
                              "  graphc run model.json -i x=x.json -o out.npz\n\n"
                              "A .npz without :KEY gives the array named like the input, or its only array. "
                              "Outputs are named\nby the output tensor (one output), the dict keys, or "
                              "output_0, output_1, ... (a list).\nFiles are never unpickled.",
                       formatter_class=raw)  # fmt: skip
    p.add_argument("model", metavar="MODEL.json")
    p.add_argument("-i", "--input", action="append", default=[], metavar="NAME=FILE",
                   help="feed input NAME from FILE: .npy, .npz[:KEY] or .json (nested lists); repeatable")  # fmt: skip
    p.add_argument("-o", "--output", metavar="OUT.npz", help="write the outputs to .npz (or .npy for one output)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("inspect", help="inputs, outputs, updates, ops, parameters and passes of a model file",
                       description="Summarize a model file: signature, op histogram, parameters, passes "
                                   "applied, storage.")  # fmt: skip
    p.add_argument("model", metavar="MODEL.json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("viz", help="draw a model as SVG, HTML or Graphviz DOT",
                       description="Draw MODEL. The format follows the extension of -o: .svg and .html are "
                                   "laid out by graphc itself (no Graphviz needed), .dot is for Graphviz. "
                                   "Fused kernels are drawn as groups of their body's ops; saved functions "
                                   "hold the program before fusion, so use --fused to draw the plan for "
                                   "given input shapes.")  # fmt: skip
    p.add_argument("model", metavar="MODEL.json")
    p.add_argument("-o", "--output", required=True, metavar="OUT.svg|OUT.html|OUT.dot")
    p.add_argument("--fused", action="store_true", help="draw the specialized plan (fused kernels) for the shapes")
    _shape_options(p, "the --fused plan")
    p.set_defaults(handler=cmd_viz)

    p = sub.add_parser("bench", help="time a saved function on random feeds",
                       description="Time MODEL on random feeds (floats: standard normal; ints and bools: "
                                   "zeros). A function with updates changes its variables on every call: it "
                                   "runs on the copy loaded from the file, which stays unchanged.")  # fmt: skip
    p.add_argument("model", metavar="MODEL.json")
    _shape_options(p, "the random feeds")
    p.add_argument("--repeat", type=int, default=None, metavar="N", help="timed calls (default: about one second)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed calls first (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the feeds (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("check", help="validate a model file without running it",
                       description="Load MODEL with every check of graphc.load (schema, sidecar size and "
                                   "sha256, limits, shape inference) and run nothing. With --shape or "
                                   "--batch (or when every input shape is known) it also builds the plan "
                                   "and checks --max-tensor-bytes against it. Sizes accept K, M, G.")  # fmt: skip
    p.add_argument("model", metavar="MODEL.json")
    p.add_argument("--max-file-bytes", metavar="SIZE", help="largest JSON or sidecar file (default 1G)")
    p.add_argument("--max-nodes", type=int, metavar="N", help="most nodes (default 100000)")
    p.add_argument("--max-depth", type=int, metavar="N", help="deepest subgraph nesting (default 16)")
    p.add_argument("--max-constant-bytes", metavar="SIZE", help="all stored arrays together (default 1G)")
    p.add_argument("--max-tensor-bytes", metavar="SIZE", help="largest stored array or planned tensor (default 4G)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="also build and check the plan for this input shape; repeatable")  # fmt: skip
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="also build and check the plan with leading unknown dims set to N")  # fmt: skip
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("diff", help="node-level difference of two model files",
                       description="Compare two model files node by node (matched by name): ops, inputs, "
                                   "attributes, output types, the signature, metadata, and variable values "
                                   "(max abs and relative difference). Exit status as diff(1): 0 same, "
                                   "1 different, 2 trouble (a file that cannot be read).")  # fmt: skip
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    p.set_defaults(handler=cmd_diff, error_status=2)

    p = sub.add_parser("explain", help="what the compiler does to a saved function for given input shapes",
                       description="Load MODEL, specialize it for the input shapes and print fn.explain(): "
                                   "the per-shape passes, kernels, memory plan and generated code.")  # fmt: skip
    p.add_argument("model", metavar="MODEL.json")
    _shape_options(p, "the plan")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_explain)
    return parser


def _error(message: str, status: int) -> int:
    print(f"graphc: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    status = getattr(args, "error_status", EXIT_ERROR)
    try:
        return args.handler(args)
    except GraphcError as e:
        return _error(str(e), status)
    except BrokenPipeError:  # output piped into a command that stopped reading (graphc inspect | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as e:  # a file a command writes, or reads outside the loader
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}", status)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
