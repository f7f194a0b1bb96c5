"""A small OpenAI-compatible server on loopback, for tests that need a provider's failures.

Streams a fixed reply word by word with stream usage, like real providers; answers requests that
offer tools, and unstreamed ones, from `script` (deterministic tool calls, for long tasks); or
fails as told:
`error` answers HTTP 500, `slow` waits `delay_s` before answering, `drop` closes the stream after
`drop_after` chunks, `garble` sends a broken event there and `report` an error event; `endless`
ignores `max_completion_tokens` and writes on until the client hangs up (a bounded million words).
Runs uvicorn in a background thread of the test process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeOpenAI:
    mode: str = "ok"
    reply: str = "Hello from the loopback model, streaming word by word."
    delay_s: float = 0.0
    token_delay_s: float = 0.0
    drop_after: int = 3
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Answers to requests that offer tools (and to unstreamed ones while any is left), in order:
    # each an assistant message (its "content", its "tool_calls"); a request with tools when none
    # is left is answered "Done."
    script: list[dict[str, Any]] = field(default_factory=list)
    answered: dict[str, dict[str, Any]] = field(default_factory=dict)  # request -> its answer
    streaming: int = 0  # streams being written now
    open: list[str] = field(default_factory=list)  # the question each of them answers
    hung_up: int = 0  # streams whose client hung up before their end
    cut: list[str] = field(default_factory=list)  # ... and the question each of them answered
    connections: set[tuple[str, int]] = field(default_factory=set)  # the clients' (address, port)
    linger_s: float = 0.0  # how long a stream stays open after its `[DONE]` before it ends
    # Or answers made from each request (many tasks at once, whose requests interleave).
    respond: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    port: int = 0

    @contextmanager
    def behaving(self, **changes: Any) -> Iterator[None]:
        """Behave as `changes` say (mode, delays...) inside a `with` block, then as before."""
        before = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            yield
        finally:
            for name, value in before.items():
                setattr(self, name, value)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if request.client is not None:
            self.connections.add((request.client.host, request.client.port))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "error":
            return JSONResponse({"error": {"message": "upstream exploded"}}, status_code=500)
        if "tools" in body or ((self.script or self.respond) and not body.get("stream")):
            return JSONResponse(self._scripted(body))
        words = [w + " " for w in self.reply.split(" ")]
        words[-1] = words[-1].rstrip()
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        if self.mode == "endless":
            return StreamingResponse(
                self._stream(body, (f"word{i} " for i in range(1_000_000)), prompt_tokens),
                media_type="text/event-stream",
            )
        if not body.get("stream"):
            return JSONResponse(self._completion(body, "".join(words), prompt_tokens, len(words)))
        return StreamingResponse(
            self._stream(body, words, prompt_tokens), media_type="text/event-stream"
        )

    async def _stream(
        self, body: dict[str, Any], words: Iterable[str], prompt_tokens: int
    ) -> AsyncIterator[bytes]:
        chunks = self._chunks(body, words, prompt_tokens)
        asked = str(body["messages"][-1].get("content", ""))[:40]
        self.streaming += 1
        self.open.append(asked)
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield chunk
        except (GeneratorExit, asyncio.CancelledError):  # uvicorn heard the client hang up
            self.hung_up += 1
            self.cut.append(asked)
            raise
        finally:
            self.streaming -= 1
            self.open.remove(asked)

    async def _chunks(
        self, body: dict[str, Any], words: Iterable[str], prompt_tokens: int
    ) -> AsyncGenerator[bytes, None]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body["model"],
        }
        sent = 0
        for i, word in enumerate(words):
            sent += 1
            if self.mode == "drop" and i == self.drop_after:
                raise ConnectionResetError("stream dropped by the fake server")
            if self.mode == "garble" and i == self.drop_after:
                yield b'data: {"choices": [{"delta": \n\n'
                return
            if self.mode == "report" and i == self.drop_after:
                yield b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'
                return
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            chunk = {
                **base,
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(done)}\n\n".encode()
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": sent,
                    "total_tokens": prompt_tokens + sent,
                },
            }
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"
        if self.linger_s:
            await asyncio.sleep(self.linger_s)

    def _scripted(self, body: dict[str, Any]) -> dict[str, Any]:
        """The next scripted answer to a request that offers tools, with usage counted from the
        request's words and the answer's. A request asked again word for word (a client that
        died before it read the answer, asking again) gets the answer it got before."""
        asked = json.dumps([body["messages"], body.get("tools")], sort_keys=True)
        if self.respond is not None:
            message = {"role": "assistant", "content": "Done.", **self.respond(body)}
        elif asked in self.answered:
            message = self.answered[asked]
        else:
            message = {
                "role": "assistant",
                "content": "Done.",
                **(self.script.pop(0) if self.script else {}),
            }
            self.answered[asked] = message
        said = json.dumps(message)
        prompt = sum(len(json.dumps(m).split()) for m in body["messages"])
        return {
            "id": "chatcmpl-tools", "object": "chat.completion", "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"
                         if message.get("tool_calls") else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(said.split()),
                      "total_tokens": prompt + len(said.split())},
        }  # fmt: skip

    def _completion(
        self, body: dict[str, Any], text: str, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def start(self, port: int = 0) -> FakeOpenAI:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)


def main() -> None:
    """Serve in the foreground (for benchmarks, where the provider must not share a process with
    the load): `python -m tests.fakes.openai_server --port 8011 --words 50`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=50, help="words in the streamed reply")
    args = parser.parse_args()
    fake = FakeOpenAI(reply=" ".join(f"word{n}" for n in range(args.words)))
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()


def one_step_task(body: dict[str, Any]) -> dict[str, Any]:
    """A `respond` for many tasks at once: each plans one step, asks the calculator for 6 * 7,
    says what it found, and answers; what each request gets depends on that request alone."""
    messages = body["messages"]
    if not body.get("tools"):
        planning = "plan" in str(messages[0].get("content", "")).lower()
        return {"content": "1. Compute six times seven" if planning else "The answer is 42."}
    if messages[-1]["role"] == "tool":
        return {"content": f"The calculator said {messages[-1]['content']}."}
    return {"content": "", "tool_calls": [{"id": "c-calc", "type": "function", "function": {
        "name": "calculator", "arguments": json.dumps({"expression": "6 * 7"})}}]}  # fmt: skip


def tool_call(tool: str, **arguments: Any) -> dict[str, Any]:
    """A scripted answer that calls `tool` with `arguments`."""
    return {"content": "", "tool_calls": [{"id": f"c-{tool}", "type": "function",
            "function": {"name": tool, "arguments": json.dumps(arguments)}}]}  # fmt: skip


def tower_task() -> list[dict[str, Any]]:
    """The script of a three-step task over notes.txt ("The tower is 30 m tall."): a plan, then
    per step a tool call and what it found (read_file, calculator, run_python), then the answer:
    8 model calls and 3 tool calls."""
    return [
        {"content": "1. Read the notes\n2. Compute\n3. Check with Python"},
        tool_call("read_file", name="notes.txt"), {"content": "The tower is 30 m tall."},
        tool_call("calculator", expression="30 * 2"), {"content": "Twice is 60."},
        tool_call("run_python", code="print(30 * 3)"), {"content": "Python says 90."},
        {"content": "The tower is 30 m; twice is 60, three times 90."},
    ]  # fmt: skip
