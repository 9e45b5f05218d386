"""Training on feature views on the real broker: a view defined with the CLI (signed, on features.views), its values
in the offline store, a spec joining it to a dataset of label rows; validator and trainer as processes. The version
records the view's version, the digest of the values used and the offsets read, and a reproduction is identical."""
from __future__ import annotations

import json

import pandas as pd

from services.adapters import OfflineStore, publish_batch, snapshot_digest
from services.bus import Publisher
from services.domain import FeatureValue, SourceSpan, views_from_yaml
from tests.support.polling import read_topic
from tests.support.processes import running

HOUR = 3_600_000
VIEWS = """views:
  - name: purchases
    entity: customer
    source: {topic: business.events, kind: purchase}
    ttl: 2h
    owner: dana
    description: each customer's last purchase
    features:
      - {name: last_amount, aggregate: last, field: amount}
"""
SPEC = """model: churn_lr
dataset: churn
target: churned
features: [tenure]
feature_views: {views: [purchases], entity: customer, time: at}
task: classification
estimator: LogisticRegression
metric: accuracy
cv_folds: 0
seed: 3
"""
CONTRACT = {"type": "record", "name": "churn", "namespace": "mlbus.datasets",
            "mlbus.contract": {"version": 1, "target": "churned", "keys": ["row"], "min_rows": 50},
            "fields": [{"name": "row", "type": "long"}, {"name": "customer", "type": "string"},
                       {"name": "at", "type": "long"}, {"name": "tenure", "type": "double"},
                       {"name": "churned", "type": "string", "mlbus.allowed": ["yes", "no"]}]}


def labels() -> pd.DataFrame:
    """Customers c0..c19 at 10 h, 20 h and 30 h: the odd ones churn."""
    rows = [(n, f"c{n % 20}", (10 + 10 * (n // 20)) * HOUR, float(n % 7), "yes" if n % 2 else "no") for n in range(60)]
    return pd.DataFrame(rows, columns=["row", "customer", "at", "tenure", "churned"])


def amounts(version: str) -> list[FeatureValue]:
    """An hour before each label the customer's last amount (high for those who churn), and a planted value at each
    label's own time that must not be used."""
    values = []
    for n in range(60):
        customer, at = f"c{n % 20}", (10 + 10 * (n // 20)) * HOUR
        for when, amount in ((at - HOUR, 100.0 * (n % 2) + n % 5), (at, -1.0)):
            values.append(FeatureValue("purchases", version, "last_amount", customer, when, amount, None,
                                       (SourceSpan("business.events", 0, 2 * n + (when == at), 2 * n + (when == at),
                                                   1),)))
    return values


def test_a_spec_on_a_feature_view_trains_on_the_values_before_each_label_and_reproduces(bus, bus_env, cli, tmp_path):
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "churn.avsc").write_text(json.dumps(CONTRACT))
    bus_env["MLBUS_CONTRACTS"] = str(contracts)          # the CLI's and the services' (cli holds this env)
    (tmp_path / "views.yaml").write_text(VIEWS)
    (tmp_path / "spec.yaml").write_text(SPEC)
    [view] = views_from_yaml(VIEWS)
    OfflineStore(bus.settings.storage.features_offline).write(amounts(view.version), "part-0")
    defined = cli("features", "define", str(tmp_path / "views.yaml"), person="dana")
    assert defined.returncode == 0, defined.stderr
    assert cli("models", "define", str(tmp_path / "spec.yaml"), person="dana").returncode == 0
    labels().to_csv(tmp_path / "churn.csv", index=False)
    publisher = Publisher(bus, "test")
    publish_batch(bus, "churn", tmp_path / "churn.csv", "t", publisher)
    publisher.flush()

    with running("services.validator", bus_env, tmp_path / "validator.log"), \
            running("services.trainer", bus_env, tmp_path / "trainer.log") as trainer:
        [message] = read_topic(bus, "models.trained", expected=1, timeout=180)
        trained = bus.schemas.decode(message.value())[1]
        reproduced = cli("train", "--reproduce", trained["run_id"], "--wait", "180", person="bo")
        assert trainer.poll() is None

    assert trained["features"] == ["tenure", "purchases__last_amount"]
    assert json.loads(trained["feature_views_json"]) == {
        "entity": "customer", "time": "at", "views": {"purchases": view.version}, "columns": ["purchases__last_amount"]}
    used = [v for v in amounts(view.version) if v.value != -1.0]       # never a value at a label's own time
    assert trained["features_snapshot_sha256"] == snapshot_digest(used)
    assert json.loads(trained["features_until_json"]) == {"business.events:0": 119}
    assert trained["metrics"]["accuracy"] == 1.0                      # the feature separates the labels
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert "IDENTICAL" in reproduced.stdout
