"""Storage: URI parsing, listing, reading and atomic writes on local folders."""

from __future__ import annotations

import os

import pytest

from pipelines.storage import Location, Storage, StorageOptions, parse_uri

pytestmark = pytest.mark.unit


def test_parse_s3_uri_strips_slashes():
    location = parse_uri("s3://bucket/incoming/2026-11-22/")
    assert location == Location("s3", "bucket/incoming/2026-11-22")
    assert location.uri == "s3://bucket/incoming/2026-11-22"
    assert location.join("a.pdf").uri == "s3://bucket/incoming/2026-11-22/a.pdf"


def test_parse_rejects_bucketless_and_unknown_schemes():
    with pytest.raises(ValueError, match="bucket"):
        parse_uri("s3://")
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        parse_uri("gs://bucket/x")


def test_parse_local_paths(tmp_path):
    assert parse_uri(str(tmp_path)) == Location("file", str(tmp_path))
    assert parse_uri(f"file://{tmp_path}/x/../y") == Location("file", f"{tmp_path}/y")


def test_relative_uri_resolves_against_a_folder():
    manifest_folder = Location("s3", "bucket/in/manifests")
    assert parse_uri("../images/a.png", relative_to=manifest_folder) == Location(
        "s3", "bucket/in/images/a.png"
    )
    assert parse_uri("s3://other/b.png", relative_to=manifest_folder) == Location("s3", "other/b.png")


def test_relative_to_and_within():
    base = Location("s3", "bucket/in")
    assert Location("s3", "bucket/in/sub/a.pdf").relative_to(base) == "sub/a.pdf"
    with pytest.raises(ValueError):
        Location("s3", "bucket/input/a.pdf").relative_to(base)
    assert Location("s3", "bucket/in/out/x").is_within(Location("s3", "bucket/in/out"))
    assert not Location("s3", "bucket/in/outer/x").is_within(Location("s3", "bucket/in/out"))
    assert not Location("file", "/bucket/in/x").is_within(base)


def test_list_files_sorted_recursive_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_bytes(b"22")
    (tmp_path / "one.txt").write_bytes(b"1")
    (tmp_path / ".hidden").write_bytes(b"x")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "inside.txt").write_bytes(b"x")
    storage = Storage(StorageOptions())
    listed = [
        (info.location.relative_to(parse_uri(str(tmp_path))), info.size)
        for info in storage.list_files(parse_uri(str(tmp_path)))
    ]
    assert listed == [("b/two.txt", 2), ("one.txt", 1)]


def test_list_missing_folder_is_empty_and_a_file_lists_itself(tmp_path):
    storage = Storage(StorageOptions())
    assert list(storage.list_files(parse_uri(str(tmp_path / "nothing")))) == []
    (tmp_path / "f.pdf").write_bytes(b"%PDF")
    [info] = storage.list_files(parse_uri(str(tmp_path / "f.pdf")))
    assert info.size == 4


def test_atomic_write_leaves_no_temporaries_and_overwrites(tmp_path):
    storage = Storage(StorageOptions())
    target = parse_uri(str(tmp_path / "out" / "date=2026-01-01" / "part-x.parquet"))
    storage.write_bytes_atomic(target, b"first")
    storage.write_bytes_atomic(target, b"second")
    assert storage.read_bytes(target) == b"second"
    assert os.listdir(tmp_path / "out" / "date=2026-01-01") == ["part-x.parquet"]
    assert storage.size_of(target) == 6


def test_remove_stale_temporaries_only_touches_its_prefix(tmp_path):
    (tmp_path / ".tmp-part-describe-abc.parquet-1234").write_bytes(b"half")
    (tmp_path / ".tmp-part-extract-abc.parquet-1234").write_bytes(b"other job")
    (tmp_path / "part-describe-abc.parquet").write_bytes(b"done")
    removed = Storage(StorageOptions()).remove_stale_temporaries(parse_uri(str(tmp_path)), "part-describe-")
    assert removed == 1
    assert sorted(os.listdir(tmp_path)) == [".tmp-part-extract-abc.parquet-1234", "part-describe-abc.parquet"]


def test_read_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        Storage(StorageOptions()).read_bytes(parse_uri(str(tmp_path / "missing.pdf")))
