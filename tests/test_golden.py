"""Golden files for every example in graphs/: the printed IR as built, and as the compiler leaves it.

A change in what graphc builds or how it optimizes shows up as a diff of these files, reviewed
like code. Regenerate them with ``make golden`` (GRAPHC_REGEN_GOLDEN=1) and read the diff.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from graphc.ir.printer import format_graph

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = sorted(p for p in (ROOT / "graphs").glob("*.py") if not p.name.startswith("_"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"graphs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(path: Path) -> str:
    net = _load(path).build()
    fn = net["step"]
    parts = [f"# {path.name}: the graph as built", format_graph(net["graph"]), "",
             "# the train step after the compile-time passes", format_graph(None, fn.program.nodes)]  # fmt: skip
    if fn.plan is not None:
        parts += ["", "# the plan's generated code for the first shape signature", fn.plan.source]
    return "\n".join(parts).rstrip() + "\n"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden(path: Path):
    text = _render(path)
    golden = GOLDEN / f"{path.stem}.txt"
    if os.environ.get("GRAPHC_REGEN_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {path.name}: run `make golden` and review it"
    assert text == golden.read_text(), f"{path.name} changed: run `make golden` and review the diff"
