"""A model with categorical features, end to end on the real broker and services: the insurance-claims sample
trains (categories one-hot encoded inside the saved pipeline), is approved by its policy and deployed, answers
requests that carry categories — an unseen region too —, dead-letters a request missing a category with the
reason, scores the same rows offline (`mlbus score --batch`) with the same predictions, on record, reproduces
identically, and a shift of the traffic's regions is detected as drift on that feature."""
from __future__ import annotations

import json
from contextlib import ExitStack

import pandas as pd
import pytest

from services.bus import Publisher
from services.bus.settings import PROJECT_ROOT
from services.cli.sample_data import insurance_claims
from services.adapters import local_path, publish_batch
from tests.support.claims import CATEGORIES, NUMBERS, ask
from tests.support.scoring import routed
from tests.support.polling import LONG_STORY_S, read_topic, served, topic_values, wait_until
from tests.support.processes import running

SPEC = PROJECT_ROOT / "scripts" / "examples" / "insurance_claims_gb.yaml"
MODEL = "claims_fraud"
SERVICES = ("services.validator", "services.trainer", "services.registry", "services.deployer", "services.scorer",
            "services.drift_watcher", "services.auditor")
POLICY = f"model: {MODEL}\nmetric: roc_auc\nthresholds: {{roc_auc: 0.6}}\nhuman_approval: false\n"


