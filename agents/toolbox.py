"""The tools a long task's model may call, each safe offline, each answer cut to a size a model
can read.

- `read_file` and `search_files`: the person's files for this task, in one folder; a name that
  leads anywhere else (`..`, an absolute path, a link out of the folder) is refused;
- `fetch_url`: a web page through the guarded client (agents/fetch.py: public addresses only);
- `run_python`: code in the sandbox (agents/sandbox.py), with the task's files beside it;
- `calculator`: arithmetic (agents/calculator.py).

A tool's failure is its answer ("refused: ..."), for the model to read and do better; it does not
end the task.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents import calculator, fetch, sandbox
from agents.errors import AgentError
from agents.tool_calls import Tool, ToolCall

TOOLS = ("read_file", "search_files", "fetch_url", "run_python", "calculator")  # by name
MOST_ANSWER_CHARS = 8_000
MOST_FILE_BYTES = 2 * 2**20
MOST_MATCHES = 50

Run = Callable[[dict[str, Any]], Awaitable[str]]


def _object(**properties: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": d} for name, d in properties.items()
        },
        "required": list(properties),
    }


@dataclass(frozen=True)
class Answer:
    text: str
    refused: bool = False  # the tool did not run (bad arguments, a name or address refused)


@dataclass
class Toolbox:
    """The tools of one task: its files' folder, and the limits of its fetches and code."""

    files: Path
    fetch_allowed: Sequence[fetch.Network] = ()
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)

    def tools(self) -> list[Tool]:
        return [
            Tool("read_file", "Read one of the task's files (text).",
                 _object(name="The file's name, as listed.")),
            Tool("search_files", "Find the lines of the task's files that match a word or "
                 "regular expression.", _object(pattern="A word or regular expression.")),
            Tool("fetch_url", "Fetch a public web page (http or https) as text.",
                 _object(url="The page's URL.")),
            Tool("run_python", "Run Python 3 code (standard library only, no network) with the "
                 "task's files in its working directory; what it prints comes back.",
                 _object(code="The program.")),
            Tool("calculator", "Evaluate an arithmetic expression (+ - * / // % **, sqrt, log, "
                 "sin, pi...).", _object(expression="The expression.")),
        ]  # fmt: skip

    def listing(self) -> list[str]:
        """The names of the task's files."""
        if not self.files.is_dir():
            return []
        return sorted(p.name for p in self.files.iterdir() if p.is_file() and not p.is_symlink())

    async def run(self, call: ToolCall) -> str:
        """What the tool answers to `call` (a refusal is an answer too)."""
        return (await self.answer(call)).text

    async def answer(self, call: ToolCall) -> Answer:
        """What the tool answers to `call`, and whether it refused (then it did no work)."""
        if call.problem:
            return Answer(f"refused: {call.problem}", refused=True)
        runs: dict[str, Run] = {
            "read_file": self._read, "search_files": self._search, "fetch_url": self._fetch,
            "run_python": self._python, "calculator": self._calculate,
        }  # fmt: skip
        try:
            answer = await runs[call.name](call.arguments)
        except (AgentError, ValueError, OSError) as refused:
            return Answer(cut(f"refused: {refused}"), refused=True)
        return Answer(cut(answer))

    def _file(self, name: object) -> Path:
        """The task's file called `name`; `ValueError` for any name that leads elsewhere."""
        if not isinstance(name, str) or not name or Path(name).name != name:
            raise ValueError(f"{name!r} is not the name of one of the task's files.")
        path = self.files / name
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"There is no file called {name!r}; the files are {self.listing()}.")
        if path.resolve().parent != self.files.resolve():
            raise ValueError(f"{name!r} is not the name of one of the task's files.")
        return path

    async def _read(self, arguments: dict[str, Any]) -> str:
        path = self._file(arguments.get("name"))
        data = await asyncio.to_thread(_head, path, MOST_FILE_BYTES)
        return data.decode(errors="replace")

    async def _search(self, arguments: dict[str, Any]) -> str:
        pattern = str(arguments.get("pattern", ""))
        if not pattern or len(pattern) > 200:
            raise ValueError("Give a pattern of 1 to 200 characters.")
        try:
            wanted = re.compile(pattern, re.IGNORECASE)
        except re.error:
            wanted = re.compile(re.escape(pattern), re.IGNORECASE)
        found = await asyncio.to_thread(self._matches, wanted)
        return "\n".join(found) if found else f"No line matches {pattern!r}."

    def _matches(self, wanted: re.Pattern[str]) -> list[str]:
        found: list[str] = []
        for name in self.listing():
            text = _head(self.files / name, MOST_FILE_BYTES).decode(errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if wanted.search(line[:2000]):
                    found.append(f"{name}:{number}: {line[:300]}")
                    if len(found) >= MOST_MATCHES:
                        return found
        return found

    async def _fetch(self, arguments: dict[str, Any]) -> str:
        got = await fetch.fetch(str(arguments.get("url", "")), allowed=self.fetch_allowed)
        head = f"HTTP {got.status} {got.content_type} from {got.url}"
        return f"{head}{' (cut)' if got.cut else ''}\n\n{got.text}"

    async def _python(self, arguments: dict[str, Any]) -> str:
        files = await asyncio.to_thread(
            lambda: {name: _head(self.files / name, MOST_FILE_BYTES) for name in self.listing()}
        )
        done = await sandbox.run_python(str(arguments.get("code", "")), files, self.limits)
        status = f"stopped: {done.stopped}" if done.stopped else f"exit status {done.exit_code}"
        return f"{status}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"

    async def _calculate(self, arguments: dict[str, Any]) -> str:
        return str(calculator.calculate(str(arguments.get("expression", ""))))


def cut(answer: str) -> str:
    if len(answer) <= MOST_ANSWER_CHARS:
        return answer
    return (
        answer[:MOST_ANSWER_CHARS] + f"\n[cut: {len(answer) - MOST_ANSWER_CHARS:,} more characters]"
    )


def _head(path: Path, most: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(most)
