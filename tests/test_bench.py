"""Smoke test of tools/bench.py: the quick run checks every system and writes its JSON.

No timing assertions: speed lives in the benchmark, not in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench.py"


def test_bench_quick_checks_every_workload(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr}"
    workloads = json.loads(out.read_text())["workloads"]
    ids = ("W1", "W2", "W3", "W4", "W4T", "W5", "W6")
    assert set(ids) <= set(workloads)
    for wid in ids:
        w = workloads[wid]
        assert w["checked"] is True, f"{wid}: {w['error']}"
        assert w["systems"]["graphc"]["median_s"] > 0, wid
