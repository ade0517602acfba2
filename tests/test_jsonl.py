"""indexer.jsonl: the one JSON Lines reader and atomic writer."""

from __future__ import annotations

import gzip

import pytest

from indexer.jsonl import JsonlError, iter_jsonl, read_jsonl, write_jsonl


def test_write_then_read_round_trips_unicode_and_leaves_no_temp_file(tmp_path):
    rows = [{"_id": "a", "text": "naïve café"}, {"_id": "b", "n": [1, 2]}]
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, iter(rows))
    assert read_jsonl(path) == rows
    assert "naïve café" in path.read_text(encoding="utf-8")   # not \u-escaped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_write_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"i": i} for i in range(5)])
    write_jsonl(path, [{"i": 9}])
    assert read_jsonl(path) == [{"i": 9}]


def test_read_skips_a_torn_last_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "appended.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3, "b', encoding="utf-8")
    with caplog.at_level("WARNING", logger="indexer.jsonl"):
        assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert "malformed line" in caplog.text


def test_iter_is_strict_and_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n', encoding="utf-8")
    it = iter_jsonl(path)
    assert next(it) == (1, {"a": 1})
    with pytest.raises(JsonlError, match=r"bad\.jsonl:3 is not a JSON object"):
        next(it)
    path.write_text('{"a": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(JsonlError, match=r"bad\.jsonl:2 is not valid JSON"):
        list(iter_jsonl(path))


def test_iter_reads_gzip(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write('{"_id": "d1"}\n{"_id": "d2"}\n')
    assert [row["_id"] for _, row in iter_jsonl(path)] == ["d1", "d2"]
