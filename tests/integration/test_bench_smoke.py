"""`scripts/bench --quick` runs without crashing: the codec part (no peers to install, no broker) and, marked slow,
keep-pace (a broker and every service). Timings are reported by the benchmark, never asserted here."""
import json
import subprocess
import sys

import pytest

from services.bus.settings import PROJECT_ROOT


def test_the_quick_codec_benchmark_writes_every_figure(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.bench", "codec", "--quick", "--out", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "results.json").read_text())
    assert [f["name"] for f in figures] == [
        f"codec {verb} {record}{framing}" for record in ("InferenceRequest", "Prediction")
        for framing in ("", ", Confluent framing") for verb in ("encode", "decode")]
    assert all(f["value"] > 0 and f["peer_value"] > 0 and isinstance(f["met"], bool) for f in figures)
    assert (tmp_path / "results.md").read_text().startswith("| figure | mlbus |")


@pytest.mark.slow           # 2-4 min: a broker of its own and every service of `mlbus up`
def test_the_quick_keep_pace_benchmark_writes_every_figure(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.bench", "keep-pace", "--quick", "--out", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=540,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    figures = {f["name"]: f for f in json.loads((tmp_path / "results.json").read_text())}
    assert list(figures) == ["keep-pace: the scorer at full speed",
                             "keep-pace: auditor's drain after the scorer's last answer",
                             "keep-pace: scorer's drain after the load", "keep-pace: peak audit lag"]
    assert figures["keep-pace: the scorer at full speed"]["value"] > 0
    assert figures["keep-pace: peak audit lag"]["value"] > 0
    assert isinstance(figures["keep-pace: auditor's drain after the scorer's last answer"]["met"], bool)
