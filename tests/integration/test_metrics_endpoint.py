"""A process's metrics endpoint (a local HTTP server, no broker): served in Prometheus text, counted per topic and
outcome; a port already taken is said, not fatal."""
import socket
import urllib.request

from services.bus.metrics import ServiceMetrics
from tests.support.processes import free_port


def test_metrics_are_served_in_prometheus_text_and_a_taken_port_is_reported():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert "metrics not served on port" in ServiceMetrics("x").serve(port)
    metrics = ServiceMetrics("scorer")
    metrics.handled("inference.requests", "handled", 3)
    metrics.handled("inference.requests", "dead_lettered")
    free = free_port()
    assert metrics.serve(free) is None and metrics.serve(free) is None          # once
    page = urllib.request.urlopen(f"http://127.0.0.1:{free}/metrics", timeout=5).read().decode()
    assert 'mlbus_messages_total{outcome="handled",service="scorer",topic="inference.requests"} 3.0' in page
    assert 'mlbus_messages_total{outcome="dead_lettered",service="scorer",topic="inference.requests"} 1.0' in page
