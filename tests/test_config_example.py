"""``config.example.toml`` documents every account option, and only real ones.

A key the example shows that a connector does not take is now a config error
("unknown key"), so a user who copies a commented line would get one; an
option the example leaves out is one a user cannot discover there.
"""

from __future__ import annotations

import re
from pathlib import Path

from importer.config import load_config
from importer.connector import load_connector, validate_options

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
_COMMENTED_KEY = re.compile(r"^# (?=[a-z_]+ = )")


def _uncommented(text: str) -> str:
    """The example with the commented ``# key = value`` lines of account sections made live."""
    lines, in_account = [], False
    for line in text.splitlines():
        if line.startswith("["):
            in_account = line.startswith("[accounts.")
        lines.append(_COMMENTED_KEY.sub("", line) if in_account else line)
    return "\n".join(lines) + "\n"


def test_every_option_the_example_shows_is_taken_and_every_option_is_shown(
    tmp_path: Path,
) -> None:
    live = tmp_path / "config.toml"
    live.write_text(_uncommented(EXAMPLE.read_text()))
    config = load_config(live)
    shown: dict[str, set[str]] = {}
    for account in config.accounts.values():
        connector = load_connector(account.connector)
        validate_options(connector, account.options())  # raises on an unknown key
        shown.setdefault(account.connector, set()).update(account.options())
    assert set(shown) == {"email", "photos", "rss"}
    for connector_name, keys in shown.items():
        options = set(load_connector(connector_name).describe_options())
        missing = options - keys - {"password_env", "password_keyring"}  # named in a comment
        assert not missing, f"config.example.toml does not show {connector_name} {missing}"
