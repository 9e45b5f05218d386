"""The console as a service (`mlbus up` starts it, `mlbus console` runs it in the foreground):
python -m services.console [--port N] [--host H]."""
import argparse

from services.bus.context import Bus

from .serve import serve


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="python -m services.console", description="the mlbus web console")
    found.add_argument("--port", type=int, default=None,
                       help="port (default MLBUS_CONSOLE_PORT, else 8080)")
    found.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; any other is served over HTTPS with a "
                            "certificate from the local CA)")
    return found


def main() -> None:
    args = parser().parse_args()
    serve(Bus.from_env(principal="console"), args.host, args.port)


if __name__ == "__main__":
    main()
