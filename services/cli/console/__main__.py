"""The console as a service (`mlbus up` starts it): python -m services.cli.console [--port N] [--host H]."""
import argparse

from services.bus.context import Bus

from .serve import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.cli.console")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve(Bus.from_env(principal="console"), args.host, args.port)


if __name__ == "__main__":
    main()
