"""What a version costs, from the record: fit time and CPU per version, serving CPU per 1,000 predictions per
variant, and the KPI changes attributed to it."""
from services.cli.cost_cmd import serving_costs, version_costs


def prediction(version: int, variant: str, cpu_ms: float, error: str | None = None) -> dict:
    return {"version": version, "variant": variant, "cpu_ms": cpu_ms, "error": error}


def test_serving_cpu_is_per_thousand_predictions_per_version_and_variant_without_errors():
    costs = serving_costs([prediction(1, "champion", 0.2), prediction(1, "champion", 0.4),
                           prediction(2, "canary", 1.0), prediction(2, "canary", 9.0, error="cannot serve"),
                           {**prediction(1, "none", 5.0), "version": None}])
    assert costs[(1, "champion")] == {"predictions": 2, "cpu_s_per_1000": 0.30000000000000004}
    assert costs[(2, "canary")] == {"predictions": 1, "cpu_s_per_1000": 1.0}
    assert set(costs) == {(1, "champion"), (2, "canary")}


def test_each_version_gets_its_fits_its_serving_and_its_kpi_change():
    trained = [{"version": 2, "request_id": "r2", "estimator": "LR", "duration_ms": 3000, "cpu_seconds": 2.5},
               {"version": 1, "request_id": "r1", "estimator": "LR", "duration_ms": 1500, "cpu_seconds": 0.0}]
    runs = [{"request_id": "r1", "cpu_seconds": 0.5, "reproduces_run_id": None},
            {"request_id": "r1", "cpu_seconds": 0.7, "reproduces_run_id": None},
            {"request_id": "r1", "cpu_seconds": 9.0, "reproduces_run_id": "x"},          # a reproduction
            {"request_id": "r2", "cpu_seconds": 2.5, "reproduces_run_id": None}]
    rows = version_costs(trained, runs, [prediction(2, "champion", 0.5)], {2: [{"kpi": "conversion"}]})
    assert [r["version"] for r in rows] == [1, 2]
    assert rows[0]["grid_points"] == 2 and rows[0]["fit_cpu_s"] == 1.2 and rows[0]["fit_wall_s"] == 1.5
    assert rows[1]["fit_cpu_s"] == 2.5 and rows[1]["serving"] == {"champion": {"predictions": 1, "cpu_s_per_1000": 0.5}}
    assert rows[1]["kpi_changes"] == [{"kpi": "conversion"}] and rows[0]["kpi_changes"] == []
