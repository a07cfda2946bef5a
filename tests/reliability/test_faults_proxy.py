"""`importer run` through a real TCP proxy that faults ~20% of Pod requests.

The Pod applies each request atomically and the engine re-checks what exists
after an answer is lost, so a faulted run must land exactly what a clean run
lands; and a Pod that never recovers must end the run in one line, in time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer.pod.local import running_pod
from tests.cli.test_cli import config_file, importer
from tests.email.corpus import make_mbox, make_message

from ._proxy import Fault, FaultPlan, fault_proxy

BOOKKEEPING = {"ImporterRun", "Importer", "PendingEdge", "ItemPropertySchema"}
VOLATILE = {"dateServerModified", "dateModified", "dateCreated", "keystr", "nonce"}
MESSAGES = 40


@pytest.fixture(scope="module")
def pod_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_pod(tmp_path_factory.mktemp("pod")) as url:
        yield url


@pytest.fixture(scope="module")
def mbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mail") / "corpus.mbox"
    messages = [
        make_message(i, attachment=f"attachment {i}".encode() if i % 5 == 0 else None)
        for i in range(MESSAGES)
    ]
    path.write_bytes(make_mbox(messages))
    return path


def _owner() -> dict[str, str]:
    return {
        "IMPORTER_POD_OWNER_KEY": secrets.token_hex(32),
        "IMPORTER_POD_DATABASE_KEY": secrets.token_hex(32),
    }


def _configure(tmp_path: Path, *, timeout: float, attempts: int, budget: float) -> None:
    config_file(tmp_path).write_text(
        f"[pod]\ntimeout = {timeout}\nmax_attempts = {attempts}\n"
        f"max_retry_seconds = {budget}\n\n"
        "[engine]\nbatch_records = 8\nflush_interval = 0.1\nmax_in_flight = 2\n"
    )


def _all_items(url: str, env: dict[str, str]) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{url}/v4/{env['IMPORTER_POD_OWNER_KEY']}/search",
        json={
            "auth": {"type": "ClientAuth", "databaseKey": env["IMPORTER_POD_DATABASE_KEY"]},
            "payload": {"deleted": False, "[[edges]]": {}},
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    items = response.json()
    assert isinstance(items, list)
    return items


def _comparable(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Items by id without server-set fields, with their outgoing edges."""
    out: dict[str, Any] = {}
    for item in items:
        if item["type"] in BOOKKEEPING:
            continue
        edges = sorted((e["_edge"], e["_item"]["id"]) for e in item.pop("[[edges]]", []))
        out[item["id"]] = ({k: v for k, v in item.items() if k not in VOLATILE}, edges)
    return out


@pytest.mark.parametrize("seed", [7, 23])
def test_faulted_run_lands_exactly_the_clean_set(
    tmp_path: Path, pod_url: str, mbox: Path, seed: int
) -> None:
    _configure(tmp_path, timeout=1.0, attempts=60, budget=90)
    clean_env = {**_owner(), "IMPORTER_POD_URL": pod_url}
    clean = importer("run", "email", "--mbox", str(mbox), tmp_path=tmp_path, env=clean_env)
    assert clean.returncode == 0, clean.stderr
    reference = _comparable(_all_items(pod_url, clean_env))
    assert len([i for i in reference.values() if i[0]["type"] == "EmailMessage"]) == MESSAGES

    env = _owner()
    with fault_proxy(pod_url, FaultPlan(seed=seed, rate=0.2), stall_seconds=2.0) as proxy:
        env["IMPORTER_POD_URL"] = proxy.url
        done = importer("run", "email", "--mbox", str(mbox), tmp_path=tmp_path, env=env)
        counts = dict(proxy.counts)
    assert done.returncode == 0, done.stderr
    faults = sum(n for f, n in counts.items() if f is not Fault.FORWARD)
    assert faults >= 5, counts
    # Several kinds were met, including ones where the Pod applied the request.
    assert len([f for f in counts if f is not Fault.FORWARD]) >= 4, counts
    assert {Fault.RESET_AFTER, Fault.STALL, Fault.TRUNCATE} & set(counts), counts

    items = _all_items(pod_url, env)
    assert _comparable(items) == reference
    print(f"faulted run: {len(reference)} items equal; proxy decisions {counts}")
    runs = [i for i in items if i["type"] == "ImporterRun"]
    assert len(runs) == 1 and runs[0]["status"] == "done"
    assert runs[0]["retryCount"] > 0


@pytest.mark.parametrize("mode", ["503-forever", "refused"])
def test_pod_that_never_recovers_fails_in_one_line_within_budget(
    tmp_path: Path, pod_url: str, mbox: Path, mode: str
) -> None:
    budget = 4.0
    _configure(tmp_path, timeout=1.0, attempts=1000, budget=budget)
    env = _owner()
    started = time.monotonic()
    if mode == "refused":
        from tests.email.dovecot import free_port

        env["IMPORTER_POD_URL"] = f"http://127.0.0.1:{free_port()}"
        done = importer("run", "email", "--mbox", str(mbox), tmp_path=tmp_path, env=env)
    else:
        plan = FaultPlan(always=Fault.STATUS_503, retry_after=1)
        with fault_proxy(pod_url, plan) as proxy:
            env["IMPORTER_POD_URL"] = proxy.url
            done = importer("run", "email", "--mbox", str(mbox), tmp_path=tmp_path, env=env)
        assert proxy.counts[Fault.STATUS_503] > 3
    elapsed = time.monotonic() - started
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if " WARNING " not in line]
    assert len(errors) == 1 and errors[0] == lines[-1], done.stderr
    assert "Traceback" not in done.stderr
    assert errors[0].startswith("importer: ") and "attempt" in errors[0], errors
    print(f"{mode}: {elapsed:.1f}s: {errors[0]}")
    assert env["IMPORTER_POD_DATABASE_KEY"] not in done.stdout + done.stderr
    # Budget, plus one attempt's timeout, plus interpreter start-up.
    assert elapsed < budget + 1.0 + 8.0, elapsed
