"""Accounts kept in the Pod: ``importer account add|list|remove`` and their lookup.

An account stored in the Pod is an ``Importer`` item (``name``,
``connector``, ``config`` = the connector's options as JSON, never a secret)
linked ``-account->`` to the ``Account`` item that holds the credentials
(``secret``, ``accessToken``, ...).  The same pair is what a Pod hands the
importer when it starts it as a plugin, so both paths read it here.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ._credentials import BINDING, CREDENTIALS, owner_of, place_of_config
from .config import Config, ConfigError, format_validation_error
from .connector import Connector, load_connector, validate_options
from .model import derive_id
from .pod import PodClient
from .schema import Account, Importer, ImporterRun
from .secrets import SecretError, resolve_secret

__all__ = [
    "AccountError",
    "RunTarget",
    "add_account",
    "cmd_account",
    "find_importer",
    "list_accounts",
    "pod_account_named",
    "pod_accounts",
    "remove_account",
    "run_target",
]


class AccountError(Exception):
    """An Importer/Account pair in the Pod is incomplete or inconsistent (no secret in it)."""


@dataclass(frozen=True)
class RunTarget:
    """What one import run needs; ``account``/``importer_id`` set when the Pod holds them."""

    name: str
    options: BaseModel
    account: Account | None = None
    importer_id: str | None = None


# -- reading what the Pod holds ---------------------------------------------------


def _account_model(item: dict[str, Any]) -> Account:
    return Account.model_validate({k: v for k, v in item.items() if k in Account.model_fields})


def _parse_options(connector: Connector[Any], importer: dict[str, Any], name: str) -> BaseModel:
    raw = importer.get("config")
    if raw is None:
        raise AccountError(
            f"importer {name!r} has no config (the connector's options as JSON); "
            "add the account with 'importer account add'"
        )
    try:
        options = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise AccountError(f"importer {name!r}: config is not valid JSON ({exc})") from None
    if not isinstance(options, dict):
        raise AccountError(f"importer {name!r}: config must be a JSON object")
    try:
        return validate_options(connector, options)
    except ValidationError as exc:
        raise AccountError(
            format_validation_error(exc, f"importer {name!r}", prefix="config")
        ) from None


async def _edge_target(
    client: PodClient, item_id: str, edge: str, item_type: str
) -> dict[str, Any] | None:
    for found in await client.get_edges(item_id, direction="Outgoing", expand_items=True):
        target = found.get("item") or {}
        if (
            found.get("name") == edge
            and target.get("type") == item_type
            and not target.get("deleted")
        ):
            return dict(target)
    return None


async def run_target(
    client: PodClient, importer: dict[str, Any], connector: Connector[Any]
) -> RunTarget:
    """The run an Importer item describes: its options and its Account (via ``-account->``)."""
    name = str(importer.get("name") or importer["id"])
    if importer.get("connector") != connector.name:
        raise AccountError(
            f"importer {name!r} is for the {importer.get('connector')!r} connector, "
            f"not {connector.name!r}"
        )
    options = _parse_options(connector, importer, name)
    account = await _edge_target(client, importer["id"], "account", Account.item_type)
    if account is None:
        raise AccountError(
            f"importer {name!r} has no account (no 'account' edge to an Account item)"
        )
    return RunTarget(name, options, _account_model(account), importer["id"])


async def find_importer(client: PodClient, name: str) -> dict[str, Any] | None:
    """The live Importer item called ``name``, if any."""
    found = await client.search({"type": Importer.item_type, "name": name, "deleted": False})
    return found[0] if found else None


async def pod_account_named(
    client: PodClient, connector: Connector[Any], name: str
) -> RunTarget | None:
    """The Pod account ``name`` for ``connector``; None if the Pod has no such account."""
    importer = await find_importer(client, name)
    if importer is None:
        return None
    try:
        return await run_target(client, importer, connector)
    except AccountError as exc:
        raise _in_pod(exc) from None


async def pod_accounts(client: PodClient, connector: Connector[Any]) -> list[RunTarget]:
    """Every account added with ``account add`` for ``connector`` (those with a config)."""
    targets = []
    flt = {"type": Importer.item_type, "connector": connector.name, "deleted": False}
    async for page in client.search_pages(flt):
        for importer in page:
            if importer.get("config") is None:
                continue  # written by a run of a config-file account
            try:
                targets.append(await run_target(client, importer, connector))
            except AccountError as exc:
                raise _in_pod(exc) from None
    return sorted(targets, key=lambda t: t.name)


def _in_pod(exc: AccountError) -> ConfigError:
    """A stored account's fault as a configuration error, a line per problem found."""
    lines = [f"Pod: {line}" for line in str(exc).splitlines()]
    return ConfigError("\n".join(lines), lines=lines)


