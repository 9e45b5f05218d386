"""The how-to's example service runs as the page shows it: its imports resolve, its handler turns a low score into
an Alert, and its last line's call matches ServiceRuntime (bound, not run: unit tests never touch the network)."""
import inspect
import re
from datetime import datetime, timezone
from types import SimpleNamespace

from services.bus import PerRecord, RuntimeConfig, ServiceRuntime
from services.bus.settings import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "how-to" / "own-service.md"


def example() -> dict:
    [code] = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    namespace = {"__name__": "my_watch"}           # imported, not run as __main__
    exec(compile(code, str(PAGE), "exec"), namespace)
    return namespace


def prediction(score: float) -> SimpleNamespace:
    typed = SimpleNamespace(score=score, model="breast_cancer_lr", version=2,
                            predicted_at=datetime(2026, 12, 6, tzinfo=timezone.utc))
    return SimpleNamespace(typed=typed, envelope=SimpleNamespace(id="00000000-0000-0000-0000-000000000001"))


def test_the_example_handler_alerts_on_a_low_score_only():
    flag_low_scores = example()["flag_low_scores"]
    [raised] = list(flag_low_scores(prediction(0.05)))
    assert raised.record == "mlbus.Alert" and raised.value["kind"] == "low-score" and raised.value["version"] == 2
    assert list(flag_low_scores(prediction(0.5))) == []


def test_the_example_constructs_the_runtime_as_it_is_today():
    code = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)[0]
    call = re.search(r"ServiceRuntime\((.*)\)\.run\(\)", code)[1]
    namespace = example()
    namespace["config"] = eval(re.search(r"config = (RuntimeConfig\(.*\))\n", code)[1], namespace)
    args = eval(f"(lambda *a, **k: (a, k))({call})", {**namespace, "bus": object()})
    bound = inspect.signature(ServiceRuntime).bind(*args[0], **args[1])  # TypeError: the page no longer matches
    assert isinstance(bound.arguments["mode"], PerRecord) and isinstance(bound.arguments["config"], RuntimeConfig)
