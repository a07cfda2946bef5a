"""The command line: ``importer run``, ``account``, ``status``, ``connectors``, ``pod ...``.

Exit codes (also in the README): 0 all records imported or deliberately
skipped; 1 a run failed; 2 bad usage or configuration; 75 another run for
the same account holds the lock (nothing was imported); 130 interrupted
(Ctrl-C, SIGINT); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from . import __version__
from ._accounts import RunTarget
from ._connect import open_pod
from ._logging import escape_controls, setup_logging
from ._malloc import tune_malloc
from ._plugin import PluginSetupError, is_plugin_mode, run_as_plugin
from .config import AccountConfig, Config, ConfigError, load_config
from .connector import (
    Connector,
    ConnectorNotFound,
    load_connector,
    load_connectors,
    validate_options,
)
from .engine import RunLocked, RunResult, run_import
from .pod import KeyFileError, PodError
from .secrets import SecretError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75

ADHOC_PASSWORD_ENV = "IMPORTER_IMAP_PASSWORD"

log = logging.getLogger("importer")


class UsageError(Exception):
    pass


class Interrupted(Exception):
    """A run stopped by a signal, after its run item said so; exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- argument parsing ---------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="importer",
        description="Import your data from the services that hold it into your Pod.",
    )
    parser.add_argument("--version", action="version", version=f"importer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="import new data for a connector's accounts")
    run.add_argument("connector", help="connector name, e.g. email")
    _common(run)
    run.add_argument(
        "--account", help="only this account (a section under [accounts], or a Pod account)"
    )
    run.add_argument("--full-refresh", action="store_true", help="ignore checkpoints, rescan all")
    run.add_argument("--limit", type=int, metavar="N", help="at most N source records per account")
    run.add_argument("--dry-run", action="store_true", help="report what would be imported")
    run.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a connector option for an ad-hoc account (repeatable)",
    )
    adhoc = run.add_argument_group("ad-hoc email account (no config file needed)")
    adhoc.add_argument("--mbox", type=Path, metavar="PATH")
    adhoc.add_argument("--maildir", type=Path, metavar="PATH")
    adhoc.add_argument("--imap-host", metavar="HOST")
    adhoc.add_argument("--imap-user", metavar="USER")
    adhoc.add_argument("--imap-port", type=int, metavar="PORT")
    adhoc.add_argument("--imap-security", choices=["tls", "starttls", "none"])

    check = sub.add_parser("check", help="verify an account's credentials and reachability")
    check.add_argument("connector", help="connector name, e.g. email")
    _common(check)
    check.add_argument("--account", help="only this account")
    check.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    for flag in ("--mbox", "--maildir"):
        check.add_argument(flag, type=Path, metavar="PATH")
    for flag in ("--imap-host", "--imap-user", "--imap-security"):
        check.add_argument(flag)
    check.add_argument("--imap-port", type=int)

    _account_parser(sub)

    status = sub.add_parser("status", help="last run, outcome and counts per account")
    _common(status)

    connectors = sub.add_parser("connectors", help="installed connectors and their options")
    _common(connectors)

    pod = sub.add_parser("pod", help="the local Pod")
    pod_sub = pod.add_subparsers(dest="pod_command", required=True)
    serve = pod_sub.add_parser("serve", help="serve the local Pod over HTTP")
    _common(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default loopback)"
    )
    serve.add_argument("--port", type=_port, default=3030, help="TCP port (default 3030)")
    serve.add_argument("--data-dir", type=Path, help="the Pod's data directory")
    serve.add_argument(
        "--no-plugins",
        dest="plugins",
        action="store_false",
        help="do not start importers when run items (ImporterRun, PluginRun) are created",
    )
    search = pod_sub.add_parser("search", help="print matching items as JSON lines")
    _common(search)
    search.add_argument("--type", dest="item_type", help="item type, e.g. EmailMessage")
    search.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="property equality filter (repeatable; values parsed as JSON when they can be)",
    )
    search.add_argument("--limit", type=int, metavar="N")
    search.add_argument("--desc", action="store_true", help="newest first")
    return parser


