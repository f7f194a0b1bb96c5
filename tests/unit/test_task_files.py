"""A task's files: plain names only, text only, within the limits; kept and unpacked by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.images import Folder
from tasks import files


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\notes.txt", "notes.txt"),
        (".bashrc", "bashrc"),
        ("sales report (final).csv", "sales_report_final_.csv"),
        ("...", "file.txt"),
        ("", "file.txt"),
    ],
)
def test_a_files_name_is_reduced_to_a_plain_name(given: str, kept: str) -> None:
    assert files.plain_name(given) == kept


def test_only_text_within_the_limit_is_taken() -> None:
    assert files.check("a.csv", b"month,amount\njan,10\n") == "month,amount\njan,10\n"
    with pytest.raises(files.FileRefused, match="not a text file"):
        files.check("a.bin", b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(files.FileRefused, match="not UTF-8"):
        files.check("a.txt", "café".encode("latin-1"))
    with pytest.raises(files.FileRefused, match="larger than 2 MB"):
        files.check("big.txt", b"x" * (files.MOST_BYTES + 1))


async def test_files_are_kept_under_the_run_and_unpacked_into_its_folder(tmp_path: Path) -> None:
    shelf = Folder(tmp_path / "shelf")
    names = await files.keep(shelf, "run-1", [("a.txt", b"one"), ("dir/a.txt", b"two")])
    assert names == ["a.txt", "1_a.txt"]  # the same plain name twice: both kept
    folder = await files.unpack(shelf, "run-1", names, tmp_path / "scratch")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "a.txt": b"one",
        "1_a.txt": b"two",
    }
    assert await files.unpack(shelf, "run-2", names, tmp_path / "scratch") != folder
    assert not list((tmp_path / "scratch" / "run-2").iterdir())  # another run's files: none
    with pytest.raises(files.FileRefused, match="at most 5 files"):
        await files.keep(shelf, "run-3", [(f"{n}.txt", b"x") for n in range(6)])
    await files.clear(folder)
    assert not folder.exists()
