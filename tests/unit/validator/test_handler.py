"""The validator's handler with in-memory ports (contracts, loader, verifier): refusals are reports."""
from datetime import datetime, timezone

from services.adapters import DataFileError
from services.bus.settings import PROJECT_ROOT
from services.validator.adapters import ContractFiles
from services.validator.contract import ContractError
from services.validator.handlers import Validator
from tests.support.handlers import accept, received

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)
CONTRACT = ContractFiles(PROJECT_ROOT / "schemas" / "datasets")("breast_cancer")
BATCH = {"batch_id": "b1", "dataset": "iris", "uri": "file:///dev/zero", "sha256": "0" * 64, "rows": 10,
         "size_bytes": 1, "format": "csv", "publisher": "app", "published_at": NOW, "labels": {}, "signer": None,
         "signer_key": None, "signature": None}


def refuse_load(*_args, **_kw):
    raise DataFileError("location", "snapshot file:///dev/zero is outside the store: refused")


class Contracts:
    def __call__(self, dataset: str):
        if dataset != "iris":
            raise ContractError(f"{dataset!r} is not a dataset name")
        return CONTRACT


def test_a_file_outside_the_store_fails_validation_once_and_is_then_skipped():
    validator = Validator(Contracts(), refuse_load, set(), accept, clock=lambda: NOW)
    [report] = validator(received("mlbus.DataBatch", BATCH))
    assert not report.value["passed"] and report.value["failures"][0]["check"] == "location"
    assert validator(received("mlbus.DataBatch", BATCH)) == []


def test_a_contract_the_dataset_name_cannot_have_is_a_contract_failure():
    validator = Validator(Contracts(), refuse_load, set(), accept, clock=lambda: NOW)
    [report] = validator(received("mlbus.DataBatch", {**BATCH, "batch_id": "b2", "dataset": "other"}))
    assert report.value["failures"][0]["check"] == "contract"


def test_a_batch_refused_for_its_signature_marks_no_batch_id_judged():
    from services.bus.signing import Verdict
    from services.validator.adapters import signature_refused
    forged = Validator(Contracts(), refuse_load, set(), lambda m, r: Verdict(refusal="unsigned"), clock=lambda: NOW)
    [refused] = forged(received("mlbus.DataBatch", {**BATCH, "publisher": "cli:etl"}))
    assert refused.value["failures"][0]["check"] == "signature" and signature_refused(refused.value)
    assert "b1" not in forged.validated
    [judged] = forged(received("mlbus.DataBatch", BATCH, offset=1))         # the real batch (app's), after
    assert judged.value["failures"][0]["check"] == "location" and judged.value["validation_id"] != \
        refused.value["validation_id"]
