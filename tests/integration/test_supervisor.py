"""mlbus up / status / down with a service of the user's own, on the real broker."""
import json
import os
import signal

from tests.support.polling import wait_until
from tests.support.traffic import publish_mixed


def status(cli) -> dict:
    result = cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["service"]: row for row in json.loads(result.stdout)}


def test_up_status_down_and_restart_after_a_crash(bus, cli):
    up = cli("up", "relay=tests.support.relay_service")
    assert up.returncode == 0, up.stderr
    assert "relay: started" in up.stderr
    try:
        publish_mixed(bus, good=200, bad=0)
        relay = wait_until(lambda: (s := status(cli)["relay"])["lag"] == 0 and s["service_pid"] and s,
                           timeout=120, message="relay running with lag 0")
        assert relay["state"] == "running" and relay["lag_by_topic"] == {"inference.requests": 0}

        os.kill(relay["service_pid"], signal.SIGKILL)        # the keep-alive must bring it back
        wait_until(lambda: status(cli)["relay"]["service_pid"] not in (None, relay["service_pid"]),
                   timeout=60, message="a restarted relay")
        publish_mixed(bus, good=50, bad=0)
        wait_until(lambda: status(cli)["relay"]["lag"] == 0, timeout=120, message="restarted relay catching up")
        assert status(cli)["relay"]["restarts"] == 1
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert "relay: stopped" in down.stderr
    assert status(cli)["relay"]["state"] == "stopped"


def test_up_refuses_an_unknown_service(bus, cli):
    result = cli("up", "no-such-service")
    assert result.returncode == 2 and "unknown service 'no-such-service'" in result.stderr
