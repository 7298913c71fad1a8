"""``graphc compile`` sources: a Python graph definition or a graphc JSON file, to a compiled Function.

The Python convention (docs/cli.md): the file defines ``build()``, which returns a compiled
``graphc.Function``, or a dict with ``"outputs"`` (and optional ``"inputs"``, ``"updates"``) for
graphc to compile at the chosen opt level, or a dict with ``"function"`` (a compiled Function).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback

from ..compiler import compile as gc_compile
from ..errors import GraphcError
from ..ir import Graph
from ..runtime import Function
from .common import CLIError, open_model

DEFAULT_OPT_LEVEL = 2


def parse_build_args(items) -> dict:
    """``--build-arg n_in=784`` -> {"n_in": 784}: values are JSON literals, else strings."""
    kwargs = {}
    for text in items or ():
        key, sep, value = text.partition("=")
        if not sep or not key.isidentifier():
            raise CLIError(f"--build-arg {text!r}: expected NAME=VALUE (for example n_hidden=64)")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def _run_python(path: str, build_args: dict):
    """Execute the definition file and call its ``build(**build_args)``."""
    name = "graphc_source_" + "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"{path}: cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by name while it runs
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the definition may import modules that sit next to it
    try:
        try:
            spec.loader.exec_module(module)
            build = getattr(module, "build", None)
            if not callable(build):
                raise CLIError(f"{path}: defines no build() function (see 'graphc compile --help')")
            return build(**build_args)
        except (GraphcError, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # the user's code failed: its traceback (from their file on) helps fix it
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
            raise CLIError(f"{path}: running the graph definition failed: {type(e).__name__}: {e}") from None
    finally:
        sys.path.remove(folder)


def _describe(value) -> str:
    return type(value).__name__ if not isinstance(value, dict) else f"a dict with keys {sorted(map(str, value))}"


def function_from_python(path: str, opt_level: int | None, build_args: dict, key: str | None = None) -> Function:
    result = _run_python(path, build_args)
    if key is not None:
        if not isinstance(result, dict) or key not in result:
            raise CLIError(f"{path}: --key {key}: build() returned {_describe(result)}")
        result = result[key]
        if not isinstance(result, Function):
            raise CLIError(f"{path}: --key {key}: build()[{key!r}] is a {type(result).__name__}, "
                           f"expected a compiled graphc.Function")  # fmt: skip
    if isinstance(result, dict) and "outputs" in result:
        # other keys (the graph, single tensors for tests and demos) are for other callers: ignored
        level = DEFAULT_OPT_LEVEL if opt_level is None else opt_level
        return gc_compile(result["outputs"], inputs=result.get("inputs"), updates=result.get("updates"),
                          opt_level=level)  # fmt: skip
    if isinstance(result, dict) and "function" in result:
        result = result["function"]
    if not isinstance(result, Function):
        raise CLIError(f"{path}: build() must return a compiled graphc.Function or a dict with 'outputs' "
                       f"(and optional 'inputs', 'updates') or 'function': got {_describe(result)}")  # fmt: skip
    if opt_level is not None and opt_level != result.opt_level:
        raise CLIError(f"{path}: --opt-level {opt_level}: build() returned a function already compiled at "
                       f"opt_level {result.opt_level}; return its 'outputs' (and 'updates') instead to let "
                       f"graphc compile choose the level")  # fmt: skip
    return result


def function_from_json(path: str, opt_level: int | None, outputs=None, updates: bool = True) -> Function:
    """A function file is re-optimized at ``opt_level`` (or kept as saved when it is not given);
    a graph file (which has no signature) is compiled with the ``--fetch`` outputs and its assign
    nodes as updates."""
    model = open_model(path)
    if model.kind == "checkpoint":
        raise CLIError(f"{path}: a checkpoint holds only variable values: there is nothing to compile")
    obj = model.obj
    if isinstance(obj, Function):
        if outputs:
            raise CLIError(f"{path}: --fetch chooses the outputs of a graph file; this is a function file")
        if opt_level is None:
            return obj
        prog = obj.program
        flat = list(prog.outputs)
        structure = {"tensor": lambda: flat[0], "list": lambda: flat, "none": lambda: None,
                     "dict": lambda: dict(zip(obj.structure.keys, flat))}[obj.structure.kind]()  # fmt: skip
        pairs = [(obj.graph.node(name).outputs[0], value) for name, value in prog.updates]
        return gc_compile(structure, inputs=list(obj.inputs), updates=pairs, opt_level=opt_level)
    graph: Graph = obj
    chosen = {ref: graph.tensor(ref) for ref in outputs or ()}
    result = None if not chosen else next(iter(chosen.values())) if len(chosen) == 1 else chosen
    assigns = [n.outputs[0] for n in graph.nodes if n.op == "assign"] if updates else []
    if result is None and not assigns:
        raise CLIError(f"{path}: a graph file has no signature and this one no assign nodes: name the "
                       f"outputs with --fetch NAME")  # fmt: skip
    level = DEFAULT_OPT_LEVEL if opt_level is None else opt_level
    return gc_compile(result, updates=assigns, opt_level=level)


def compile_source(src: str, opt_level: int | None, build_args: dict, key: str | None, outputs,
                   updates: bool) -> Function:  # fmt: skip
    """The function ``graphc compile SRC`` saves: ``.py`` files run as Python, others read as JSON."""
    if not os.path.exists(src):
        raise CLIError(f"{src}: no such file")
    if src.endswith(".py"):
        if outputs or not updates:
            raise CLIError(f"{src}: --fetch and --no-updates apply to graph files; for Python, build() chooses")
        return function_from_python(src, opt_level, build_args, key)
    if build_args or key:
        raise CLIError(f"{src}: --build-arg and --key apply to Python definitions (.py files)")
    return function_from_json(src, opt_level, outputs, updates)
