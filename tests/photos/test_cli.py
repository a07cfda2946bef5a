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


def _summary(done: subprocess.CompletedProcess[str], verb: str) -> str:
    """The account's summary line, without its verb."""
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("adhoc: ")]
    assert line.startswith(f"adhoc: {verb} "), line
    return line.removeprefix(f"adhoc: {verb} ")


def _items(tmp_path: Path) -> list[str]:
    found = importer(tmp_path, "pod", "search")
    assert found.returncode == 0, found.stderr
    return sorted(found.stdout.splitlines())


def test_a_dry_run_reports_what_the_run_then_does(tmp_path: Path) -> None:
    """--dry-run asks the Pod what it holds: items and edges already there are
    not counted as created, files to upload are counted, and nothing is written."""
    pictures = tmp_path / "pictures"
    for i in range(3):
        write_image(pictures / f"p{i}.jpg", 500 + i, (160, 120))
    roots = "roots=" + json.dumps([str(pictures)])
    steps: list[tuple[str, ...]] = [(), (), ("--full-refresh",)]
    for step, flags in enumerate(steps):
        if step == 1:  # a copy at a new path, and an edited picture
            (pictures / "sub").mkdir()
            (pictures / "sub" / "copy.jpg").write_bytes((pictures / "p0.jpg").read_bytes())
            write_image(pictures / "p1.jpg", 600, (160, 120))
        before = _items(tmp_path)
        would = _summary(
            importer(tmp_path, "run", "photos", "-o", roots, "--dry-run", *flags), "would import"
        )
        assert _items(tmp_path) == before
        did = _summary(importer(tmp_path, "run", "photos", "-o", roots, *flags), "imported")
        assert would == did, (flags, step)
    assert did == "0 created, 0 updated, 13 unchanged, 0 edges, 0 files"


def test_a_file_name_with_a_newline_stays_on_its_log_line(tmp_path: Path) -> None:
    """Text logs escape control characters, so a crafted name cannot forge a log
    line; the Pod keeps the names as they are."""
    pictures = tmp_path / "pictures"
    write_image(pictures / "p0.jpg", 700, (160, 120))
    (pictures / "a\nb.jpg").write_bytes(b"")
    forged = "c\n12:00:00 INFO forged\r\x1b[2K.jpg"
    (pictures / forged).write_bytes(b"nope")
    roots = "roots=" + json.dumps([str(pictures)])
    done = importer(tmp_path, "run", "photos", "-o", roots)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines
    assert all(line.split(" ")[1] == "WARNING" for line in lines), lines
    assert "a\\nb.jpg: empty file" in lines[0] + lines[1]
    assert "c\\n12:00:00 INFO forged\\r\\x1b[2K.jpg: not an image" in lines[0] + lines[1]
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    (run,) = [item for item in map(json.loads, _items(tmp_path)) if item["type"] == "ImporterRun"]
    skipped = {entry["ref"] for entry in json.loads(run["skipLog"])}
    assert skipped == {str(pictures / "a\nb.jpg"), str(pictures / forged)}
    # JSON lines carry the names exactly.
    again = importer(
        tmp_path, "run", "photos", "-o", roots, "--full-refresh", "--log-format", "json"
    )
    assert again.returncode == 0, again.stderr
    warnings = [
        entry["message"]
        for entry in map(json.loads, again.stderr.splitlines())
        if entry["level"] == "warning"
    ]
    assert sorted(warnings) == [
        f"skipped {pictures / 'a'}\nb.jpg: empty file",
        f"skipped {pictures / forged}: not an image (unknown or damaged format)",
    ]
