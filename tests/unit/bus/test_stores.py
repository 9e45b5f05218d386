"""Data and artifact files are read only from their store, only as regular files, only up to a cap."""
import hashlib
import io
import os

import pandas as pd
import pytest

from services.domain import ArtifactRefused
from services.adapters import ArtifactStore, DataFileError, SnapshotStore, save_model


def snapshot(root, text="a,b\n1,2\n3,4\n5,6\n"):
    path = root / "iris" / "s.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path.as_uri(), hashlib.sha256(text.encode()).hexdigest()


def test_a_snapshot_in_its_store_loads(tmp_path):
    uri, sha = snapshot(tmp_path)
    assert len(SnapshotStore(tmp_path, 1 << 20).load(uri, sha, "csv")) == 3


@pytest.mark.parametrize("where, check", [("/dev/zero", "location"), ("/etc/hostname", "location"),
                                          ("DIR", "file"), ("DIR/../../x.csv", "file")])
def test_devices_directories_and_files_outside_the_store_are_refused_unread(tmp_path, where, check):
    store = SnapshotStore(tmp_path / "data", 1 << 20)
    (tmp_path / "data" / "DIR").mkdir(parents=True)
    uri = where.replace("DIR", str(tmp_path / "data" / "DIR"))
    with pytest.raises(DataFileError) as refused:
        store.load(uri, "0" * 64, "csv")
    assert refused.value.check in (check, "location", "file")


def test_a_symlink_out_of_the_store_is_refused(tmp_path):
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    (tmp_path / "data").mkdir()
    os.symlink(outside, tmp_path / "data" / "link.csv")
    with pytest.raises(DataFileError, match="outside the store"):
        SnapshotStore(tmp_path / "data", 1 << 20).load((tmp_path / "data" / "link.csv").as_uri(), "0" * 64, "csv")


def test_a_file_past_the_cap_is_refused_before_it_is_read(tmp_path):
    uri, sha = snapshot(tmp_path)
    with pytest.raises(DataFileError, match="more than the cap") as refused:
        SnapshotStore(tmp_path, 8).load(uri, sha, "csv")
    assert refused.value.check == "size"


def test_a_parquet_file_with_more_rows_than_the_contract_allows_is_refused_from_its_footer(tmp_path):
    buffer = io.BytesIO()
    pd.DataFrame({"a": range(1000)}).to_parquet(buffer)
    path = tmp_path / "d" / "x.parquet"
    path.parent.mkdir()
    path.write_bytes(buffer.getvalue())
    sha = hashlib.sha256(buffer.getvalue()).hexdigest()
    with pytest.raises(DataFileError, match="1000 rows") as refused:
        SnapshotStore(tmp_path, 1 << 20).load(path.as_uri(), sha, "parquet", max_rows=10)
    assert refused.value.check == "rows"


def test_a_parquet_bomb_is_refused_by_its_decompressed_size(tmp_path):
    buffer = io.BytesIO()
    pd.DataFrame({"a": [0] * 200_000}).to_parquet(buffer, compression="zstd")
    payload = buffer.getvalue()
    path = tmp_path / "bomb.parquet"
    path.write_bytes(payload)
    assert len(payload) < 20_000
    with pytest.raises(DataFileError, match="decompresses"):
        SnapshotStore(tmp_path, 100_000).load(path.as_uri(), hashlib.sha256(payload).hexdigest(), "parquet")


def test_artifacts_that_are_not_skops_files_are_refused_not_raised(tmp_path):
    store = ArtifactStore(tmp_path, 1 << 20)
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ArtifactRefused, match="not a readable skops file"):
        store.load(junk.as_uri(), hashlib.sha256(b"not a zip at all").hexdigest())
    (tmp_path / "dir.skops").mkdir()
    with pytest.raises(ArtifactRefused, match="not a regular file"):
        store.load((tmp_path / "dir.skops").as_uri(), "0" * 64)


def test_a_saved_model_loads_from_its_store(tmp_path):
    from sklearn.linear_model import LogisticRegression
    uri, sha = save_model(tmp_path, LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    assert ArtifactStore(tmp_path, 1 << 20).load(uri, sha).predict([[1.0]])[0] == 1


# Stores at an fsspec URL: the same rules, through fsspec's in-memory filesystem (no I/O).

def test_a_model_and_a_snapshot_round_trip_through_a_store_at_a_url(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from services.adapters import store_snapshot
    uri, sha = save_model("memory://unit-store/artifacts", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    assert uri == f"memory:///unit-store/artifacts/{sha}.skops"                 # memory's URIs keep the root's /
    assert ArtifactStore("memory://unit-store/artifacts", 1 << 20).load(uri, sha).predict([[1.0]])[0] == 1
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3,4\n")
    kept = store_snapshot("memory://unit-store/data", "iris", tmp_path / "s.csv")
    assert kept.uri == f"memory:///unit-store/data/iris/{kept.sha256}.csv"
    assert len(SnapshotStore("memory://unit-store/data", 1 << 20).load(kept.uri, kept.sha256, "csv")) == 2


@pytest.mark.parametrize("uri", ["memory://unit-store/other/x.csv", "memory://unit-store/data/../other/x.csv",
                                 "file:///etc/hostname", "/etc/hostname", "memory://unit-store/data",
                                 "s3://unit-store/data/iris/x.csv"])
def test_a_store_at_a_url_refuses_what_is_outside_it_unread(uri):
    from fsspec.implementations.memory import MemoryFileSystem
    MemoryFileSystem().pipe_file("/unit-store/other/x.csv", b"secret")
    with pytest.raises(DataFileError, match="outside the store"):
        SnapshotStore("memory://unit-store/data", 1 << 20).load(uri, "0" * 64, "csv")


def test_a_store_at_a_url_refuses_a_file_past_the_cap_and_a_missing_one():
    from fsspec.implementations.memory import MemoryFileSystem
    MemoryFileSystem().pipe_file("/unit-store/big/a.csv", b"x" * 100)
    with pytest.raises(DataFileError, match="more than the cap"):
        SnapshotStore("memory://unit-store/big", 99).load("memory://unit-store/big/a.csv", "0" * 64, "csv")
    with pytest.raises(DataFileError, match="does not exist"):
        SnapshotStore("memory://unit-store/big", 99).load("memory://unit-store/big/none.csv", "0" * 64, "csv")


def test_a_store_nobody_can_reach_is_a_configuration_error_not_bad_data():
    from services.bus.settings import ConfigError
    with pytest.raises(ConfigError, match="Protocol not known"):
        SnapshotStore("nosuch://bucket/data", 1 << 20).load("nosuch://bucket/data/x.csv", "0" * 64, "csv")
