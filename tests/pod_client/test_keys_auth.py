"""Keys of the embedded default, auth objects and small pure parts."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from importer.pod import (
    BulkResult,
    ClientAuth,
    KeyFileError,
    PluginAuth,
    PodKeys,
    RetryPolicy,
    default_data_dir,
    load_keys,
)
from importer.pod._retry import parse_retry_after

KEY = "5e" * 32


def test_keys_created_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "pod"
    first = load_keys(data_dir)
    key_file = data_dir / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert len(first.owner_key) == 64 and len(first.database_key) == 64
    assert first.owner_key != first.database_key
    int(first.owner_key, 16), int(first.database_key, 16)
    assert json.loads(key_file.read_text()) == {
        "owner_key": first.owner_key,
        "database_key": first.database_key,
    }
    assert load_keys(data_dir) == first
    assert [p.name for p in data_dir.iterdir()] == ["keys.json"]  # no temp files left


def test_keys_created_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_keys(tmp_path / "pod")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "pod" / "keys.json").stat().st_mode) == 0o600


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_keys(tmp_path)
    key_file = tmp_path / "keys.json"
    key_file.chmod(0o644)
    with pytest.raises(KeyFileError, match=str(key_file)) as caught:
        load_keys(tmp_path)
    assert "0644" in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"owner_key": "ab"}',
        json.dumps({"owner_key": "g" * 64, "database_key": "a" * 64}),
    ],
)
def test_bad_key_file_is_refused(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "keys.json"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(KeyFileError, match=str(key_file)):
        load_keys(tmp_path)


def test_pod_keys_repr_hides_database_key() -> None:
    keys = PodKeys("a" * 64, KEY)
    assert KEY not in repr(keys) and KEY not in str(keys)
    assert "a" * 64 in repr(keys)


def test_default_data_dir_is_per_user() -> None:
    path = default_data_dir()
    assert path.is_absolute()
    assert "importer" in path.parts[-1] or "importer" in str(path)


def test_auth_reprs_hide_secrets() -> None:
    client = ClientAuth(KEY)
    plugin = PluginAuth({"token": "t0ps3cr3t-token-value"})
    assert KEY not in repr(client)
    assert "t0ps3cr3t" not in repr(plugin)
    assert client.to_json() == {"type": "ClientAuth", "databaseKey": KEY}
    assert plugin.to_json() == {"type": "PluginAuth", "data": {"token": "t0ps3cr3t-token-value"}}


def test_client_auth_rejects_malformed_key_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        ClientAuth("secret-but-not-hex")
    assert "secret-but-not-hex" not in str(caught.value)


def test_plugin_upload_path_is_one_url_encoded_segment() -> None:
    plugin = PluginAuth({"token": "a/b c"})
    path = plugin.upload_path("f" * 64)
    prefix, segment, digest = path.split("/")
    assert prefix == "upload_file_b" and digest == "f" * 64
    assert json.loads(unquote(segment)) == plugin.to_json()


def test_plugin_auth_from_env_json_accepts_both_shapes() -> None:
    data = {"token": "abc"}
    assert PluginAuth.from_env_json(json.dumps(data)).data == data
    wrapped = json.dumps({"type": "PluginAuth", "data": data})
    assert PluginAuth.from_env_json(wrapped).data == data


def test_parse_retry_after() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 01 May 2024 12:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=1.0)
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (10, 1.0)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.backoff(attempt) <= ceiling


def test_bulk_result_from_json() -> None:
    result = BulkResult.from_json(
        {"createItems": ["a", "b"], "createEdges": ["e"], "search": [[{"id": "a"}], []]}
    )
    assert result.created_ids == ["a", "b"]
    assert result.edge_ids == ["e"]
    assert result.search_results == [[{"id": "a"}], []]
    assert BulkResult.from_json({}) == BulkResult()
