"""Driver log pages through the line index, checked against reading the whole file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_livy.server.drivers import logs


def whole(path: Path) -> list[str]:
    """The reference: every line of the file, split at newlines."""
    return logs.decode(path.read_bytes())


def check_pages(path: Path, starts: list[int], sizes: list[int]) -> None:
    expected = whole(path)
    for start in starts:
        for size in sizes:
            lines, total = logs.read_page(path, start, size)
            assert total == len(expected)
            assert lines == (expected[start:] if size < 0 else expected[start : start + size]), (start, size)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "7.log"
    with open(path, "w") as handle:
        for number in range(5000):
            handle.write(f"line {number} " + "x" * (number % 300) + ("\r\n" if number % 7 == 0 else "\n"))
        handle.write("an unfinished line")
    return path


def test_pages_match_the_whole_file_around_every_mark(log_file: Path) -> None:
    step = logs.INDEX_STEP
    starts = [0, 1, step - 1, step, step + 1, 2 * step, 4999, 5000, 5001, 9000]
    check_pages(log_file, starts, [0, 1, 3, 100, step + 5, -1])
    assert logs.read_page(log_file, None, 3) == (whole(log_file)[-3:], 5001), "no start: the last lines"
    assert logs.read_page(log_file, None, -1) == (whole(log_file), 5001)
    assert logs.read_page(log_file, 5000, 5) == (["an unfinished line"], 5001)


def test_a_growing_log_is_counted_from_where_it_was(log_file: Path) -> None:
    logs.read_page(log_file, 0, 10)
    with open(log_file, "a") as handle:
        handle.write(" now finished\n")
        handle.writelines(f"more {number}\n" for number in range(3000))
    check_pages(log_file, [4999, 5000, 5001, 6000, 7999, 8000], [1, 50, -1])
    assert logs.read_page(log_file, 5000, 1)[0] == ["an unfinished line now finished"]


def test_a_replaced_or_truncated_log_is_counted_afresh(log_file: Path) -> None:
    logs.read_page(log_file, 0, 10)
    replacement = log_file.with_name("new.log")
    replacement.write_text("".join(f"other {number}\n" for number in range(2000)))
    os.replace(replacement, log_file)
    check_pages(log_file, [0, 1500, 1999], [10, -1])
    with open(log_file, "r+") as handle:
        handle.truncate(100)
    check_pages(log_file, [0, 5], [3, -1])


def test_a_missing_log_is_an_empty_page(tmp_path: Path) -> None:
    assert logs.read_page(tmp_path / "gone.log", 0, 10) == ([], 0)
    assert logs.read_page(tmp_path / "gone.log", None, 10) == ([], 0)
