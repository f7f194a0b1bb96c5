"""Streaming speed: the local model decoding directly vs. the same prompts streamed through the app.

Direct: llama-cpp-python in this process, `create_chat_completion(stream=True)`, the plain way.
App: the real app process (`chainlit run app.py`), one new chat per prompt, driven over socket.io
the way the browser does, timing each streamed event as it arrives. Same model file, same prompts,
temperature 0, same token cap. Each prompt runs directly and then through the app, one after the
other and never at the same time, so that the machine's drift cancels out of the pairs.

Prints `name: value` lines:
  direct_tok_s, app_tok_s          decode speed after the first token, median over runs
  stream_ratio                     app_tok_s / direct_tok_s (target >= 0.95)
  direct_ttft_ms_p50, app_ttft_ms_p50
  app_ttft_overhead_ms_p50         median over pairs of (app TTFT - direct TTFT) (target <= 30)

Usage: .venv/bin/python bench/stream.py [--rounds 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.local import bundled_model_path
from agents.prompts import SYSTEM_PROMPT
from tests.e2e.client import ChatSession, login, steps
from tests.e2e.process import running_app

PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a bicycle works, part by part.",
    "Describe a walk through a busy market in a large city, with all its sounds and smells.",
    "Write a detailed guide to planting and caring for a vegetable garden.",
    "Tell me about the history of writing, from clay tablets to computers.",
]
ADMIN = ("bench@example.com", "bench-password-123")
N_CTX = 8192


@dataclass
class Run:
    ttft_ms: float
    tokens: int
    decode_s: float  # from first to last token

    @property
    def tok_s(self) -> float:
        return (self.tokens - 1) / self.decode_s


def direct_run(llm: Any, prompt: str, max_tokens: int) -> Run:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    for chunk in llm.create_chat_completion(
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        top_k=40,
        top_p=0.95,
        repeat_penalty=1.1,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
            tokens += 1
    return Run((first - start) * 1000, tokens, last - first)


async def app_run(base_url: str, cookies: Any, prompt: str) -> Run:
    """One prompt in a new chat, timed at the client as each streamed event arrives."""
    chat = ChatSession(base_url, cookies)
    await chat.connect()
    stamps: list[float] = []

    @chat.sio.on("stream_start")
    async def _start(data: dict) -> None:
        stamps.append(time.perf_counter())

    @chat.sio.on("stream_token")
    async def _token(data: dict) -> None:
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    events = await chat.send(prompt)
    await chat.close()
    match = re.search(r"([\d,]+) tokens out", steps(events)[-1]["output"])
    assert match, events
    return Run((stamps[0] - start) * 1000, int(match[1].replace(",", "")), stamps[-1] - stamps[0])


async def paired_runs(
    base_url: str, llm: Any, rounds: int, max_tokens: int
) -> tuple[list[Run], list[Run]]:
    """Each prompt directly, then through the app, in turn (the first round only warms up)."""
    cookies = await login(base_url, *ADMIN)
    direct: list[Run] = []
    app: list[Run] = []
    for round_ in range(rounds + 1):
        for prompt in PROMPTS:
            d = await asyncio.to_thread(direct_run, llm, prompt, max_tokens)
            a = await app_run(base_url, cookies, prompt)
            if round_:
                direct.append(d)
                app.append(a)
    return direct, app


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    overrides = dict(
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        LOCAL_TEMPERATURE="0",
        MAX_OUTPUT_TOKENS=str(args.max_tokens),
        LOCAL_MODEL_THREADS=str(args.threads),
        LOG_LEVEL="WARNING",
    )
    with running_app(data_dir, **overrides) as base_url:
        llm = load_direct(args.threads)
        direct, app = asyncio.run(paired_runs(base_url, llm, args.rounds, args.max_tokens))

    direct_tok_s = median([r.tok_s for r in direct])
    app_tok_s = median([r.tok_s for r in app])
    print(f"direct_tok_s: {direct_tok_s:.1f}")
    print(f"app_tok_s: {app_tok_s:.1f}")
    print(f"stream_ratio: {app_tok_s / direct_tok_s:.3f}")
    print(f"direct_ttft_ms_p50: {median([r.ttft_ms for r in direct]):.1f}")
    print(f"app_ttft_ms_p50: {median([r.ttft_ms for r in app]):.1f}")
    overheads = [a.ttft_ms - d.ttft_ms for d, a in zip(direct, app, strict=True)]
    print(f"app_ttft_overhead_ms_p50: {median(overheads):.1f}")
    print(f"direct_tokens_per_answer: {median([r.tokens for r in direct]):.0f}")
    print(f"app_tokens_per_answer: {median([r.tokens for r in app]):.0f}")


def load_direct(threads: int) -> Any:
    """The same GGUF, loaded plainly; its decoding runs on one thread of this process, as the app's does."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(bundled_model_path()), n_ctx=N_CTX, n_threads=threads, verbose=False
    )


if __name__ == "__main__":
    main()
