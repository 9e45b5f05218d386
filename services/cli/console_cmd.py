"""mlbus console: the web console (services/console, a service of its own) in the foreground."""
from __future__ import annotations

import argparse
import os
import sys

from services.bus.context import Bus


def register(commands: argparse._SubParsersAction) -> None:
    console = commands.add_parser("console", help="serve the web console (overview, models, approvals, "
                                                  "deployments, monitoring, KPIs, audit)")
    console.add_argument("--port", type=int, default=None,
                         help="port (default MLBUS_CONSOLE_PORT, else 8080)")
    console.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1; any other is served over HTTPS with a "
                              "certificate from the local CA)")
    console.set_defaults(run=console_command)


def console_command(_bus: Bus, args: argparse.Namespace) -> int:
    """The console's process in place of this one (exec): signals reach it directly — Ctrl-C here, SIGTERM from
    `docker stop` where `mlbus console` is a container's entrypoint — and its exit code is the command's."""
    os.execv(sys.executable, console_argv(args))
    return 1            # not reached: execv returns only by raising


def console_argv(args: argparse.Namespace) -> list[str]:
    port = [] if args.port is None else ["--port", str(args.port)]
    return [sys.executable, "-m", "services.console", "--host", args.host, *port]
