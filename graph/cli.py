"""The `graph` command: `graph serve`, `graph schema`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    pass


def serve() -> None:
    import uvicorn

    from graph.app import create_app
    from graph.logs import configure, log_config
    from graph.settings import Settings

    settings = Settings()
    configure(settings.log_level)
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully, which would end
    # the process by the signal; a graceful stop must exit with status 0 instead.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _ignore_signal)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=log_config(settings.log_level),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


def print_schema() -> None:
    from graph.schema import schema_sdl

    sys.stdout.write(schema_sdl())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="graph", description="The GraphQL memory server.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="start the server (settings from the environment)")
    commands.add_parser("schema", help="print the GraphQL schema (SDL), as in schema.graphql")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
    else:
        print_schema()
