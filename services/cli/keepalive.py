"""Run one service and restart it when it crashes (what systemd or Kubernetes do in production).

    python -m services.cli.keepalive NAME MODULE PID_FILE

A clean exit (0) ends it; a crash restarts the service after a growing pause (1 s … 30 s) and counts the
restart in PID_FILE's sibling `.restarts` file (which `mlbus status` and the console show). SIGTERM
is passed on to the service, which finishes its batch, commits and exits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from services.bus.supervision import restarts_file

MAX_BACKOFF_S = 30.0


def main() -> int:
    name, module, child_pid_file = sys.argv[1], sys.argv[2], sys.argv[3]
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = 0.5      # doubled before the first restart: 1 s
    restarts = 0
    if os.path.exists(restarts_file(child_pid_file)):
        os.unlink(restarts_file(child_pid_file))      # counted since this keep-alive started
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", module], env={**os.environ, "MLBUS_RESTARTS": str(restarts)})
        with open(child_pid_file, "w") as out:
            out.write(f"{child.pid}\n")
        code = child.wait()
        if code == 0 or stopping:
            return code
        backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, MAX_BACKOFF_S)
        restarts += 1
        with open(restarts_file(child_pid_file), "w") as out:
            out.write(f"{restarts}\n")
        print(f'{{"event":"service crashed, restarting","service":"{name}","exit_code":{code},'
              f'"restart_in_s":{backoff}}}', flush=True)
        time.sleep(backoff)
    return 0


if __name__ == "__main__":
    sys.exit(main())
