"""A run's metered actions: each model call and each tool call of a task, on the one metered-work
path (credits/metering.py), under an id derived from the run, the action's number and the attempt.

Before each action, two gates, in this order, with nothing sent or run when one shuts:
- its budget: what the run spent and the most this action can cost must fit the run's budget;
- the person's balance: the hold is refused (`InsufficientCredits`, or credits owed).
Either raises `Paused`: the worker pauses the run with the reason and what it needs, and the node
runs again from its first line once the run is woken. An action an earlier attempt was charged
for (its process died before the graph saved the result) runs again free (`hold_step`); its
charge is counted in what the run spent if that process died before counting it (`runs.spend`
counts each action once).

A model call holds what its prompt and longest answer can cost and is charged on the usage the
provider reported (or the tokens counted here); a tool call is priced per call from the
catalogue's `[work.<tool>]`, and charged only when the tool ran (not when it refused).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.catalog import Catalog, Model
from agents.local import LocalRunner
from agents.prices import Pricing
from agents.tool_calls import Tool, ToolCall, Turn, take_local_turn, take_turn
from agents.toolbox import Toolbox
from credits import metering
from credits.errors import InsufficientCredits, OwesCredits
from credits.ledger import show_credits
from credits.store import Ledger
from storage import runs

T = TypeVar("T")
TEMPLATE_BYTES_PER_MESSAGE = 16


class Paused(Exception):
    """The run cannot go on now: `reason` says why (to the person), `needs` what it needs."""

    def __init__(self, reason: str, needs: int = 0, budget: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.needs = needs
        self.budget = budget


@dataclass
class RunSteps:
    """The metered actions of `run`, carried out by `worker` under its lease."""

    run: runs.Run
    worker: str
    engine: AsyncEngine
    ledger: Ledger | None  # None: not metered (METERING=false)
    pricing: Pricing
    catalog: Catalog
    model: Model
    runner: LocalRunner
    toolbox: Toolbox
    max_tokens: int
    timeout_s: float
    hold_timeout_s: int
    spent: int = 0
    tools: list[Tool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spent = self.run.spent
        self.tools = [t for t in self.toolbox.tools() if t.name in self.catalog.work]

    @property
    def attempt(self) -> int:
        return self.run.attempt

    async def think(
        self, n: int, since: int, messages: list[dict[str, Any]], tools: Sequence[Tool]
    ) -> Turn:
        model = self.model
        tokens_in = most_input_tokens(messages, tools, model.context_length, self.max_tokens)
        work = metering.Work(
            "task", self.pricing.tokens(model, tokens_in, self.max_tokens),
            {"model": model.id, "run": self.run.id, "action": n},
        )  # fmt: skip

        async def ask(meter: metering.Meter | None) -> Turn:
            if model.provider.kind == "local":
                turn = await take_local_turn(self.runner, messages, tools, self.max_tokens)
            else:
                turn = await take_turn(model, messages, tools, self.max_tokens, self.timeout_s)
            if meter is not None:
                used = turn.usage
                got_in = used.input_tokens if used else tokens_in
                got_out = (
                    used.output_tokens if used else min(len(turn.text.encode()), self.max_tokens)
                )
                meter.use(
                    self.pricing.tokens(model, got_in, got_out),
                    {"tokens_in": got_in, "tokens_out": got_out},
                )
            return turn

        return await self._metered(n, since, work, ask)

    async def use(self, n: int, since: int, call: ToolCall) -> str:
        if call.problem or call.name not in self.catalog.work:
            return (await self.toolbox.answer(call)).text  # refused: nothing runs, nothing paid
        units = self.pricing.work(self.catalog.work[call.name], calls=1)
        work = metering.Work("task", units, {"model": call.name, "run": self.run.id, "action": n})

        async def run_tool(meter: metering.Meter | None) -> str:
            answer = await self.toolbox.answer(call)
            if meter is not None and not answer.refused:
                meter.use(units, {"tool": call.name})
            return answer.text

        return await self._metered(n, since, work, run_tool)

    async def _metered(
        self,
        n: int,
        since: int,
        work: metering.Work,
        do: Callable[[metering.Meter | None], Awaitable[T]],
    ) -> T:
        if self.ledger is None:
            return await do(None)
        budget = self.run.budget
        if self.spent + work.most > budget:
            raise Paused(
                f"The next step could cost up to {show_credits(work.most)} credits, and the task "
                f"has spent {show_credits(self.spent)} of its budget of {show_credits(budget)}.",
                budget=True,
            )
        try:
            held = await metering.hold_step(
                self.ledger, self.run.owner, work, f"task:{self.run.id}:{n}", self.attempt,
                since, self.hold_timeout_s,
            )  # fmt: skip
        except OwesCredits as owing:
            raise Paused(
                f"Nothing can be spent while you owe {show_credits(owing.owed)} credits.",
                needs=owing.owed + work.most,
            ) from owing
        except InsufficientCredits as short:
            raise Paused(
                f"The next step could cost up to {show_credits(work.most)} credits and you have "
                f"{show_credits(short.available)}.",
                needs=work.most,
            ) from short
        if not isinstance(held, metering.Meter):  # paid for by an earlier attempt
            if await runs.spend(self.engine, self.run, self.worker, n, held.amount):
                self.spent += held.amount  # its process died before counting it
            return await do(None)
        meter = held
        try:
            result = await do(meter)
        finally:
            # Settled before the next action (its budget gate counts this one), even when the
            # run is being cancelled.
            await asyncio.shield(meter.close())
        if meter.charged:
            self.spent += meter.charged
            await runs.spend(self.engine, self.run, self.worker, n, meter.charged)
        return result


def most_input_tokens(
    messages: Sequence[dict[str, Any]], tools: Sequence[Tool], context_length: int, longest: int
) -> int:
    """No more tokens than this can reach a model for `messages` and `tools` (a token is at
    least a byte, whatever the tokenizer)."""
    sent = json.dumps(list(messages)) + json.dumps([t.schema() for t in tools])
    bound = len(sent.encode()) + TEMPLATE_BYTES_PER_MESSAGE * (len(messages) + 1)
    return max(1, min(bound, context_length - longest))
