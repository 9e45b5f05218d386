"""The mlbus command line against the real broker."""
import json

from tests.support.polling import read_topic


def test_publish_writes_single_object_avro_with_cloudevents_headers_and_consume_decodes_it(bus, cli):
    record = {"kpi_id": "k-1", "name": "conversion", "value": 0.125, "window_start": "2026-11-23T10:00:00Z",
              "window_end": "2026-11-23T11:00:00Z", "dimensions": {"variant": "challenger"}, "source": "shop",
              "observed_at": "2026-11-23T11:00:01Z"}
    published = cli("publish", "kpis", stdin=json.dumps(record) + "\n", person="shop")
    assert published.returncode == 0, published.stderr

    [raw] = read_topic(bus, "kpis", expected=1)
    assert raw.value()[:2] == b"\xc3\x01"
    headers = dict(raw.headers())
    assert {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type", "traceparent"} <= set(headers)
    assert headers["ce_source"] == b"cli:shop" and headers["ce_type"] == b"mlbus.KpiObserved"
    assert raw.key() == b"conversion"

    consumed = cli("consume", "kpis", "--from-beginning", "--max", "1")
    assert consumed.returncode == 0, consumed.stderr
    line = json.loads(consumed.stdout)
    expected = {**record, "window_start": "2026-11-23T10:00:00.000000Z", "window_end": "2026-11-23T11:00:00.000000Z",
                "observed_at": "2026-11-23T11:00:01.000000Z"}
    expected = {k: v.replace(".000000Z", "Z") if isinstance(v, str) else v for k, v in expected.items()}
    signature = {k: line["value"].pop(k) for k in ("signer", "signer_key", "signature", "act_id", "made_at")}
    assert signature["signer"] == "shop" and signature["signature"] and signature["act_id"]      # signed by shop
    assert line["record"] == "mlbus.KpiObserved" and line["value"] == expected
    assert line["headers"]["ce_id"] == headers["ce_id"].decode()


def test_publish_names_the_field_that_does_not_fit(bus, cli):
    result = cli("publish", "kpis", stdin='{"kpi_id": "k", "name": "n", "value": "high", "source": "s"}\n')
    assert result.returncode == 1
    assert "line 1" in result.stderr and "'value'" in result.stderr and "double" in result.stderr


def test_topics_apply_twice_changes_nothing_the_second_time(bus_env, cli):
    first = cli("topics", "apply", "--json")
    second = cli("topics", "apply", "--json")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert len(json.loads(first.stdout)["changes"]) > 0
    assert json.loads(second.stdout)["changes"] == []


def test_topics_list_json_matches_topics_yaml(bus_env, cli):
    import yaml
    from services.bus.settings import PROJECT_ROOT

    listed = {t["name"]: t for t in json.loads(cli("topics", "list", "--json").stdout)}
    for entry in yaml.safe_load((PROJECT_ROOT / "topics.yaml").read_text())["topics"]:
        topic = listed[entry["name"]]
        assert topic["schema"] == entry["schema"] and topic["key"] == entry["key"]
        assert topic["producers"] == entry["producers"] and topic["consumers"] == entry["consumers"]
        assert topic["physical_name"] == bus_env["MLBUS_NAMESPACE"] + entry["name"]
        for key, value in entry.get("config", {}).items():
            assert topic["config"][key] == str(value)
        if entry["consumers"]:
            assert listed[entry["name"] + ".dlq"]["dead_letter_for"] == entry["name"]


def test_without_a_broker_the_cli_says_how_to_get_one(tmp_path):
    import os
    from tests.support.people import mlbus_cli

    env = {k: v for k, v in os.environ.items() if k != "MLBUS_BOOTSTRAP"} | {"MLBUS_VAR": str(tmp_path)}
    result = mlbus_cli(env, "consume", "kpis", "--max", "1")
    assert result.returncode == 2 and "mlbus up" in result.stderr
