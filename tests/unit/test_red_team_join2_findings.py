"""Red team, round two (issue 36, 7914a88 56bf733 53e6561 a1fc885): each test was a finding (F1-F8; fixed, the
tests plain now, but for F5's offset past int64, still a strict xfail). F9 (ties the places break are ordered value
by value, slower than the object path) has no test here: it is a speed, said in the session's note."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.adapters import DataFileError
from services.bus.errors import is_infrastructure
from services.domain.features_join import EXPIRED, columns_of, join_columns
from services.domain.features_lookups import LabelRow, as_of_join
from services.domain.features_windows import FeatureValue, SourceSpan
from tests.unit.test_red_team_columnar_join import (AMOUNT, HOUR, SETTINGS, TOPIC, TRAINING_FAILURES, VIEW,
                                                    FeatureSetRefused, OfflineStore, both, hand_written, labels,
                                                    snapshot_digest, training_set, value)


def _trainer_outcome(error: BaseException) -> str:
    """What Trainer.on_request and the runtime make of an exception out of _join_features."""
    if isinstance(error, (DataFileError, FeatureSetRefused)) or isinstance(error, TRAINING_FAILURES):
        return "refusal"
    return "crash" if is_infrastructure(error) else "dead-letter"


def _join(store: OfflineStore):
    history, _ = store.snapshot([VIEW])
    built = training_set(labels(("c1", HOUR + 10)), SETTINGS, [VIEW], history)
    return built, snapshot_digest(built.used)


# F1: a corrupt part makes the trainer crash (OSError: infrastructure) on every request with feature views --------
def test_a_corrupt_part_is_a_refusal_not_a_crash(tmp_path):
    store = OfflineStore(tmp_path)
    store.write([value(1.5, 1)], "p0")
    folder = store.folder(VIEW.name, VIEW.version)
    data = bytearray((folder / "p0.parquet").read_bytes())
    for i in range(len(data) - 300, len(data) - 8):
        data[i] ^= 0x33
    (folder / "x.parquet").write_bytes(bytes(data))
    with pytest.raises(Exception) as caught:
        _join(store)
    assert _trainer_outcome(caught.value) == "refusal", repr(caught.value)


# F2: a part with a column of another type: ArrowNotImplementedError, neither refused nor infrastructure ----------
@pytest.mark.parametrize("column,cells", [("feature", [1]), ("sources", ["x"])])
def test_a_part_with_a_column_of_another_type_is_a_refusal(tmp_path, column, cells):
    store = OfflineStore(tmp_path)
    store.write([value(1.5, 1)], "p0")
    part = store.folder(VIEW.name, VIEW.version) / "p0.parquet"
    table = pq.read_table(part)
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, pa.array(cells)), part)
    with pytest.raises(Exception) as caught:
        _join(store)
    assert _trainer_outcome(caught.value) == "refusal", repr(caught.value)


# F3: typed number disagreeing with the text in a way the digest's reconstruction hides -----------------------------
@pytest.mark.parametrize("written,columns", [
    (True, dict(kind=[1], number=[0.5])),                   # BOOL: bool(0.5) is True
    (1, dict(kind=[2], number=[1.9])),                      # INT: "[1]" is digits, float 1 != 1.9, int(1.9) == 1
    (None, dict(kind=[0], number=[5.0])),                   # NULL: the number is not looked at
], ids=["bool-0.5", "int-1.9", "null-5"])
def test_typed_numbers_that_differ_from_the_text_are_refused_or_joined_as_the_text(tmp_path, written, columns):
    store = hand_written(tmp_path, [value(written, 1)], **columns)
    frame = labels(("c1", HOUR + 10))
    try:
        built, cells, _ = both(store, frame)
        snapshot_digest(built.used)
    except FeatureSetRefused:
        return                                              # refused: fine
    reference = [np.nan if v is None else float(v) for v in cells[AMOUNT]]
    np.testing.assert_array_equal(built.frame[AMOUNT].to_numpy(), reference)


# F4: typed sources disagreeing with sources_json: the cut and the reference's cut differ, nothing refuses --------
def test_typed_sources_that_differ_from_the_text_are_refused_or_cut_as_read_cuts(tmp_path):
    store = OfflineStore(tmp_path)
    store.write([value(1.0, 1)], "p0")
    store.write([value(2.0, 99, at=HOUR + 5)], "p1")
    part = store.folder(VIEW.name, VIEW.version) / "p1.parquet"
    table = pq.read_table(part)
    field = table.schema.field("sources")
    pq.write_table(table.set_column(table.schema.get_field_index("sources"), field, pa.array(
        [[{"topic": TOPIC, "partition": 0, "first_offset": 2, "last_offset": 2, "events": 1}]], field.type)), part)
    until = {(TOPIC, 0): 50}
    history, _ = store.snapshot([VIEW], until)
    try:
        built = training_set(labels(("c1", HOUR + 10)), SETTINGS, [VIEW], history)
        snapshot_digest(built.used)
    except FeatureSetRefused:
        return
    assert built.frame[AMOUNT].tolist() == [v.value for v in store.read(VIEW.name, VIEW.version, until)][-1:]


# F5: _canonical_sources keeps "-0" and numbers past int64 as written: the used values' digest is not the objects' --
@pytest.mark.parametrize("text", ['[["%s",-0,1,1,1]]' % TOPIC, '[["%s",0,1,1,9999999999999999999]]' % TOPIC,
                                  '[["%s",0,1,1,1]' % TOPIC, '[["%s",0,1,1]]' % TOPIC])
def test_the_used_values_digest_is_the_objects_for_any_sources_text(tmp_path, text):
    """Or the join is refused, with the reason: a text that does not read as spans (past a long, not JSON, a span
    of four) is the store's refusal, at the join or at the digest, never the edge's InvalidField or a TypeError."""
    store = hand_written(tmp_path, [value(1.5, 1)], sources_json=[text])
    try:
        built, digest = _join(store)
        assert digest == snapshot_digest(list(built.used))
    except FeatureSetRefused as refusal:
        assert "cannot read" in str(refusal) and text[:30] in str(refusal)


# F6: the age of a value is an int64 difference: it wraps for a value far before the label --------------------------
def test_a_value_more_than_2_63_ms_before_the_label_is_expired():
    old = FeatureValue(VIEW.name, VIEW.version, "last_amount", "b", -2**63, 1.0, None, (SourceSpan(TOPIC, 0, 1, 1, 1),))
    assert as_of_join([LabelRow("b", 1)], [VIEW], [old])[0].lookups[0].missing == "expired"
    [looked] = join_columns(["b"], np.array([1]), VIEW, columns_of([old])[0], ["last_amount"])
    assert looked.state.tolist() == [EXPIRED]


# F7: _typed_value's int parse raises a bare ValueError ('²', '--5'): a "training failed" refusal, not the reason ----
@pytest.mark.parametrize("text", ["[²]", "[--5]"])
def test_an_int_text_of_odd_digits_is_refused_with_the_reason(tmp_path, text):
    store = hand_written(tmp_path, [value(2, 1)], kind=[2], number=[2.0], value_json=[text])
    with pytest.raises(FeatureSetRefused):
        _join(store)


# F8: _kept's shortcut (pc.all skips nulls) keeps a row whose view or version is null: it is joined as the view's ----
@pytest.mark.parametrize("column,cells", [("view", [None, VIEW.name]), ("version", [None, VIEW.version])])
def test_a_row_with_a_null_view_or_version_is_left_out(tmp_path, column, cells):
    store = hand_written(tmp_path, [value(9.0, 1, at=HOUR + 5), value(1.0, 2)], **{column: cells})
    assert [v.value for v in store.read(VIEW.name, VIEW.version)] == [1.0]
    built, _ = _join(store)
    assert built.frame[AMOUNT].tolist() == [1.0]
