"""Every benchmark still runs: ``--quick`` as a subprocess, exit 0, its ratio lines printed.

Speed is never asserted here — only that each benchmark works end to end and
reports every figure it promises (``ratio NAME: VALUE (goal ...: met|MISSED)``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_RATIO = re.compile(
    r"^ratio (?P<name>[\w.]+): (?P<value>[0-9.e+-]+)(?: \w+)? "
    r"\(goal (?:>=|<=|<) [0-9.e+]+(?: \w+)?: (?:met|MISSED)\)$",
    re.MULTILINE,
)

EXPECTED = {
    "pod_bulk": {
        "pod_bulk.in_process.items",
        "pod_bulk.in_process.edges",
        "pod_bulk.socket.items",
        "pod_bulk.socket.edges",
        "pod_bulk.server_peak_rss",
    },
    "engine": {
        "engine.vs_floor",
        "engine.vs_floor_socket",
        "engine.vs_naive",
        "engine.vs_naive_socket",
        "engine.small_items_peak_rss",
    },
    "email": {
        "email.full_vs_parse_floor",
        "email.noop_large_vs_small",
        "email.noop_vs_full",
        "email.peak_rss_large_vs_small",
    },
    "photos": {"photos.import_vs_floor", "photos.rerun_vs_first", "photos.peak_rss_20mp"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_quick_run(name: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    found = {m["name"]: float(m["value"]) for m in _RATIO.finditer(done.stdout)}
    assert set(found) == EXPECTED[name], done.stdout
    assert all(value > 0 for value in found.values()), found
    assert "| " in done.stdout  # the results table