@pytest.mark.timeout(LONG_STORY_S)
def test_categories_train_serve_reproduce_and_drift(bus, bus_env, cli, tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert cli("models", "policy", str(tmp_path / "policy.yaml"), person="lead").returncode == 0
    defined = cli("models", "define", str(SPEC), person="dana")
    assert defined.returncode == 0, defined.stderr
    claims = tmp_path / "claims.csv"
    insurance_claims(rows=1200, seed=1).to_csv(claims, index=False)
    with ExitStack() as stack:
        processes = [stack.enter_context(running(m, bus_env, tmp_path / f"{m}.log")) for m in SERVICES]
        batch = publish_batch(bus, "insurance_claims", claims, "t")
        deployed = wait_until(lambda: [d for d in topic_values(bus, "deployments") if d["phase"] == "completed"],
                              timeout=240, message="v1 deployed")
        routed(tmp_path / "services.scorer.log", deployed[-1])
        [trained] = topic_values(bus, "models.trained")

        publisher = Publisher(bus, "shop-app")
        usual = insurance_claims(rows=200, seed=5, offset=10_000).to_dict("records")
        ids = ask(publisher, MODEL, usual, "usual")
        unseen = ask(publisher, MODEL, [{**usual[0], "region": "atlantis"}], "unseen")
        missing = ask(publisher, MODEL, usual[:2], "missing", drop="channel")
        answers = wait_until(lambda: len(found := served(bus, ids + unseen)) == 201 and found, timeout=120,
                             message="answers to the usual and the unseen-region requests")
        dead = read_topic(bus, "inference.requests.dlq", expected=2, timeout=60)

        # every claim now comes from the north: the numbers are as before, the region is not
        shifted = ask(publisher, MODEL, insurance_claims(rows=200, seed=6, offset=20_000, regions=("north",))
                       .to_dict("records"), "north")
        report = wait_until(lambda: [r for r in topic_values(bus, "monitoring.drift")
                                     if any(f["feature"] == "region" and f["drifted"] for f in r["features"])],
                            timeout=180, message="a drift report naming the region")[0]

        # the same rows scored offline, from a file and from the published batch, on record
        pd.DataFrame(usual).to_csv(tmp_path / "usual.csv", index=False)
        offline = cli("score", MODEL, "--batch", str(tmp_path / "usual.csv"), person="dana")
        assert offline.returncode == 0, offline.stderr
        scoring = json.loads(offline.stdout)
        by_batch = cli("score", f"{MODEL}@1", "--batch", batch["batch_id"], person="dana")
        assert by_batch.returncode == 0, by_batch.stderr
        explained = wait_until(lambda: "batch scoring" in (e := cli("audit", "explain", scoring["scoring_id"])).stdout
                               and e.stdout, timeout=60, message="the auditor to record the batch scoring")

        why = json.loads(cli("audit", "explain", ids[0], "--why", "--json").stdout)["why"]
        served_again = json.loads(cli("audit", "reproduce", MODEL, "--json").stdout)
        costs = json.loads(cli("models", "cost", MODEL, "--json").stdout)["versions"]
        card = json.loads(wait_until(lambda: (c := cli("models", "card", f"{MODEL}@1", "--format", "json")).returncode == 0
                                     and '"deployments": [\n    {' in c.stdout and c.stdout, timeout=60,
                                     message="the model card with its deployment"))
        run = next(r for r in topic_values(bus, "training.runs") if r["chosen"])
        reproduced = cli("train", "--reproduce", run["run_id"], "--wait", "240", person="dana")
        assert reproduced.returncode == 0, reproduced.stderr
        assert all(p.poll() is None for p in processes)

    assert trained["categorical_features"] == list(CATEGORIES)
    assert trained["features"] == list(NUMBERS + CATEGORIES)
    profiles = {p["name"]: p for p in trained["feature_profile"]}
    assert profiles["region"]["kind"] == "categorical" and set(profiles["region"]["categories"]) >= {"north", "south"}
    assert {a["label"] for a in answers.values()} <= {"yes", "no"} and not any(a["error"] for a in answers.values())
    assert answers[unseen[0]]["label"] in ("yes", "no")                      # an unseen region still gets an answer
    reasons = [dict(m.headers())["dlq.error.message"] for m in dead]
    assert len(reasons) == 2 and all(b"lacks features ['channel']" in r for r in reasons)
    assert not served(bus, missing)
    drifted = {f["feature"] for f in report["features"] if f["drifted"]}
    region = next(f for f in report["features"] if f["feature"] == "region")
    assert region["method"] in ("chi2", "jensenshannon") and region["bins"] and len(shifted) == 200
    # the numbers did not move: at most one of them alerting after the Bonferroni correction (a chance flag at
    # p < 0.05 in two of four features is ~1.4 % of runs; two alerting ones by chance are ~0.05 %)
    assert "region" in drifted and len(set(report["alerting"]) & set(NUMBERS)) <= 1, report["alerting"]
    predictions = pd.read_parquet(local_path(scoring["output_uri"]))
    assert len(predictions) == 200 and list(predictions["id"]) == [row["id"] for row in usual]
    for request_id, row in zip(ids, predictions.itertuples()):                  # prediction by prediction
        online = answers[request_id]
        assert row.label == online["label"] and abs(row.p_yes - online["probabilities"]["yes"]) < 1e-9
    recorded = {r["scoring_id"]: r for r in topic_values(bus, "scoring.batches")}
    on_file, from_batch = recorded[scoring["scoring_id"]], recorded[json.loads(by_batch.stdout)["scoring_id"]]
    assert on_file["signer"] == "dana" and on_file["input_rows"] == 200 and on_file["cpu_seconds"] > 0
    assert on_file["artifact_sha256"] == trained["artifact_sha256"] and on_file["output_sha256"] == scoring["output_sha256"]
    assert from_batch["input_batch_id"] == batch["batch_id"] and from_batch["input_rows"] == 1200
    assert f"by {MODEL} v1 for dana" in explained and "trained on: batch" in explained
    refused = cli("score", f"{MODEL}@7", "--batch", str(tmp_path / "usual.csv"), person="dana")
    assert refused.returncode != 0 and "no version" in refused.stderr
    assert card["purpose"]["owner"].startswith("claims analytics") and card["purpose"]["risk_level"] == "high"
    assert [b["batch_id"] for b in card["training_data"]] == [batch["batch_id"]]
    assert card["training_data"][0]["validation"]["passed"] and card["estimator"]["artifact_sha256"] == trained["artifact_sha256"]
    assert [d["kind"] for d in card["governance"]["decisions"]][:2] == ["registered", "approved"]
    assert card["deployments"][0]["phase"] == "completed" and card["metrics"]["holdout"] == trained["metrics"]
    assert why["equal"] and why["attribution"]["method"].startswith("TreeSHAP") and why["attribution"]["unit"] == "log-odds"
    attribution = why["attribution"]           # gradient boosting: Shapley values of the log-odds of "yes"
    assert abs(attribution["baseline"] + sum(attribution["contributions"].values()) - attribution["output"]) < 1e-6
    assert set(attribution["contributions"]) == set(NUMBERS + CATEGORIES)     # one-hot columns summed per feature
    [again] = served_again                     # every served prediction the auditor had recorded by then
    assert again["version"] == 1 and again["equal"] >= len(answers) and again["different"] == []
    [cost] = costs                                              # measured in the processes, not estimated
    assert cost["grid_points"] == 2 and cost["fit_cpu_s"] > 0 and cost["fit_wall_s"] > 0
    assert cost["serving"]["champion"]["predictions"] >= 201 and cost["serving"]["champion"]["cpu_s_per_1000"] > 0
    [again] = [r for r in topic_values(bus, "training.runs") if r["reproduces_run_id"] == run["run_id"]]
    assert again["identical"], again["differences"]
    assert json.loads(again["spec_json"])["categorical_features"] == list(CATEGORIES)
