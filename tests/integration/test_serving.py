"""Trained → approved by policy → deployed → every request answered once, by the real services; the scorer's
Prometheus metrics count the same traffic."""
from __future__ import annotations

import collections
import json
from contextlib import ExitStack

from services.bus import Publisher
from services.adapters import publish_batch
from services.bus.settings import PROJECT_ROOT
from tests.support.datasets import good, write
from tests.support.polling import read_topic, topic_values, wait_until
from tests.support.processes import free_port, running
from tests.support.prometheus import prometheus_scraping, query, query_error, scrape
from tests.support.scoring import routed, send_requests

SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer",
            "services.scorer")
AUTO_POLICY = """model: breast_cancer_lr
metric: roc_auc
thresholds: {roc_auc: 0.9}
human_approval: false
"""


def decoded(bus, topic: str, expected: int, **kw) -> list[dict]:
    return [bus.schemas.decode(m.value())[1] for m in read_topic(bus, topic, expected, timeout=180, **kw)]


def test_an_auto_approved_version_is_deployed_and_answers_every_request_exactly_once(bus, bus_env, cli, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(AUTO_POLICY)
    assert cli("models", "policy", str(policy), person="lead").returncode == 0
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    port = free_port()
    with ExitStack() as stack:
        processes = [stack.enter_context(running(m, bus_env, tmp_path / f"{m}.log", **(
            {"MLBUS_METRICS_PORT": str(port)} if m == "services.scorer" else {}))) for m in SERVICES]
        publish_batch(bus, "breast_cancer", write(good(rows=400), tmp_path / "good.csv"), "t")
        [deployed] = wait_until(lambda: [d for d in topic_values(bus, "deployments") if d["phase"] == "completed"],
                                timeout=180, message="a deployment")
        routed(tmp_path / "services.scorer.log", deployed)
        publisher = Publisher(bus, "shop-app")
        ids = send_requests(bus, "breast_cancer_lr", 2000, publisher=publisher)
        bad = send_requests(bus, "breast_cancer_lr", 5, prefix="bad", drop_feature=True, publisher=publisher)
        orphan = send_requests(bus, "no_such_model", 3, prefix="orphan", publisher=publisher)
        publisher.flush()
        predictions = decoded(bus, "inference.predictions", expected=2003, settle_s=3)
        dead = read_topic(bus, "inference.requests.dlq", expected=5, timeout=60)
        metrics = wait_until(lambda: (m := scrape(port)).get(HANDLED, 0) >= 2003 and m, timeout=60,
                             message="the scorer's metrics")
        server = stack.enter_context(prometheus_scraping([f"127.0.0.1:{port}"], tmp_path / "prometheus"))
        scraped = wait_until(lambda: query(server, SERVED_BY_PROMETHEUS), timeout=60,
                             message="Prometheus to scrape the scorer")
        refused = {e: query_error(server, e) for e in dashboard_queries()}
        assert "parse error" in query_error(server, "sum by (model")        # the check can fail
        assert all(p.poll() is None for p in processes)

    assert deployed["version"] == 1 and deployed["routes"][0]["variant"] == "champion"
    served = collections.Counter(p["request_id"] for p in predictions if p["served"])
    assert set(served) == set(ids) | set(orphan) and max(served.values()) == 1       # exactly one each
    answers = [p for p in predictions if p["request_id"] in set(ids)]
    assert {p["version"] for p in answers} == {1} and {p["label"] for p in answers} <= {"benign", "malignant"}
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-9 and p["deployment_id"] == deployed["deployment_id"]
               for p in answers)
    assert all("no deployment serves" in p["error"] for p in predictions if p["request_id"] in set(orphan))
    assert len(dead) == len(bad) and all(b"lacks features" in dict(m.headers())["dlq.error.message"] for m in dead)
    assert not {p["request_id"] for p in predictions} & set(bad)
    # the scorer's /metrics (Prometheus text format) count the same traffic
    assert metrics[HANDLED] == 2003 and metrics[DEAD] == 5
    served_v1 = 'mlbus_predictions_total{model="breast_cancer_lr",outcome="served",variant="champion",version="1"}'
    assert metrics[served_v1] == 2000
    assert metrics['mlbus_prediction_latency_seconds_count{model="breast_cancer_lr",variant="champion",version="1"}'] \
        == 2000
    assert metrics['mlbus_commit_seconds_count{service="scorer"}'] >= 1
    assert scraped == 2000                       # the same figure through a real Prometheus server's query API
    assert len(refused) >= 10 and not any(refused.values()), refused     # every Grafana panel's query evaluates


def dashboard_queries() -> list[str]:
    dashboard = json.loads((PROJECT_ROOT / "compose" / "grafana" / "mlbus-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


SERVED_BY_PROMETHEUS = 'sum(mlbus_predictions_total{model="breast_cancer_lr",outcome="served"})'
HANDLED = 'mlbus_messages_total{outcome="handled",service="scorer",topic="inference.requests"}'
DEAD = 'mlbus_messages_total{outcome="dead_lettered",service="scorer",topic="inference.requests"}'
