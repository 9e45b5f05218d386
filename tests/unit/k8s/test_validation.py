"""`mlbus k8s render`'s output, checked offline as a cluster would take it (no cluster here): kustomize builds it,
kubernetes-validate --strict checks the standard kinds against Kubernetes' own schemas (shipped in its wheel),
check-jsonschema the Strimzi and KEDA kinds against their CRDs' schemas vendored in tests/support/crds/. Nothing
is downloaded: the tools come from the test extra, the schemas from this repository."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.bus.settings import PROJECT_ROOT
from services.cli.main import main

BIN = Path(sys.executable).parent
CRDS = PROJECT_ROOT / "tests" / "support" / "crds"
CRD_SCHEMAS = {"KafkaTopic": "kafkatopic-v1.json", "KafkaUser": "kafkauser-v1.json",
               "ScaledObject": "scaledobject-v1alpha1.json",
               "TriggerAuthentication": "triggerauthentication-v1alpha1.json"}
# Named, so that a new kubernetes-validate release changes nothing by itself: an older release a cluster may still
# run, and the newest this wheel ships schemas for.
KUBERNETES = ("1.30.0", "1.37.0")
TIMEOUT_S = 60


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The rendered base, with stand-ins for the key files that whoever applies it provides."""
    out = tmp_path_factory.mktemp("k8s") / "base"
    assert main(["k8s", "render", "--out", str(out), "--namespace", "mlbus-test", "--person", "ana=approver"]) == 0
    return out


def provide_secret_files(base: Path) -> None:
    for generator in yaml.safe_load((base / "kustomization.yaml").read_text())["secretGenerator"]:
        for entry in generator["files"]:
            path = base / entry.partition("=")[2]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not a secret: a test's stand-in\n")


@pytest.fixture(scope="module")
def built(base) -> list[dict]:
    result = run(BIN / "kubectl", "kustomize", base)
    assert result.returncode != 0 and "secrets/" in result.stderr, "it builds only once the key files are there"
    provide_secret_files(base)
    result = run(BIN / "kubectl", "kustomize", base)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_kustomize_builds_it_into_one_namespace_with_each_secret_made_from_its_files(built):
    kinds = {d["kind"] for d in built}
    assert {"KafkaTopic", "KafkaUser", "Deployment", "Secret", "Service", "NetworkPolicy", "ScaledObject",
            "TriggerAuthentication", "PodDisruptionBudget", "PersistentVolumeClaim"} <= kinds
    assert {d["metadata"]["namespace"] for d in built} == {"mlbus-test"}
    secrets = {d["metadata"]["name"] for d in built if d["kind"] == "Secret"}
    auditor = next(d for d in built if d["kind"] == "Deployment" and d["metadata"]["name"] == "auditor")
    mounted = {v["secret"]["secretName"] for v in auditor["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert mounted & secrets and all(name.startswith("mlbus-auditor-") for name in mounted & secrets)


def test_kubernetes_validate_strict_passes_the_standard_kinds(built, tmp_path):
    standard = [d for d in built if d["kind"] not in CRD_SCHEMAS]
    assert len(standard) > 20
    for version in KUBERNETES:
        result = validate_standard(standard, tmp_path, version)
        assert result.returncode == 0, result.stdout + result.stderr
    deployment = next(d for d in standard if d["kind"] == "Deployment")
    broken = [{**deployment, "spec": {**deployment["spec"], "replicaz": 1}}]
    assert validate_standard(broken, tmp_path, KUBERNETES[-1]).returncode != 0, "strict: an unknown field fails"


def validate_standard(documents: list[dict], directory: Path, version: str) -> subprocess.CompletedProcess:
    path = directory / "standard.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return run(BIN / "kubernetes-validate", "--strict", "--quiet", "--kubernetes-version", version, path)


def test_check_jsonschema_passes_the_strimzi_and_keda_kinds_against_their_vendored_crds(built, tmp_path):
    for kind, schema in CRD_SCHEMAS.items():
        documents = [d for d in built if d["kind"] == kind]
        assert documents, kind
        result = check_crd(kind, schema, documents, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    user = next(d for d in built if d["kind"] == "KafkaUser" and d["spec"].get("authorization"))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert check_crd("KafkaUser", CRD_SCHEMAS["KafkaUser"], [user], tmp_path).returncode == 1, "a wrong one fails"


def check_crd(kind: str, schema: str, documents: list[dict], directory: Path) -> subprocess.CompletedProcess:
    paths = []
    for number, document in enumerate(documents):
        paths.append(directory / f"{kind}-{number}.json")
        paths[-1].write_text(json.dumps(document))
    return run(Path(sys.executable).parent / "check-jsonschema", "--schemafile", CRDS / schema, *paths)


def test_rendering_again_leaves_the_key_files_and_says_what_it_wrote(base, built, capsys):
    key = base / "secrets" / "auditor" / "auditor.ed25519"
    assert key.exists()
    assert main(["k8s", "render", "--out", str(base), "--namespace", "mlbus-test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert key.read_text() == "not a secret: a test's stand-in\n"
    assert report["files"]["kafka-users.yaml"] == ["KafkaUser"]
    assert "secrets/auditor/auditor.ed25519" in report["secret_files"]
