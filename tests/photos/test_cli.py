"""``python -m importer run photos`` as a whole process, ad hoc (``-o roots=...``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .images import write_image

ROOT = Path(__file__).resolve().parents[2]


# The CLI's main, then which of the image libraries the process had loaded.
_PROBE = (
    "import sys\n"
    "from importer.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('LOADED', sorted(m for m in ('PIL', 'numpy') if m in sys.modules))\n"
    "raise SystemExit(code)\n"
)


def importer(tmp_path: Path, *args: str, probe: bool = False) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.touch()
    env = dict(os.environ)
    env.update(IMPORTER_DATA_DIR=str(tmp_path / "data"), IMPORTER_CONFIG=str(config))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = ["-c", _PROBE] if probe else ["-m", "importer"]
    return subprocess.run(
        [sys.executable, *command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_run_imports_a_folder_and_a_rerun_nothing(tmp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    for i in range(3):
        write_image(pictures / f"p{i}.jpg", 300 + i, (160, 120))
    (pictures / "bad.jpg").write_bytes(b"nope")
    roots = "roots=" + json.dumps([str(pictures)])
    first = importer(tmp_path, "run", "photos", "-o", roots)
    assert first.returncode == 0, first.stderr
    assert "adhoc: imported 12 created" in first.stdout + first.stderr
    assert "1 skipped" in first.stdout + first.stderr
    again = importer(tmp_path, "run", "photos", "-o", roots)
    assert again.returncode == 0, again.stderr
    assert "adhoc: imported 0 created" in again.stdout + again.stderr
    found = importer(tmp_path, "pod", "search", "--type", "Photo", "--limit", "10")
    assert found.returncode == 0, found.stderr
    assert found.stdout.count('"perceptualHash"') == 3


def test_a_rerun_with_nothing_new_loads_neither_pillow_nor_numpy(tmp_path: Path) -> None:
    """Scheduled re-runs mostly find nothing new; importing the image libraries
    would be a fifth of what such a run costs."""
    pictures = tmp_path / "pictures"
    for i in range(2):
        write_image(pictures / f"p{i}.jpg", 400 + i, (160, 120))
    roots = "roots=" + json.dumps([str(pictures)])
    first = importer(tmp_path, "run", "photos", "-o", roots, probe=True)
    assert first.returncode == 0, first.stderr
    assert "LOADED ['PIL', 'numpy']" in first.stdout
    again = importer(tmp_path, "run", "photos", "-o", roots, probe=True)
    assert again.returncode == 0, again.stderr
    assert "adhoc: imported 0 created" in again.stdout + again.stderr
    assert "LOADED []" in again.stdout
    write_image(pictures / "p2.jpg", 402, (160, 120))
    third = importer(tmp_path, "run", "photos", "-o", roots, probe=True)
    assert third.returncode == 0, third.stderr
    assert "adhoc: imported 4 created" in third.stdout + third.stderr
    found = importer(tmp_path, "pod", "search", "--type", "Photo", "--limit", "10")
    assert found.stdout.count('"perceptualHash"') == 3
