"""Unit tests for harness.defense_output.parse_predictions: nothing in the file may stop the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import defense_output
from harness.defense_output import Answer, ParsedPredictions, parse_predictions

EXPECTED = {"a.png", "b.png", "c.png"}


def parse_bytes(tmp_path: Path, data: bytes, expected: set[str] = EXPECTED) -> ParsedPredictions:
    path = tmp_path / "out.csv"
    path.write_bytes(data)
    return parse_predictions(path, expected=expected)


def test_good_rows(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,1\nb.png,22\r\nc.png,0\n")
    assert parsed.answers == {"a.png": Answer(1, ""), "b.png": Answer(22, ""), "c.png": Answer(0, "")}
    assert parsed.notes == []
    assert list(parsed.answers) == ["a.png", "b.png", "c.png"]


def test_missing_file(tmp_path):
    parsed = parse_predictions(tmp_path / "nope.csv", expected=EXPECTED)
    assert parsed.answers == {name: Answer(None, "no output file") for name in EXPECTED}
    assert parsed.notes == ["no output file"]


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "out.csv").mkdir()
    parsed = parse_predictions(tmp_path / "out.csv", expected=EXPECTED)
    assert parsed.answers["a.png"] == Answer(None, "no output file")


def test_symlink_is_not_followed(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("a.png,1\nb.png,2\nc.png,3\n")
    link = tmp_path / "out.csv"
    link.symlink_to(real)
    parsed = parse_predictions(link, expected=EXPECTED)
    assert parsed.answers == {name: Answer(None, "output file is a symbolic link") for name in EXPECTED}
    assert parsed.notes == ["output file is a symbolic link"]


def test_dangling_symlink(tmp_path):
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "nowhere.csv")
    parsed = parse_predictions(link, expected={"a.png"})
    assert parsed.answers == {"a.png": Answer(None, "output file is a symbolic link")}


def test_empty_file(tmp_path):
    parsed = parse_bytes(tmp_path, b"")
    assert parsed.answers == {name: Answer(None, "missing row") for name in EXPECTED}
    assert parsed.notes == []


def test_empty_expected_set(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,1\n", expected=set())
    assert parsed.answers == {}
    assert parsed.notes == ["1 row(s) name files that were not given (e.g. 'a.png')"]


def test_header_row_counts_as_unknown_name(tmp_path):
    parsed = parse_bytes(tmp_path, b"filename,label\na.png,1\nb.png,2\nc.png,3\n")
    assert parsed.answers == {"a.png": Answer(1, ""), "b.png": Answer(2, ""), "c.png": Answer(3, "")}
    assert parsed.notes == ["1 row(s) name files that were not given (e.g. 'filename')"]


def test_missing_rows_and_unknown_names(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,1\nzzz.png,2\nA.PNG,3\n./b.png,4\n")
    assert parsed.answers == {"a.png": Answer(1, ""), "b.png": Answer(None, "missing row"),
                              "c.png": Answer(None, "missing row")}
    assert parsed.notes == ["3 row(s) name files that were not given (e.g. 'zzz.png')"]


@pytest.mark.parametrize("cell, problem", [
    ("3.5", "non-integer label '3.5'"),
    ("nan", "non-integer label 'nan'"),
    ("", "non-integer label ''"),
    ("cat", "non-integer label 'cat'"),
    ("1e3", "non-integer label '1e3'"),
    ("0x10", "non-integer label '0x10'"),
    ("x" * 25, "non-integer label 'xxxxxxxxxxxxxxxxxxxx…'"),
])
def test_non_integer_labels(tmp_path, cell, problem):
    parsed = parse_bytes(tmp_path, f"a.png,{cell}\nb.png,2\n".encode())
    assert parsed.answers["a.png"] == Answer(None, problem)
    assert parsed.answers["b.png"] == Answer(2, "")
    assert parsed.answers["c.png"] == Answer(None, "missing row")


@pytest.mark.parametrize("rows", [b"a.png,1\na.png,2\n", b"a.png,x\na.png,1\n", b"a,1\na.png,2\n"])
def test_duplicate_rows(tmp_path, rows):
    parsed = parse_bytes(tmp_path, rows + b"b.png,5\n")
    assert parsed.answers["a.png"] == Answer(None, "duplicate rows")
    assert parsed.answers["b.png"] == Answer(5, "")


def test_rows_with_one_column(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png\nb.png,2\njunk\n")
    assert parsed.answers == {"a.png": Answer(None, "missing row"), "b.png": Answer(2, ""),
                              "c.png": Answer(None, "missing row")}
    assert parsed.notes == ["2 row(s) without a label column"]


def test_both_kinds_of_notes(tmp_path):
    parsed = parse_bytes(tmp_path, b"x.png,1\na.png\n")
    assert parsed.notes == ["1 row(s) name files that were not given (e.g. 'x.png')",
                            "1 row(s) without a label column"]


def test_extra_columns_are_ignored(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,1,0.93,extra\n")
    assert parsed.answers["a.png"] == Answer(1, "")


def test_whitespace_around_cells_and_blank_lines(tmp_path):
    parsed = parse_bytes(tmp_path, b"\n  a.png , 7 \n\n\t b.png\t,\t8\t\n , \n")
    assert parsed.answers == {"a.png": Answer(7, ""), "b.png": Answer(8, ""),
                              "c.png": Answer(None, "missing row")}
    assert parsed.notes == []


def test_quoted_cells(tmp_path):
    parsed = parse_bytes(tmp_path, b'"a.png","4"\n')
    assert parsed.answers["a.png"] == Answer(4, "")


def test_signed_labels_are_not_predictions_and_large_ones_are(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,-1\nb.png,+3\nc.png,100000\n")
    assert parsed.answers == {"a.png": Answer(None, "non-integer label '-1'"),
                              "b.png": Answer(None, "non-integer label '+3'"), "c.png": Answer(100000, "")}


def test_binary_garbage(tmp_path):
    parsed = parse_bytes(tmp_path, bytes(range(1, 10)) + b"\xff\xfe\x80,\xc3\n" + b"b.png,2\n")
    assert parsed.answers == {"a.png": Answer(None, "missing row"), "b.png": Answer(2, ""),
                              "c.png": Answer(None, "missing row")}
    assert len(parsed.notes) == 1 and parsed.notes[0].startswith("1 row(s) name files that were not given (e.g. '\\x01")


def test_nul_bytes_are_dropped(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.p\0ng,1\0\nb.png,\x002\n\0\0\0\n")
    assert parsed.answers == {"a.png": Answer(1, ""), "b.png": Answer(2, ""),
                              "c.png": Answer(None, "missing row")}


def test_carriage_return_inside_a_line_does_not_raise(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,1\rb.png,2\nc.png,3\n")
    assert parsed.answers["c.png"] == Answer(3, "")


def test_huge_field_does_not_raise(tmp_path):
    parsed = parse_bytes(tmp_path, b"a.png,1\nb.png," + b"9" * 200_000 + b"\nc.png,3\n")
    assert parsed.answers["a.png"] == Answer(1, "")
    assert parsed.answers["c.png"] == Answer(3, "")
    assert parsed.answers["b.png"].label is None


def test_oversize_file_is_cut_at_the_limit(tmp_path, monkeypatch):
    data = b"a.png,1\nb.png,2\nc.png,3\n"
    monkeypatch.setattr(defense_output, "MAX_CSV_BYTES", 16)  # exactly "a.png,1\nb.png,2\n"
    parsed = parse_bytes(tmp_path, data)
    assert parsed.answers == {"a.png": Answer(1, ""), "b.png": Answer(2, ""),
                              "c.png": Answer(None, "missing row")}
    assert len(parsed.notes) == 1
    assert parsed.notes[0].startswith("output file larger than ")
    assert parsed.notes[0].endswith(" MiB; read only its beginning")


def test_file_exactly_at_the_limit_is_read_whole(tmp_path, monkeypatch):
    data = b"a.png,1\nb.png,2\nc.png,3\n"
    monkeypatch.setattr(defense_output, "MAX_CSV_BYTES", len(data))
    parsed = parse_bytes(tmp_path, data)
    assert parsed.notes == []
    assert parsed.answers["c.png"] == Answer(3, "")


def test_oversize_cut_mid_row_does_not_invent_a_label(tmp_path, monkeypatch):
    data = b"a.png,1\nb.png,12\n"
    monkeypatch.setattr(defense_output, "MAX_CSV_BYTES", 15)  # "a.png,1\nb.png,1"
    parsed = parse_bytes(tmp_path, data, expected={"a.png", "b.png"})
    assert parsed.answers["a.png"] == Answer(1, "")
    assert parsed.answers["b.png"] == Answer(None, "missing row")
