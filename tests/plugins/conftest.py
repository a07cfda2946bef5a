"""A harness that plays the Pod's part: the local Pod on a socket, items made through
the API, and ``python -m importer run`` started with exactly the environment a Pod gives."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer.model import derive_id
from importer.pod.local import running_pod
from importer.schema import Account

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "connectors" / "email" / "samples" / "sample.mbox"


def base_env(home: Path) -> dict[str, str]:
    """A clean process environment: no config file, no inherited Pod settings; this
    checkout's ``importer`` (not an installed copy) on the path."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "LANG": "C.UTF-8",
    }


@dataclass
class Owner:
    """One owner of a running local Pod, reached over HTTP with ClientAuth."""

    url: str
    app: Any
    owner: str = field(default_factory=lambda: secrets.token_hex(32))
    key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)

    def __post_init__(self) -> None:
        answer = httpx.post(
            f"{self.url}/v4/account", json={"ownerKey": self.owner, "databaseKey": self.key}
        )
        assert answer.status_code == 200, answer.text

    def call(self, endpoint: str, payload: Any) -> Any:
        body = {"auth": {"type": "ClientAuth", "databaseKey": self.key}, "payload": payload}
        answer = httpx.post(f"{self.url}/v4/{self.owner}/{endpoint}", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def item(self, item_id: str) -> dict[str, Any]:
        found = self.call("get_item", item_id)
        assert found, f"no item {item_id}"
        return dict(found[0])

    def search(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.call("search", flt))

    def all_items(self) -> list[dict[str, Any]]:
        return self.search({})

    def make_importer(
        self,
        config: dict[str, Any] | str | None,
        *,
        handle: str = "owner@plugin.test",
        secret: str | None = None,
        link_account: bool = True,
        link_importer: bool = True,
        run_status: str | None = None,
        connector: str = "email",
        run_type: str = "ImporterRun",
    ) -> tuple[str, str, str]:
        """Account, Importer and a run item linked as a Pod holds them; their ids."""
        account = Account(service="email", handle=handle, isMe=True).to_pod()
        if secret is not None:
            account["secret"] = secret
        importer_id = derive_id("Importer", connector, account["id"])
        importer: dict[str, Any] = {
            "id": importer_id,
            "type": "Importer",
            "name": f"box-{secrets.token_hex(3)}",
            "connector": connector,
            "externalId": account["id"],
        }
        if config is not None:
            importer["config"] = config if isinstance(config, str) else json.dumps(config)
        run: dict[str, Any] = {"id": secrets.token_hex(16), "type": run_type}
        if run_status is not None:
            run["status"] = run_status
        edges = []
        if link_account:
            edges.append({"_source": importer_id, "_name": "account", "_target": account["id"]})
        if link_importer:
            edges.append({"_source": run["id"], "_name": "importer", "_target": importer_id})
        self.call("bulk", {"createItems": [account, importer, run], "createEdges": edges})
        return account["id"], importer_id, run["id"]

    def new_run(self, importer_id: str) -> str:
        run_id = secrets.token_hex(16)
        self.call(
            "bulk",
            {
                "createItems": [{"id": run_id, "type": "ImporterRun"}],
                "createEdges": [{"_source": run_id, "_name": "importer", "_target": importer_id}],
            },
        )
        return run_id

    def plugin_env(self, run_id: str, home: Path) -> tuple[dict[str, str], dict[str, Any]]:
        """What a Pod hands the plugin it starts for ``run_id`` (and the token data)."""
        auth = self.app.state.issue_plugin_token(self.owner, self.key)
        env = {
            **base_env(home),
            "POD_FULL_ADDRESS": self.url,
            "POD_OWNER": self.owner,
            "POD_AUTH_JSON": json.dumps(auth),
            "POD_PLUGINRUN_ID": run_id,
            "POD_TARGET_ITEM": json.dumps(self.item(run_id)),
        }
        return env, auth

    def run_plugin(
        self, run_id: str, home: Path, connector: str = "email"
    ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """``python -m importer run CONNECTOR`` as a Pod starts it; the secrets it was given."""
        env, auth = self.plugin_env(run_id, home)
        done = subprocess.run(
            [sys.executable, "-m", "importer", "run", connector],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done, [*map(str, auth.values()), self.key]

    def wait_for_run(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        """The run item once it has ended (status neither absent, requested nor running)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.item(run_id)
            if run.get("status") not in (None, "requested", "running") and "outputTail" in run:
                return run
            assert time.monotonic() < deadline, f"run still {run.get('status')!r}: {run}"
            time.sleep(0.2)


def assert_absent(secrets_: list[str], *texts: str) -> None:
    for secret in secrets_:
        for text in texts:
            assert secret not in text


@pytest.fixture(scope="module")
def pod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """One local Pod (launcher off) per module: the tests start the importer themselves."""
    apps: list[Any] = []

    def keep(app: Any) -> Any:
        apps.append(app)
        return app

    with running_pod(tmp_path_factory.mktemp("pod"), wrap=keep) as url:
        yield url, apps[0]


@pytest.fixture
def pod(pod_server: tuple[str, Any]) -> Owner:
    """A fresh owner on the module's Pod."""
    url, app = pod_server
    return Owner(url, app)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path
