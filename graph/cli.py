"""The `graph` command: `graph serve`, `graph mcp`, `graph schema`, `graph keys ...`;
`graph backup`, `graph restore` and `graph migrate` are in admin.py."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from graph.settings import Settings


class CommandError(Exception):
    """An expected failure of a command (a bad file, a bad argument): main() prints it as
    one line on stderr, `graph <command>: <message>`, and exits with status 1."""


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    pass


def cannot_start(reason: object) -> NoReturn:
    """One JSON log line saying which setting is wrong, and exit status 2."""
    logging.getLogger("graph.app").critical("Cannot start: %s", reason)
    logging.shutdown()  # the line is written before the process ends
    sys.exit(2)


def load_settings() -> Settings:
    """The settings with logging configured by them; a value that is not valid is
    cannot_start, naming each variable (logged at the defaults, as there are no others)."""
    from graph.errors import ConfigError
    from graph.settings import Settings
    from graph.telemetry.logs import configure

    try:
        settings = Settings.from_environment()
    except ConfigError as exc:
        configure(flush_seconds=0)
        cannot_start(exc)
    configure(settings.telemetry.log_level, settings.telemetry.log_flush_seconds)
    return settings


def check_listen_address(host: str) -> None:
    """cannot_start unless HOST names an address: uvicorn would start the application
    first, then log only the resolver's "Name or service not known"."""
    import socket

    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        cannot_start(f"HOST: cannot listen on {host!r}: {reason}")


def serve() -> None:
    import uvicorn

    from graph.app import create_app
    from graph.errors import ConfigError
    from graph.serving import BoundedHttpToolsProtocol, DrainingServer, QuietRefusal
    from graph.telemetry.logs import log_config

    settings = load_settings()
    check_listen_address(settings.server.host)
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully, which would end
    # the process by the signal; a graceful stop must exit with status 0 instead.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _ignore_signal)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        cannot_start(exc)
    config = uvicorn.Config(
        QuietRefusal(app),
        http=BoundedHttpToolsProtocol.bounded(
            settings.limits.max_header_bytes,
            settings.limits.header_timeout_seconds,
            settings.limits.body_timeout_seconds,
        ),
        host=settings.server.host,
        port=settings.server.port,
        log_config=log_config(settings.telemetry.log_level, settings.telemetry.log_flush_seconds),
        access_log=False,
        server_header=False,
        ws="none",  # no route speaks WebSocket (graph/serving.py answers an upgrade as HTTP)
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_seconds),
    )
    server = DrainingServer(
        config,
        begin_draining=app.state.begin_draining,
        delay=settings.server.shutdown_delay_seconds,
    )
    server.run()


def mcp() -> None:
    """The MCP tools over stdio; stdout is the protocol's, so logs go to stderr."""
    import asyncio

    from graph.errors import ConfigError
    from graph.mcp.stdio import StoreInUse, serve_stdio

    settings = load_settings()
    try:
        asyncio.run(serve_stdio(settings))
    except StoreInUse as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)
    except ConfigError as exc:  # found as it starts: the embedder, its dimension
        cannot_start(exc)


def print_schema() -> None:
    from graph.graphql.schema import schema_sdl

    write_stdout(schema_sdl())


def write_stdout(text: str) -> None:
    """text on stdout, a failed write (a full disk, a closed pipe) a CommandError."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        # Whatever is still buffered would fail again, with a traceback, at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CommandError(f"cannot write to stdout: {exc.strerror}") from None


def keys(args: argparse.Namespace) -> None:
    """API keys in the file the server reads (AUTH_API_KEYS_FILE, or --file)."""
    from pathlib import Path

    from graph.security.keys import ApiKeyFile
    from graph.security.principals import AuthConfigError

    path = args.file or os.environ.get("AUTH_API_KEYS_FILE")
    if not path:
        raise CommandError("set AUTH_API_KEYS_FILE or pass --file")
    keyfile = ApiKeyFile(Path(path))
    if args.action in ("list", "revoke") and not keyfile.path.exists():
        raise CommandError(f"no key file at {path}")
    try:
        if args.action == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            credential, key = keyfile.create(args.tenant, scopes)
            sys.stderr.write(
                f"Created key {key.id} for tenant {key.tenant} ({','.join(key.scopes)}). "
                "The key is shown once and cannot be recovered:\n"
            )
            try:
                write_stdout(credential + "\n")
            except CommandError:
                keyfile.revoke(key.id)  # a key nobody saw would be valid for ever
                raise CommandError(f"could not show the key, so key {key.id} is revoked") from None
        elif args.action == "list":
            write_stdout(
                "".join(
                    f"{key.id}\t{key.tenant}\t{','.join(key.scopes)}\t{key.created}\n"
                    for key in keyfile.list()
                )
            )
        elif not keyfile.revoke(args.id):
            raise CommandError(f"no key {args.id}")
        else:
            sys.stderr.write(f"Revoked key {args.id}\n")
    except (AuthConfigError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{exc.filename or path}: {exc.strerror}") from None


def settings_table() -> str:
    """Every setting, its default and its meaning, from graph/settings.py."""
    from graph.settings import Settings

    described = Settings.described()
    width = max(len(name) for name, _, _ in described)
    rows = [
        f"  {name:<{width}}  {meaning} (default: {default})" for name, default, meaning in described
    ]
    return "settings (environment variables, read once at start-up):\n" + "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="graph", description="The GraphQL memory server.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="start the server (settings from the environment)",
        description="Start the server. Every setting is an environment variable.",
        epilog=settings_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(run=lambda args: serve())
    commands.add_parser(
        "mcp", help="the MCP tools over stdio, as the open tenant (settings from the environment)"
    ).set_defaults(run=lambda args: mcp())
    commands.add_parser(
        "schema", help="print the GraphQL schema (SDL), as in schema.graphql"
    ).set_defaults(run=lambda args: print_schema())
    keys_parser = commands.add_parser("keys", help="create, list and revoke API keys")
    keys_parser.set_defaults(run=keys)
    file_help = "the key file (default: $AUTH_API_KEYS_FILE)"
    keys_parser.add_argument("--file", help=file_help)
    actions = keys_parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read,write,admin")
    listing = actions.add_parser(
        "list", help="the keys: id, tenant, scopes, created (never secrets)"
    )
    revoke = actions.add_parser("revoke", help="delete a key by its id")
    revoke.add_argument("id")
    for action in (create, listing, revoke):
        # Also after the action; SUPPRESS keeps a --file given before it.
        action.add_argument("--file", default=argparse.SUPPRESS, help=file_help)
    from graph import admin

    admin.add_commands(commands)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except CommandError as exc:
        where = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        sys.stderr.write(f"graph {where}: {exc}\n")
        sys.exit(1)
