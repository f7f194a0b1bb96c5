"""Is the embedded model safe to run in this process? Asked of a child process first.

llama.cpp is native code: a build that does not fit this CPU (an instruction it lacks, or kernels
that crash on it, as AMX ones did on a Xeon that advertises AMX) kills the whole process with a
signal, which no Python handler catches. So before the app loads the model in-process, a child
loads it and decodes a few tokens. If the child dies, or fails, or takes too long, the app keeps
serving every remote model, and the local provider is marked unavailable with the reason (the
model picker and `/healthz` show it, and the log says what to do).

Run as `python -m agents.local_check MODEL_PATH N_CTX N_THREADS`: prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the child process that runs this module needs neither
    from agents.catalog import Catalog
    from agents.local import LocalRunner

log = logging.getLogger(__name__)
TOKENS = 4
ADVICE = (
    "The app goes on with remote models only. Rebuild llama-cpp-python for this machine's CPU "
    "(`rm -rf .venv && make run` builds the portable x86-64-v3 / armv8-a baseline), or set "
    "LOCAL_MODEL_CHECK=false to skip this check at your own risk."
)


@dataclass(frozen=True)
class Verdict:
    """The child's answer: whether the model ran, why not, and llama.cpp's view of the CPU."""

    ok: bool
    reason: str = ""
    system_info: str = ""


async def check(path: Path, n_ctx: int, n_threads: int, timeout_s: float = 120.0) -> Verdict:
    """Load the model and decode a few tokens in a child process; never raises."""
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agents.local_check", str(path), str(n_ctx), str(n_threads),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except OSError as exc:
        return Verdict(False, f"the check process could not start: {exc}")
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout_s)
    except TimeoutError:
        child.kill()
        await child.wait()
        return Verdict(
            False, f"loading it and decoding {TOKENS} tokens took over {timeout_s:.0f} s"
        )
    return judge(child.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def start_checked(runner: LocalRunner, catalog: Catalog, check_first: bool = True) -> None:
    """Load the embedded model in this process once a child has shown that it runs on this
    machine; otherwise mark the local provider down with the reason and go on without it."""
    local = next(m.provider.id for m in catalog.models.values() if m.provider.kind == "local")
    if check_first:
        verdict = await check(runner.path, runner.n_ctx, runner.n_threads)
        if not verdict.ok:
            reason = f"the local model cannot run on this machine: {verdict.reason}"
            catalog.mark_down(local, reason)
            log.error("%s. %s", reason[0].upper() + reason[1:], ADVICE)
            return
        log.info("Local model checked in a child process (%s)", verdict.system_info)
    await runner.start()


def judge(returncode: int | None, out: str, err: str) -> Verdict:
    """What the child's exit status and output mean."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return Verdict(False, f"it crashed the process that tried it ({name})")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        answer = json.loads(last)
    except json.JSONDecodeError:
        tail = err.strip().splitlines()[-1:] or ["no output"]
        return Verdict(False, f"its check exited with status {returncode}: {tail[0][:300]}")
    if returncode != 0 or not answer.get("ok"):
        return Verdict(False, str(answer.get("error", f"its check exited with {returncode}")))
    return Verdict(True, "", str(answer.get("system_info", "")))


def main(argv: list[str]) -> int:
    """In the child: load, decode a few tokens, print what happened as one JSON line."""
    path, n_ctx, n_threads = Path(argv[0]), int(argv[1]), int(argv[2])
    try:
        import llama_cpp

        llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_batch=64, verbose=False
        )
        produced: Any = llm.create_completion("Hello", max_tokens=TOKENS, temperature=0.0)
        info = llama_cpp.llama_print_system_info().decode(errors="replace")
    except Exception as exc:  # a Python-level failure: reported, not crashed
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    tokens = produced["usage"]["completion_tokens"]
    print(json.dumps({"ok": True, "tokens": tokens, "system_info": info.strip()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
