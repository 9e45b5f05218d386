"""`scripts/bench --quick` runs without crashing (the codec part: no peers to install, no broker). Timings
are reported by the benchmark, never asserted here."""
import json
import subprocess
import sys

from services.bus.settings import PROJECT_ROOT


def test_the_quick_codec_benchmark_writes_every_figure(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.bench", "codec", "--quick", "--out", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "results.json").read_text())
    assert [f["name"] for f in figures] == ["codec encode InferenceRequest", "codec decode InferenceRequest",
                                            "codec encode Prediction", "codec decode Prediction"]
    assert all(f["value"] > 0 and f["peer_value"] > 0 and isinstance(f["met"], bool) for f in figures)
    assert (tmp_path / "results.md").read_text().startswith("| figure | mlbus |")
