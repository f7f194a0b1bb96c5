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
