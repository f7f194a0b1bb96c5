"""A task's tools: what they answer, and every way out of the task's folder refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.sandbox import Limits
from agents.tool_calls import ToolCall
from agents.toolbox import MOST_ANSWER_CHARS, TOOLS, Toolbox


@pytest.fixture
def box(tmp_path: Path) -> Toolbox:
    files = tmp_path / "files"
    files.mkdir()
    (files / "sales.csv").write_text("month,amount\njan,10\nfeb,32\nmar,0\n")
    (files / "notes.txt").write_text("The lighthouse was built in 1851.\nIt is 30 m tall.\n")
    (tmp_path / "secret.txt").write_text("not the task's")
    (files / "link.txt").symlink_to(tmp_path / "secret.txt")
    return Toolbox(files, limits=Limits(cpu_s=2, wall_s=5, memory_mb=256))


async def ask(box: Toolbox, tool: str, **arguments: object) -> str:
    return await box.run(ToolCall("c1", tool, dict(arguments)))


async def test_each_tool_answers(box: Toolbox) -> None:
    assert box.listing() == ["notes.txt", "sales.csv"]  # the link out is not the task's
    assert tuple(t.name for t in box.tools()) == TOOLS
    assert (await ask(box, "read_file", name="notes.txt")).startswith("The lighthouse")
    assert await ask(box, "search_files", pattern="tall") == "notes.txt:2: It is 30 m tall."
    assert await ask(box, "search_files", pattern="[unclosed") == "No line matches '[unclosed'."
    code = "import csv\nprint(sum(int(r['amount']) for r in csv.DictReader(open('sales.csv'))))"
    ran = await ask(box, "run_python", code=code)
    assert ran.startswith("exit status 0") and "\n42\n" in ran
    assert await ask(box, "calculator", expression="sqrt(1764)") == "42.0"


@pytest.mark.parametrize(
    "name", ["../secret.txt", "/etc/passwd", "link.txt", "", "files/notes.txt", "missing.txt"]
)
async def test_no_name_leads_out_of_the_tasks_folder(box: Toolbox, name: str) -> None:
    answer = await ask(box, "read_file", name=name)
    assert answer.startswith("refused:") and "not the task's" not in answer


async def test_fetching_a_private_address_is_refused(box: Toolbox) -> None:
    for url in ("http://127.0.0.1:5432/", "http://169.254.169.254/latest/", "file:///etc/passwd"):
        assert (await ask(box, "fetch_url", url=url)).startswith("refused:")


async def test_a_call_the_model_got_wrong_is_answered_and_long_answers_cut(box: Toolbox) -> None:
    wrong = ToolCall("c1", "calculator", {}, "Its arguments are not valid JSON.")
    assert await box.run(wrong) == "refused: Its arguments are not valid JSON."
    assert (await ask(box, "calculator", expression="__import__('os')")).startswith("refused:")
    (box.files / "big.txt").write_text("x" * (MOST_ANSWER_CHARS * 3))
    long = await ask(box, "read_file", name="big.txt")
    assert len(long) < MOST_ANSWER_CHARS + 100 and long.endswith("more characters]")
    endless = await ask(box, "run_python", code="while True: print('y' * 1000)")
    assert (
        endless.startswith("stopped: it wrote more than")
        and len(endless) <= MOST_ANSWER_CHARS + 100
    )
    assert "sales.csv" in box.listing()  # the sandbox worked on copies
