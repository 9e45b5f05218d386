"""The console is a service of its own (python -m services.console); `mlbus console` runs that same process in
its place, with the options given to it."""
from __future__ import annotations

import sys

import pytest

from services.bus.supervision import SERVICES
from services.cli.console_cmd import console_argv
from services.cli.main import parser as cli_parser
from services.console.__main__ import parser as console_parser


@pytest.mark.parametrize("given", [[], ["--port", "9000"], ["--host", "0.0.0.0", "--port", "8443"]])
def test_mlbus_console_runs_the_console_service_with_its_options(given):
    cli_args = cli_parser().parse_args(["console", *given])
    argv = console_argv(cli_args)
    assert argv[:3] == [sys.executable, "-m", "services.console"]
    console_args = console_parser().parse_args(argv[3:])
    assert (console_args.host, console_args.port) == (cli_args.host, cli_args.port)
    assert console_args.host == ("0.0.0.0" if "0.0.0.0" in given else "127.0.0.1")


def test_mlbus_up_starts_the_console_package():
    assert SERVICES["console"] == "services.console"