# -- add, list, remove ---------------------------------------------------------------


def _needs_secret(connector: Connector[Any], options: BaseModel) -> bool:
    check = getattr(connector, "needs_secret", None)
    return bool(check(options)) if callable(check) else False


def _options(connector: Connector[Any], name: str, raw: dict[str, Any]) -> BaseModel:
    try:
        return validate_options(connector, raw)
    except ValidationError as exc:
        raise ConfigError.invalid(exc, "command line", prefix=f"account {name}") from None


async def _declare(client: PodClient) -> None:
    types = (Account, Importer, ImporterRun)
    await client.add_schema({t.item_type: {"properties": t.pod_schema()} for t in types})


async def add_account(
    client: PodClient,
    connector: Connector[Any],
    name: str,
    raw_options: dict[str, Any],
    secret: str | None,
) -> RunTarget:
    """Create (or update) the Account and its Importer; the secret goes on the Account only.

    The secret is bound (``credentialsFor``) to the server and login the
    options name; tokens the Account kept for another place are erased with it.
    """
    options = _options(connector, name, raw_options)
    account = connector.account(options, name)
    if account.isMe is None:
        account.isMe = True
    account_id = account.ensure_id()
    importer_id = derive_id(Importer.item_type, connector.name, account_id)
    config = json.dumps(options.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
    importer = Importer(
        id=importer_id, name=name, connector=connector.name, config=config, externalId=account_id
    )
    same_name = await find_importer(client, name)
    if same_name is not None and same_name["id"] != importer_id:
        raise ConfigError(
            f"an account named {name!r} exists already (connector "
            f"{same_name.get('connector')!r}); remove it first or choose another name"
        )
    await _declare(client)
    found = await client.bulk(search=[{"id": account_id}, {"id": importer_id}])
    account_found, importer_found = found.search_results
    _refuse_replacing(importer_found, name, account, connector)
    create: list[dict[str, Any]] = []
    update: list[dict[str, Any]] = []
    place = connector.credentials_for(options)
    if account_found:
        if secret is not None:
            stored = _stored_secret(account_found[0], importer_found, connector, secret, place)
            update.append(stored)
    else:
        item = account.to_pod()
        if secret is not None:
            item["secret"] = secret
            if place is not None:
                item[BINDING] = place
        create.append(item)
    edges = [{"_source": importer_id, "_name": "account", "_target": account_id}]
    if importer_found:
        update.append({**importer.to_pod(), "deleted": False})
        edge = await _edge_target(client, importer_id, "account", Account.item_type)
        if edge is not None and edge["id"] == account_id:
            edges = []
    else:
        create.append(importer.to_pod())
    await client.bulk(
        create_items=create or None, update_items=update or None, create_edges=edges or None
    )
    return RunTarget(name, options, account, importer_id)


def _stored_secret(
    account: dict[str, Any],
    importers: list[dict[str, Any]],
    connector: Connector[Any],
    secret: str,
    place: str | None,
) -> dict[str, Any]:
    """The Account update that stores ``secret`` for ``place``."""
    config = next((i.get("config") for i in importers if not i.get("deleted")), None)
    update = {"id": account["id"], "secret": secret, BINDING: place}
    if owner_of(account, place_of_config(connector, config)) != place:
        update.update(accessToken=None, refreshToken=None)
    return update


def _refuse_replacing(
    found: list[dict[str, Any]], name: str, account: Account, connector: Connector[Any]
) -> None:
    """Adding a second account of one Account item would silently take over the first.

    The Importer's id comes from the Account's, and the secret lives on the
    Account: its config and its password would both become the new one's.
    """
    for importer in found:
        other = importer.get("name")
        if importer.get("deleted") or importer.get("config") is None or other == name:
            continue
        raise ConfigError(
            f"account {other!r} already imports {account.handle} with the {connector.name} "
            f"connector, and the Pod keeps one such account (and one stored secret) per "
            f"address: adding {name!r} would replace it. Remove {other!r} first "
            "('importer account remove'), or keep one of the two in the config file "
            "with its own password source"
        )


@dataclass(frozen=True)
class AccountRow:
    """One line of ``account list`` (no credential in it)."""

    name: str
    connector: str
    handle: str
    stored: bool
    """Added with ``account add`` (else a config-file account's Importer)."""
    last_status: str | None
    last_date: int | None


async def list_accounts(client: PodClient) -> list[AccountRow]:
    """Every live Importer in the Pod, with its account's handle and its last run."""
    rows = []
    async for page in client.search_pages({"type": Importer.item_type, "deleted": False}):
        for importer in page:
            account = await _edge_target(client, importer["id"], "account", Account.item_type)
            runs = [
                edge["item"]
                for edge in await client.get_edges(importer["id"], direction="Incoming")
                if edge.get("name") == "importer"
            ]
            last = max(
                runs,
                key=lambda r: r.get("startDate") or r.get("dateCreated") or 0,
                default=None,
            )
            rows.append(
                AccountRow(
                    name=str(importer.get("name") or importer["id"]),
                    connector=str(importer.get("connector") or "?"),
                    handle=str((account or {}).get("handle") or "?"),
                    stored=importer.get("config") is not None,
                    last_status=None if last is None else last.get("status") or "requested",
                    last_date=None
                    if last is None
                    else last.get("endDate") or last.get("startDate") or last.get("dateCreated"),
                )
            )
    return sorted(rows, key=lambda r: (r.connector, r.name))


async def remove_account(client: PodClient, name: str) -> str:
    """Delete the Importer ``name``; erase the Account's credentials unless another uses it.

    The imported data and the Account item stay.  Returns what was done, in words.
    """
    importer = await find_importer(client, name)
    if importer is None:
        raise ConfigError(f"no account named {name!r} in the Pod")
    await client.delete_item(importer["id"])
    account = await _edge_target(client, importer["id"], "account", Account.item_type)
    erased = ""
    if account is not None and any(account.get(k) for k in CREDENTIALS):
        others = [
            other
            for other in await client.search(
                {"type": Importer.item_type, "externalId": account["id"], "deleted": False}
            )
            if other["id"] != importer["id"]
        ]
        if not others:
            erase = dict.fromkeys((*CREDENTIALS, BINDING))
            await client.update_item({"id": account["id"], **erase})
            erased = "; its stored credentials are erased"
    return (
        f"removed account {name!r} (its Importer item is deleted{erased}); "
        "the data it imported and its Account item stay in the Pod"
    )


# -- the command line -----------------------------------------------------------------


def _key_values(pairs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            values[key] = json.loads(value)
        except ValueError:
            values[key] = value
    return values


def _secret(args: argparse.Namespace, connector: Connector[Any], options: BaseModel) -> str | None:
    what = f"account {args.name}: secret"
    if args.secret_env or args.secret_command:
        try:
            return resolve_secret(what=what, env=args.secret_env, command=args.secret_command)
        except SecretError as exc:
            raise ConfigError(str(exc)) from None
    if not _needs_secret(connector, options):
        return None
    if not sys.stdin.isatty():
        raise ConfigError(
            f"{what}: the {connector.name} connector needs a password for this account; "
            "give --secret-env VAR or --secret-command CMD, or run on a terminal to be asked"
        )
    value = getpass.getpass(f"Password for {args.name}: ")
    if not value:
        raise ConfigError(f"{what}: no password given")
    return value


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return time.strftime(" %Y-%m-%d %H:%M", time.localtime(ms / 1000))


async def cmd_account(args: argparse.Namespace, config: Config) -> int:
    """``importer account add|list|remove`` against the configured Pod."""
    from ._connect import open_pod

    if args.account_command == "add":
        connector = load_connector(args.connector)
        raw = _key_values(args.option)
        options = _options(connector, args.name, raw)
        secret = _secret(args, connector, options)
        async with open_pod(config) as client:
            target = await add_account(client, connector, args.name, raw, secret)
        handle = target.account.handle if target.account is not None else "?"
        stored = " (secret stored on the Account item)" if secret is not None else ""
        print(f"added account {args.name!r}: {connector.name} {handle}{stored}")
        print(f"run it with: importer run {connector.name} --account {args.name}")
        return 0
    async with open_pod(config) as client:
        if args.account_command == "remove":
            print(await remove_account(client, args.name))
            return 0
        rows = await list_accounts(client)
    if not rows:
        print("no accounts in the Pod (add one with 'importer account add CONNECTOR NAME')")
    for row in rows:
        origin = "" if row.stored else "  (config file)"
        last = f"last run: {row.last_status}{_when(row.last_date)}" if row.last_status else ""
        print(f"{row.name}  {row.connector}  {row.handle}  {last or 'never run'}{origin}")
    return 0
