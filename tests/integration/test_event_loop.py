"""The event loop as `chainlit run` drives it: an async generator dropped unfinished (a turn
stopped mid-stream, its answer's stream left behind) is closed on the loop, its `finally` run to
the end.

Chainlit's CLI applies nest_asyncio, whose loop never installs asyncio's async-generator hooks;
without them the interpreter closes such a generator on the spot, running its `finally` only to its
first `await` and abandoning it there. Seen in the app under a storm of Stop presses: the model
memory's lock, taken in that `finally`, was never given back, and every later turn waited on it.
"""

from __future__ import annotations

import subprocess
import sys

from settings import ROOT

DROPPED = """
import asyncio, gc, sys

import chainlit.cli  # what `chainlit run` imports first: it applies nest_asyncio

from ui.loop import close_dropped_generators

lock = asyncio.Lock()
ended = []


async def answer():
    try:
        yield "a"
        yield "b"
    finally:  # what a stopped turn does: keep what was shown, under a lock
        async with lock:
            await asyncio.sleep(0)
            ended.append("kept")


async def main():
    if sys.argv[1] == "app":
        close_dropped_generators(asyncio.get_running_loop())
    stream = answer()
    await anext(stream)
    del stream  # dropped unfinished
    gc.collect()
    await asyncio.sleep(0.1)
    print(ended, lock.locked())


asyncio.run(main())
"""


def run(how: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", DROPPED, how], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_chainlit_loop_alone_abandons_a_dropped_generator_mid_finally() -> None:
    assert run("bare") == "[] True"  # why the app installs its own hooks


def test_the_apps_loop_closes_a_dropped_generator_to_the_end() -> None:
    assert run("app") == "['kept'] False"


FAILING = """
import asyncio, gc

import chainlit.cli  # it logs to standard output, as in the app

from ui.loop import close_dropped_generators


async def answer():
    try:
        yield "a"
    finally:
        await asyncio.sleep(0)
        raise OSError("the memory could not be written")


async def main():
    close_dropped_generators(asyncio.get_running_loop())
    stream = answer()
    await anext(stream)
    del stream
    gc.collect()
    await asyncio.sleep(0.1)
    print("still serving", flush=True)
    await asyncio.sleep(3600)  # as the app: nothing collects the closing task meanwhile


asyncio.run(main())
"""


def test_a_dropped_generator_failing_to_close_is_logged_at_once() -> None:
    """The closing is a task of its own, held until it ends (asyncio keeps only weak references to
    tasks): what goes wrong in it is logged under the generator's name as it happens."""
    child = subprocess.Popen(
        [sys.executable, "-c", FAILING], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    told: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:  # up to the moment it goes on serving
            if line.strip() == "still serving":
                break
            told.append(line)
    finally:
        child.kill()
        child.wait(timeout=30)
    said = "".join(told)
    assert "close answer failed" in said and "the memory could not be written" in said
