"""Where a consumer group resumes after a restore: its committed offset mapped onto the restored partition,
whose records are numbered 0, 1, 2, … although the originals had gaps (transaction markers, compaction)."""
from services.bus.backup import restored_offset

ORIGINAL = [0, 1, 3, 4, 7, 9]          # offsets 2, 5, 6 and 8 held transaction markers or compacted records


def test_a_group_resumes_at_the_first_record_it_had_not_read():
    assert restored_offset(ORIGINAL, 0) == 0            # had read nothing
    assert restored_offset(ORIGINAL, 3) == 2            # next was offset 3, now the third record
    assert restored_offset(ORIGINAL, 5) == 4            # committed past a marker: the next record is 7, now 4
    assert restored_offset(ORIGINAL, 10) == 6           # had read everything: the new end


def test_an_empty_or_wholly_compacted_partition_resumes_at_zero():
    assert restored_offset([], 0) == restored_offset([], 42) == 0
