"""mlbus console: the web page where people see the platform and make their decisions.

`mlbus console [--port 8080]` runs it in the foreground; `mlbus up` starts it as the `console` service
(python -m services.cli.console). It reads the topics as the broker principal `console` (a reader of what
the screens show) and publishes the acts people sign in their browser (their private key never reaches it) as
that principal. Beyond 127.0.0.1 it serves HTTPS with a certificate from the local CA. Reference: docs/console.md."""
from __future__ import annotations

import argparse

from services.bus.context import Bus
from services.bus.settings import Settings

DEFAULT_PORT = 8080


def register(commands: argparse._SubParsersAction) -> None:
    console = commands.add_parser("console", help="serve the web console (overview, models, approvals, "
                                                  "deployments, monitoring, KPIs, audit)")
    console.add_argument("--port", type=int, default=None,
                         help=f"port (default MLBUS_CONSOLE_PORT, else {DEFAULT_PORT})")
    console.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1; any other is served over HTTPS with a "
                              "certificate from the local CA)")
    console.set_defaults(run=console_command)


def console_command(_bus: Bus, args: argparse.Namespace) -> int:
    from .serve import serve           # starlette, uvicorn, jinja2: loaded by the one command that needs them
    serve(Bus.from_settings(Settings.from_env().as_principal("console")), args.host, args.port)
    return 0
