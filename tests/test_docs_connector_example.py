"""docs/connectors.md shows the feeds connector verbatim, and what it shows works.

The doc's connector block must equal ``connectors/rss/__init__.py`` (the file
is the single source; the doc quotes it), and the block itself is loaded and
run against a real HTTP server and a real local Pod — so neither can rot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

from importer.testing import local_pod, run_connector, snapshot
from importer.testing.feedserver import ATOM_TYPE, Resource, atom, feed_server, rss

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "connectors.md"
PACKAGED = ROOT / "connectors" / "rss" / "__init__.py"


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), re.S | re.M)


def _load(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module  # pydantic resolves the models' annotations through it
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


def _example() -> Any:
    return _load(_python_blocks()[0], "rss_doc_example").connector


def test_the_doc_shows_the_packaged_connector_verbatim() -> None:
    blocks = _python_blocks()
    assert blocks, "docs/connectors.md has no python block"
    assert blocks[0] == PACKAGED.read_text(), (
        "the connector in docs/connectors.md differs from connectors/rss/__init__.py: "
        "paste the file into the doc's first python block"
    )


async def test_the_example_imports_and_then_only_what_changed(tmp_path: Path) -> None:
    example = _example()
    posts = [{"guid": f"p{i}", "title": f"Post {i}"} for i in range(3)]
    with feed_server() as server:
        server.resources["/blog.xml"] = Resource(rss("Blog", posts), etag='"1"')
        server.resources["/notes.atom"] = Resource(
            atom("Notes", [{"id": "urn:n1", "title": "Note", "updated": "2024-05-01T00:00:00Z"}]),
            ATOM_TYPE,
        )
        server.resources["/broken.xml"] = Resource(b"<rss><channel><title>Cut sh")
        feeds = [server.url(p) for p in ("/blog.xml", "/broken.xml", "/notes.atom")]
        async with local_pod(tmp_path / "pod") as pod:
            first = await run_connector(example, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            assert first.error is None and first.stats.created == 2 + 4
            assert [(s.ref, s.reason.split(":")[0]) for s in first.skipped] == [
                (server.url("/broken.xml"), "malformed feed")
            ]
            # Unchanged (ETag matches): 304, nothing written.
            same = await run_connector(example, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            assert same.stats.created == same.stats.updated == 0
            assert server.seen("/blog.xml")[-1].status == 304
            # Changed: the new post is created, the retitled one updated.
            posts[1] = {"guid": "p1", "title": "Post 1, retitled"}
            posts.append({"guid": "p3", "title": "Post 3"})
            server.resources["/blog.xml"] = Resource(rss("Blog", posts), etag='"2"')
            changed = await run_connector(example, {"feeds": feeds}, client=pod, data_dir=tmp_path)
            assert (changed.stats.created, changed.stats.updated) == (1, 1)
            snap = await snapshot(pod)

    titles = sorted(e["title"] for e in snap.of_type("RSSEntry"))
    assert titles == ["Note", "Post 0", "Post 1, retitled", "Post 2", "Post 3"]
    assert sorted(f["title"] for f in snap.of_type("RSSFeed")) == ["Blog", "Notes"]
    assert len(snap.edges_named("feed")) == 5


async def test_the_testing_example_runs_as_printed(tmp_path: Path) -> None:
    testing = _load(_python_blocks()[1], "rss_doc_testing_example")
    await testing.test_feed(tmp_path)


def _pytest_settings() -> str:
    """The doc's ``pyproject.toml`` lines that let pytest run its async test."""
    blocks: list[str] = re.findall(r"^```toml\n(.*?)^```$", DOC.read_text(), re.S | re.M)
    settings = [block for block in blocks if "[tool.pytest.ini_options]" in block]
    assert settings, "docs/connectors.md does not show the pytest settings its test needs"
    return settings[0]


def test_the_testing_example_passes_in_a_project_of_its_own(tmp_path: Path) -> None:
    """A reader has the installed packages and the doc, not this repository's tests."""
    site = tmp_path / "site"  # what installing the project puts on the path, and only that
    site.mkdir()
    for package in ("importer", "connectors"):
        (site / package).symlink_to(ROOT / package, target_is_directory=True)
    project = tmp_path / "author"
    project.mkdir()
    (project / "pyproject.toml").write_text(_pytest_settings())
    (project / "test_example.py").write_text(_python_blocks()[1])
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"]
    done = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
