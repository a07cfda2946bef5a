"""Bad input: generated junk against the served Pod, and bad config files against the CLI.

The Pod must answer junk with a 4xx (never a 5xx), keep serving, and leave
what it already held untouched; a failed bulk leaves nothing behind. A bad
config must be refused with a message naming the file, the key and the fault.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.pod.local import running_pod
from tests.cli.test_cli import SAMPLE, config_file, importer

ENDPOINTS = [
    "create_item",
    "get_item",
    "update_item",
    "delete_item",
    "search",
    "bulk",
    "create_edge",
    "get_edges",
    "delete_edge_by_source_target",
    "get_file",
]
KEYS = [
    "id", "type", "deleted", "subject", "displayName", "email", "sha256", "_source", "_target",
    "_name", "item", "direction", "expandItems", "_limit", "_offset", "_sortOrder",
    "dateServerModified>=", "dateServerModified<", "dateCreated", "[[edges]]", "~[[edges]]",
    "createItems", "updateItems", "deleteItems", "createEdges", "search", "nodes", "properties",
]  # fmt: skip
TYPES = ["Person", "EmailMessage", "File", "Account", "ItemPropertySchema", "Nope", "", "1x"]
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from([*TYPES, "Asc", "Desc", "Outgoing", "Incoming", "a" * 300, "0" * 64])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
auths = st.one_of(
    st.just("valid"),
    json_values,
    st.fixed_dictionaries({"type": st.sampled_from(["ClientAuth", "PluginAuth", "X"])},
                          optional={"databaseKey": json_values, "data": json_values}),
)  # fmt: skip
odd_segments = st.sampled_from(
    ["..", "%2e%2e", "%2F", "a/../b", "%00", "upload_file", "v4", "", " ", "ü", "~", "%ff"]
) | st.text(max_size=12)


class Owner:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.owner, self.key = secrets.token_hex(32), secrets.token_hex(32)
        answer = http.post("/v4/account", json={"ownerKey": self.owner, "databaseKey": self.key})
        assert answer.status_code == 200, answer.text

    def call(self, endpoint: str, payload: Any) -> httpx.Response:
        body = {"auth": {"type": "ClientAuth", "databaseKey": self.key}, "payload": payload}
        return self.http.post(f"/v4/{self.owner}/{endpoint}", json=body)

    def ok(self, endpoint: str, payload: Any) -> Any:
        answer = self.call(endpoint, payload)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        running_pod(tmp_path_factory.mktemp("pod")) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def known(http: httpx.Client) -> tuple[Owner, list[dict[str, Any]]]:
    """An owner with a known item set, created before any junk arrives."""
    owner = Owner(http)
    items = [
        {"id": f"p{i}", "type": "Person", "displayName": f"Person {i} ✓", "email": f"p{i}@x.org"}
        for i in range(20)
    ]
    edges = [{"_source": f"p{i}", "_target": f"p{i + 1}", "_name": "knows"} for i in range(19)]
    owner.ok("bulk", {"createItems": items, "createEdges": edges})
    return owner, owner.ok("search", {"[[edges]]": {}})


@pytest.fixture(scope="module")
def fuzzed(http: httpx.Client) -> Owner:
    """The owner whose valid key the junk may carry."""
    return Owner(http)


def _check_answer(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert isinstance(error, str) and error


@SETTINGS
@given(endpoint=st.sampled_from(ENDPOINTS), payload=json_values, auth=auths)
def test_junk_payloads_never_5xx(
    http: httpx.Client,
    known: tuple[Owner, list[dict[str, Any]]],
    fuzzed: Owner,
    endpoint: str,
    payload: Any,
    auth: Any,
) -> None:
    victim, _ = known  # the known owner only ever gets junk auth
    owner = victim.owner
    if auth == "valid":
        auth = {"type": "ClientAuth", "databaseKey": fuzzed.key}
        owner = fuzzed.owner
    answer = http.post(f"/v4/{owner}/{endpoint}", json={"auth": auth, "payload": payload})
    _check_answer(answer)


@settings(SETTINGS, max_examples=60)
@given(body=json_values, segments=st.lists(odd_segments, min_size=1, max_size=3))
def test_junk_bodies_and_odd_paths_never_5xx(
    http: httpx.Client, known: tuple[Owner, list[dict[str, Any]]], body: Any, segments: list[str]
) -> None:
    victim, _ = known
    path = "/".join(quote(s, safe="%/.~") for s in segments)
    for url in (f"/v4/{victim.owner}/{path}", f"/{path}", f"/v5/{victim.owner}/{path}"):
        _check_answer(http.post(url, content=json.dumps(body).encode()))
    _check_answer(http.post(f"/v4/{victim.owner}/search", content=json.dumps(body).encode()))


@SETTINGS
@given(
    good=st.integers(min_value=1, max_value=6),
    junk=json_values,
    section=st.sampled_from(["createItems", "updateItems", "createEdges", "deleteItems"]),
)
def test_a_failed_bulk_leaves_nothing(fuzzed: Owner, good: int, junk: Any, section: str) -> None:
    owner = fuzzed
    tag = secrets.token_hex(6)
    items = [{"id": f"{tag}-{i}", "type": "Person", "displayName": tag} for i in range(good)]
    payload: dict[str, Any] = {"createItems": items}
    if section == "createItems":
        payload["createItems"] = [*items, junk]
    else:
        payload[section] = [junk]
    answer = owner.call("bulk", payload)
    _check_answer(answer)
    landed = owner.ok("search", {"displayName": tag})
    if answer.status_code == 200:
        assert len(landed) >= good
    else:
        assert landed == [], answer.text


def test_after_the_junk_known_data_is_intact_and_search_works(
    http: httpx.Client, known: tuple[Owner, list[dict[str, Any]]], fuzzed: Owner
) -> None:
    """Runs last in this file: the junk above has been sent by now."""
    owner, before = known
    assert http.get("/").status_code == 200
    assert owner.ok("search", {"[[edges]]": {}}) == before
    assert len(before) >= 20 and sum(len(i["[[edges]]"]) for i in before) == 19
    everything = fuzzed.ok("search", {"[[edges]]": {}, "~[[edges]]": {}})
    assert isinstance(everything, list)
    assert all(isinstance(i["id"], str) and i["type"] for i in everything)


# -- bad configuration files, through the CLI ---------------------------------------

_MBOX = f'[accounts.a]\nconnector = "email"\nsource = "mbox"\npath = "{SAMPLE}"\n'
_WRONG_TYPES = {
    "source": ("5", "accounts.a.source"),
    "host": ("[1]", "accounts.a.host"),
    "port": ('"abc"', "accounts.a.port"),
    "security": ('"ssl3"', "accounts.a.security"),
    "username": ("{x = 1}", "accounts.a.username"),
    "password_command": ("1.5", "accounts.a.password_command"),
    "password_env": ("true", "accounts.a.password_env"),
    "password_keyring": ('"maybe"', "accounts.a.password_keyring"),
    "auth": ('"kerberos"', "accounts.a.auth"),
    "ca_file": ("3", "accounts.a.ca_file"),
    "verify_tls": ('"yes please"', "accounts.a.verify_tls"),
    "folders": ('"INBOX"', "accounts.a.folders"),
    "include": ("7", "accounts.a.include"),
    "exclude": ("[1, 2]", "accounts.a.exclude"),
    "chunk_size": ("0", "accounts.a.chunk_size"),
    "address": ("[]", "accounts.a.address"),
    "max_attachment_bytes": ("-1", "accounts.a.max_attachment_bytes"),
    "connect_timeout": ('"long"', "accounts.a.connect_timeout"),
}
BAD_CONFIGS = [
    pytest.param(
        _MBOX.replace(f'source = "mbox"\npath = "{SAMPLE}"\n', "")
        + f'source = "mbox"\npath = "{SAMPLE}"\n{key} = {value}\n'
        if key != "source"
        else f'[accounts.a]\nconnector = "email"\nsource = {value}\npath = "{SAMPLE}"\n',
        where,
        id=f"email-{key}",
    )
    for key, (value, where) in _WRONG_TYPES.items()
] + [
    pytest.param("colour = 1\n" + _MBOX, "colour: unknown key", id="unknown-top"),
    pytest.param("[pod]\nurll = 1\n", "pod.urll: unknown key", id="unknown-pod"),
    pytest.param(_MBOX + "frobnicate = 1\n", "accounts.a.frobnicate", id="unknown-account"),
    pytest.param("[pod]\nmax_attempts = 0\n", "pod.max_attempts", id="pod-attempts-0"),
    pytest.param("[pod]\nmax_concurrency = 1.5\n", "pod.max_concurrency", id="pod-concurrency"),
    pytest.param('[pod]\nowner_key = "abc"\n', "pod.owner_key", id="pod-owner-key"),
    pytest.param("[pod]\nmax_retry_seconds = -1\n", "pod.max_retry_seconds", id="pod-budget"),
    pytest.param("[engine]\nbatch_bytes = 10\n", "engine.batch_bytes", id="engine-bytes"),
    pytest.param('[engine]\nflush_interval = "x"\n', "engine.flush_interval", id="engine-flush"),
    pytest.param("pod = 3\n", "pod", id="pod-not-a-table"),
    pytest.param("[accounts]\na = 1\n", "accounts.a", id="account-not-a-table"),
    pytest.param('[accounts.a]\nsource = "mbox"\n', "accounts.a.connector", id="no-connector"),
    pytest.param('[accounts.a]\nconnector = "email"\n', "accounts.a.source", id="no-source"),
    pytest.param("[pod]\ntimeout = 1\ntimeout = 2\n", "not valid TOML", id="toml-dup-key"),
    pytest.param("[pod]\nurl = 'x\n", "not valid TOML", id="toml-unterminated"),
    pytest.param("\xff\xfe = 1\n", "not valid TOML", id="toml-junk"),
]


@pytest.mark.parametrize(("config", "expected"), BAD_CONFIGS)
def test_bad_config_is_refused_precisely(tmp_path: Path, config: str, expected: str) -> None:
    path = config_file(tmp_path)
    path.write_text(config)
    done = importer("run", "email", "--account", "a", tmp_path=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    line = next((ln for ln in done.stderr.splitlines() if expected in ln), None)
    assert line is not None, done.stderr
    assert str(path) in line, done.stderr
