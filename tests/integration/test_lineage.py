"""The lineage service on the real broker: a batch published, validated, trained, approved by policy, deployed and
scored by the real services; the lineage service (its file transport) writes OpenLineage events that validate
against the spec and link batch → training run → model version → scoring run → predictions. A record it cannot
map goes to the DLQ and the service goes on."""
from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

from services.bus import Event, Publisher
from services.adapters import publish_batch
from services.bus.settings import PROJECT_ROOT
from services.lineage.adapters import emitter
from services.lineage.decide import Places, Scoring
from services.lineage.handlers import Lineage
from services.lineage.settings import LineageSettings
from tests.support.datasets import good, write
from tests.support.handlers import received
from tests.support.lineage import problems, read_events
from tests.support.polling import read_topic, topic_values, wait_until
from tests.support.processes import free_port, running
from tests.support.scoring import routed, send_requests
from tests.unit.test_lineage import trained

SPEC = PROJECT_ROOT / "scripts" / "examples" / "breast_cancer_lr.yaml"
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer", "services.scorer")
AUTO_POLICY = "model: breast_cancer_lr\nmetric: roc_auc\nthresholds: {roc_auc: 0.9}\nhuman_approval: false\n"


def job_events(events: list[dict], job: str, state: str) -> list[dict]:
    return [e for e in events if e["job"]["name"] == job and e["eventType"] == state]


def places(datasets: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def unmappable_batch() -> Event:
    """A batch whose URI names no bucket: the validator judges it failed, the lineage service cannot name it."""
    value = {"batch_id": "lineage-bad-uri", "dataset": "breast_cancer", "uri": "s3:///nowhere.csv",
             "sha256": "0" * 64, "rows": 1, "size_bytes": 1, "format": "csv", "publisher": "shop-app",
             "published_at": datetime.now(timezone.utc), "labels": {}}
    return Event("mlbus.DataBatch", value, key="breast_cancer", id="lineage-bad-uri", subject="lineage-bad-uri")


def test_the_story_s_lineage_validates_and_links_batch_run_version_predictions(bus, bus_env, cli, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(AUTO_POLICY)
    assert cli("models", "policy", str(policy), person="lead").returncode == 0
    assert cli("models", "define", str(SPEC), person="dana").returncode == 0
    lineage_file = tmp_path / "lineage" / "events.jsonl"
    with ExitStack() as stack:
        processes = [stack.enter_context(running(m, bus_env, tmp_path / f"{m}.log")) for m in SERVICES]
        lineage = stack.enter_context(running("services.lineage", bus_env, tmp_path / "lineage.log",
                                              MLBUS_LINEAGE_FILE=str(lineage_file), MLBUS_LINEAGE_PERIOD_S="2",
                                              MLBUS_LINEAGE_GRACE_S="1"))
        batch = publish_batch(bus, "breast_cancer", write(good(rows=300), tmp_path / "good.csv"), "t")
        [deployed] = wait_until(lambda: [d for d in topic_values(bus, "deployments") if d["phase"] == "completed"],
                                timeout=180, message="a deployment")
        routed(tmp_path / "services.scorer.log", deployed)
        ids = send_requests(bus, "breast_cancer_lr", 40)
        read_topic(bus, "inference.predictions", expected=len(ids), timeout=120)
        publisher = Publisher(bus, "shop-app")
        publisher.publish(unmappable_batch())
        publisher.flush()
        events = wait_until(lambda: (found := read_events(lineage_file)) and
                            job_events(found, "breast_cancer_lr.score", "COMPLETE") and found,
                            timeout=120, message="a closed scoring period in the lineage file")
        dead = wait_until(lambda: [m for m in read_topic(bus, "data.batches.dlq", expected=1, timeout=5)
                                   if dict(m.headers()).get("dlq.service") == b"lineage"],
                          timeout=60, message="the lineage service's refusal in data.batches.dlq")
        assert lineage.poll() is None and all(p.poll() is None for p in processes)

    assert [problems(e) for e in events if problems(e)] == []
    snapshot = ("file", batch["uri"].removeprefix("file://"))
    [published] = job_events(events, "breast_cancer.publish", "COMPLETE")
    assert places(published["outputs"]) == {snapshot}
    [validated] = job_events(events, "breast_cancer.validate", "COMPLETE")
    [read] = validated["inputs"]
    assert (read["namespace"], read["name"]) == snapshot and len(read["facets"]["schema"]["fields"]) == 32
    [started] = job_events(events, "breast_cancer_lr.train", "START")
    [trained] = job_events(events, "breast_cancer_lr.train", "COMPLETE")
    assert started["run"]["runId"] == trained["run"]["runId"]
    assert places(trained["inputs"]) == {snapshot}                                    # batch → run
    version = ("mlbus", "models/breast_cancer_lr/v1")
    assert places(trained["outputs"]) == {version}                                    # run → version
    scoring = job_events(events, "breast_cancer_lr.score", "COMPLETE")
    assert all(version in places(e["inputs"]) for e in scoring)                       # version → scoring
    predictions = {(f"kafka://{bus.settings.bootstrap.split(',')[0]}", bus.catalogue.physical("inference.predictions"))}
    assert all(places(e["outputs"]) == predictions for e in scoring)                  # scoring → predictions
    assert len(job_events(events, "breast_cancer_lr.score", "START")) < len(ids)      # aggregated, not one per answer
    assert b"names no host or bucket" in dict(dead[0].headers())["dlq.error.message"]


def test_an_unreachable_endpoint_stops_the_service_loudly_and_dead_letters_nothing(bus, bus_env, tmp_path):
    publish_batch(bus, "breast_cancer", write(good(rows=20), tmp_path / "small.csv"), "t")
    log = tmp_path / "lineage.log"
    with running("services.lineage", bus_env, log, MLBUS_LINEAGE_URL=f"http://127.0.0.1:{free_port()}") as lineage:
        code = wait_until(lambda: lineage.poll(), timeout=120, message="the lineage service to stop")
    assert code != 0 and "OpenLineage http transport failed" in log.read_text()
    assert read_topic(bus, "data.batches.dlq", expected=1, timeout=3) == []       # an infrastructure failure


class Receiver(BaseHTTPRequestHandler):
    """A stand-in for Marquez's lineage endpoint: keeps what was POSTed, answers 201."""

    received: list[tuple[str, str, dict]] = []

    def do_POST(self) -> None:          # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.path, self.headers.get("Authorization", ""), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_the_http_transport_posts_valid_events_with_the_key_to_the_lineage_endpoint(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = LineageSettings.from_env({"MLBUS_LINEAGE_URL": f"http://127.0.0.1:{server.server_port}",
                                             "MLBUS_LINEAGE_API_KEY": "k-123"})
        places = Places(jobs="mlbus", bus="kafka://127.0.0.1:9093", producer="urn:mlbus:lineage:0.1.0")
        handler = Lineage(places, Scoring(3600), emitter(settings), 60.0)
        handler(received("mlbus.ModelTrained", trained()))
    finally:
        server.shutdown()
    assert [(path, auth) for path, auth, _ in Receiver.received] == [("/api/v1/lineage", "Bearer k-123")] * 2
    assert [body["eventType"] for _, _, body in Receiver.received] == ["START", "COMPLETE"]
    assert all(problems(body) == [] for _, _, body in Receiver.received)