def _account_parser(sub: Any) -> None:
    account = sub.add_parser("account", help="accounts kept in the Pod (credentials included)")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    add = account_sub.add_parser("add", help="store an account (Account + Importer items)")
    add.add_argument("connector", help="connector name, e.g. email")
    add.add_argument("name", help="the account's name, e.g. personal")
    _common(add)
    add.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--secret-env", metavar="VAR", help="read the password from $VAR")
    secret.add_argument("--secret-command", metavar="CMD", help="read it from CMD's output")
    listing = account_sub.add_parser("list", help="accounts in the Pod and their last run")
    _common(listing)
    remove = account_sub.add_parser("remove", help="delete an account (imported data stays)")
    remove.add_argument("name")
    _common(remove)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="configuration file (TOML)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log line format"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _port(text: str) -> int:
    """A TCP port to listen on; argparse turns the ValueError into a usage error."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return port


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        values[key] = _parse_value(value)
    return values


# -- accounts -------------------------------------------------------------------


def _adhoc_account(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    options = _key_values(args.option, "--option")
    if args.mbox:
        options.update(source="mbox", path=str(args.mbox))
        name = f"mbox:{args.mbox.name}"
    elif args.maildir:
        options.update(source="maildir", path=str(args.maildir))
        name = f"maildir:{args.maildir.name}"
    elif args.imap_host or args.imap_user:
        if not (args.imap_host and args.imap_user):
            raise UsageError("--imap-host and --imap-user go together")
        options.update(source="imap", host=args.imap_host, username=args.imap_user)
        if args.imap_port:
            options["port"] = args.imap_port
        if args.imap_security:
            options["security"] = args.imap_security
        if not any(k.startswith("password") for k in options):
            if not os.environ.get(ADHOC_PASSWORD_ENV):
                if not sys.stdin.isatty():
                    raise UsageError(
                        f"no password: set {ADHOC_PASSWORD_ENV} or run on a terminal to be asked"
                    )
                os.environ[ADHOC_PASSWORD_ENV] = getpass.getpass(
                    f"IMAP password for {args.imap_user}: "
                )
            options["password_env"] = ADHOC_PASSWORD_ENV
        name = f"imap:{args.imap_user}"
    elif options:
        name = "adhoc"
    else:
        return None
    if args.connector != "email" and (args.mbox or args.maildir or args.imap_host):
        raise UsageError("--mbox, --maildir and --imap-* are options of the email connector")
    return name, options


def _validated_options(
    connector: Connector[Any], name: str, options: dict[str, Any], source: str
) -> BaseModel:
    try:
        return validate_options(connector, options)
    except ValidationError as exc:
        raise ConfigError.invalid(exc, source, prefix=f"accounts.{name}") from None


def _accounts_to_run(
    args: argparse.Namespace, config: Config, connector: Connector[Any]
) -> list[tuple[str, BaseModel]]:
    source = str(config.source or "command line")
    adhoc = _adhoc_account(args)
    if adhoc is not None:
        name, options = adhoc
        return [(name, _validated_options(connector, name, options, "command line"))]
    accounts: dict[str, AccountConfig] = config.accounts_for(args.connector)
    if args.account:
        if args.account not in config.accounts:
            known = ", ".join(sorted(accounts)) or "none"
            raise ConfigError(
                f"{source}: no account {args.account!r} (accounts for {args.connector}: {known})"
            )
        accounts = {args.account: config.accounts[args.account]}
        if accounts[args.account].connector != args.connector:
            raise ConfigError(
                f"{source}: accounts.{args.account}.connector is "
                f"{accounts[args.account].connector!r}, not {args.connector!r}"
            )
    if not accounts:
        raise ConfigError(
            f"{source}: no accounts use the {args.connector} connector "
            f'(add an [accounts.NAME] section with connector = "{args.connector}")'
        )
    return [
        (name, _validated_options(connector, name, acc.options(), source))
        for name, acc in accounts.items()
    ]


# -- commands -------------------------------------------------------------------


async def _run_targets(
    args: argparse.Namespace, config: Config, connector: Connector[Any], client: Any
) -> list[RunTarget]:
    """Config-file and ad-hoc accounts as before, plus the Pod's (``importer account add``)."""
    from ._accounts import pod_account_named, pod_accounts

    adhoc = args.mbox or args.maildir or args.imap_host or args.imap_user or args.option
    if adhoc or (args.account and args.account in config.accounts):
        return [RunTarget(n, o) for n, o in _accounts_to_run(args, config, connector)]
    if args.account:
        found = await pod_account_named(client, connector, args.account)
        if found is not None:
            return [found]
        known = sorted(config.accounts_for(args.connector))
        known += [t.name for t in await pod_accounts(client, connector)]
        raise ConfigError(
            f"{config.source or 'command line'}: no account {args.account!r} in the "
            f"configuration or the Pod (accounts for {args.connector}: "
            f"{', '.join(known) or 'none'})"
        )
    stored = await pod_accounts(client, connector)
    if stored and not config.accounts_for(args.connector):
        return stored
    return [RunTarget(n, o) for n, o in _accounts_to_run(args, config, connector)] + stored


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and what a service manager (systemd) or the local Pod sends to stop a run."""


@dataclass
class _Stop:
    """Which signal stopped the run, if one did."""

    signum: int | None = None

    def reason(self) -> str | None:
        """What the run item records as its error."""
        if self.signum is None:
            return None
        if self.signum == signal.SIGINT:
            return "interrupted by the user (SIGINT)"
        return f"stopped by {signal.Signals(self.signum).name}"


async def _cancel_on_signal(
    stop: _Stop, scope: anyio.CancelScope, *, task_status: Any = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM, so a run can record that it
    stopped.  Leaving the receiver restores the default handlers: a second signal
    ends the process at once (``KeyboardInterrupt``, or SIGTERM's default).

    A signal ignored when the run starts stays ignored: a shell starts a
    background job (``importer run ... &``) with SIGINT ignored, so that a
    Ctrl-C meant for the foreground does not stop it."""
    handled = [s for s in _STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    if threading.current_thread() is not threading.main_thread() or not handled:
        task_status.started()
        return  # signals reach the main thread only
    with anyio.open_signal_receiver(*handled) as signals:
        task_status.started()
        async for signum in signals:
            stop.signum = signum
            scope.cancel()
            return


async def _until_signalled(work: Callable[[_Stop], Awaitable[int]]) -> int:
    """``work``, cancelled by SIGINT or SIGTERM; then :class:`Interrupted`.

    A signal that ``work`` finished in spite of (it came during a shielded last
    step, such as the run item's final update) stopped nothing: the work's own
    exit code stands, so a completed import is not reported as a failure."""
    stop = _Stop()
    code = EXIT_FAILED
    finished = False
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(_cancel_on_signal, stop, tg.cancel_scope)
        try:
            code = await work(stop)
            finished = True
        except Exception as exc:  # raised as it is, not in a task group's ExceptionGroup
            failure = exc
        tg.cancel_scope.cancel()
    if stop.signum is not None and not finished:
        raise Interrupted(stop.signum)
    if failure is not None:
        raise failure
    return code


async def _cmd_run(args: argparse.Namespace, config: Config) -> int:
    return await _until_signalled(lambda stop: _run_accounts(args, config, stop))


async def _run_accounts(args: argparse.Namespace, config: Config, stop: _Stop) -> int:
    connector = load_connector(args.connector)
    # A bad account section is reported before anything is opened or created.
    for name, account in config.accounts_for(args.connector).items():
        _validated_options(connector, name, account.options(), str(config.source))
    settings = config.engine.settings()
    lock_dir = config.data_dir() / "locks"
    exit_code = EXIT_OK
    from ._progress import progress_reporter

    if is_plugin_mode(os.environ):
        with progress_reporter(args.connector, args.log_format) as on_progress:
            return await run_as_plugin(
                connector,
                os.environ,
                lock_dir=lock_dir,
                settings=settings,
                full_refresh=args.full_refresh,
                limit=args.limit,
                dry_run=args.dry_run,
                report=lambda result: _print_summary(result, args.log_format),
                on_progress=on_progress,
                cancel_reason=stop.reason,
            )
    async with open_pod(config) as client:
        for target in await _run_targets(args, config, connector, client):
            name, options = target.name, target.options
            with progress_reporter(name, args.log_format) as on_progress:
                try:
                    result: RunResult = await run_import(
                        client,
                        connector,
                        options,
                        name,
                        lock_dir=lock_dir,
                        settings=settings,
                        full_refresh=args.full_refresh,
                        limit=args.limit,
                        dry_run=args.dry_run,
                        on_progress=on_progress,
                        account=target.account,
                        importer_id=target.importer_id,
                        cancel_reason=stop.reason,
                    )
                except RunLocked as exc:
                    log.error("account %s: %s", name, exc)
                    exit_code = max(exit_code, EXIT_LOCKED)
                    continue
            _print_summary(result, args.log_format)
            if result.error:
                exit_code = EXIT_FAILED if exit_code != EXIT_LOCKED else exit_code
    return exit_code


def _print_summary(result: RunResult, log_format: str) -> None:
    if log_format == "json":
        print(
            json.dumps(
                {
                    "account": result.account_name,
                    "status": result.status,
                    "created": result.stats.created,
                    "updated": result.stats.updated,
                    "unchanged": result.stats.unchanged,
                    "edges": result.stats.edges_created,
                    "files": result.stats.files_uploaded,
                    "skipped": result.skip_count,
                    "retries": result.retries,
                    "error": result.error,
                    "dry_run": result.dry_run,
                }
            )
        )
    else:
        print(escape_controls(result.summary()))


def _cmd_check(args: argparse.Namespace, config: Config) -> int:
    from .context import RunContext

    connector = load_connector(args.connector)
    failed = False
    for name, options in _accounts_to_run(args, config, connector):
        ctx: RunContext[Any] = RunContext(
            options=options,
            account=connector.account(options, name),
            account_name=name,
            connector_name=connector.name,
        )
        try:
            connector.check(ctx)
        except Exception as exc:
            print(escape_controls(f"{name}: FAILED: {_one_line(exc)}"))
            failed = True
        else:
            print(f"{name}: ok")
    return EXIT_FAILED if failed else EXIT_OK


async def _cmd_status(args: argparse.Namespace, config: Config) -> int:
    from ._status import all_importers, importer_id, importer_status

    connectors = load_connectors()
    async with open_pod(config) as client:
        importers = await all_importers(client)
        known = {item["id"] for item in importers}
        for name, acc in config.accounts.items():
            connector = connectors.get(acc.connector)
            if connector is None:
                print(f"{name}: connector {acc.connector!r} is not installed")
                continue
            options = _validated_options(connector, name, acc.options(), str(config.source))
            account_id = connector.account(options, name).ensure_id()
            if importer_id(connector.name, account_id) not in known:
                print(f"{connector.name}:{name}: never imported")
        for item in importers:  # names and errors come from the Pod: one line each
            print(escape_controls(await importer_status(client, item)))
        if not importers and not config.accounts:
            print("nothing imported yet, and no accounts configured")
    return EXIT_OK


def _cmd_connectors(args: argparse.Namespace) -> int:
    for name, connector in sorted(load_connectors().items()):
        doc = (type(connector).__doc__ or "").strip().splitlines()
        print(f"{name}: {doc[0] if doc else ''}")
        for option, schema in connector.describe_options().items():
            kind = schema.get("type") or " | ".join(
                str(x.get("type", x.get("const", "?"))) for x in schema.get("anyOf", [])
            )
            default = f" = {schema['default']!r}" if "default" in schema else ""
            print(f"    {option}: {kind}{default}")
    return EXIT_OK


async def _cmd_pod_search(args: argparse.Namespace, config: Config) -> int:
    flt: dict[str, Any] = _key_values(args.where, "--where")
    if args.item_type:
        flt["type"] = args.item_type
    if args.desc:
        flt["_sortOrder"] = "Desc"
    async with open_pod(config) as client:
        shown = 0
        async for page in client.search_pages(flt):
            for item in page:
                if args.limit is not None and shown >= args.limit:
                    return EXIT_OK
                print(json.dumps(item, ensure_ascii=False, sort_keys=True))
                shown += 1
    return EXIT_OK


def _cmd_pod_serve(args: argparse.Namespace, config: Config) -> int:
    from .pod.local import ListenError, serve

    data_dir = args.data_dir or config.data_dir()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: the Pod is reachable from other machines", args.host)
    try:
        serve(data_dir, host=args.host, port=args.port, plugins=args.plugins)
    except ListenError as exc:
        _error_line(str(exc))
        return EXIT_FAILED
    return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "connectors":
        return _cmd_connectors(args)
    config = load_config(args.config)
    if args.command == "run":
        return anyio.run(_cmd_run, args, config)
    if args.command == "check":
        return _cmd_check(args, config)
    if args.command == "status":
        return anyio.run(_cmd_status, args, config)
    if args.command == "account":
        from ._accounts import cmd_account

        return anyio.run(cmd_account, args, config)
    if args.command == "pod" and args.pod_command == "serve":
        return _cmd_pod_serve(args, config)
    if args.command == "pod" and args.pod_command == "search":
        return anyio.run(_cmd_pod_search, args, config)
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    tune_malloc()  # before any thread allocates
    args = _parser().parse_args(argv)
    setup_logging(args.log_format, verbose=args.verbose)
    started = time.monotonic()
    try:
        code = _dispatch(args)
    except ConfigError as exc:
        for line in exc.lines:
            _error_line(line)
        return EXIT_USAGE
    except (UsageError, ConnectorNotFound, KeyFileError, PluginSetupError) as exc:
        _error_line(str(exc))
        return EXIT_USAGE
    except (SecretError, PodError) as exc:
        _error_line(str(exc))
        return EXIT_FAILED
    except Interrupted as exc:
        print(f"importer: interrupted ({exc})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("importer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a connector's own failure: one line, no traceback
        if args.verbose:
            raise
        _error_line(_one_line(exc))
        return EXIT_FAILED
    log.debug("finished in %.1fs", time.monotonic() - started)
    return code


def _error_line(message: str) -> None:
    """``importer: message`` as one line: a path or name in it may hold a line
    break or a terminal escape, shown escaped as log lines show them."""
    print(f"importer: {escape_controls(message)}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return message if message else type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
