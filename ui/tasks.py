"""Long tasks in the chat: `/task <goal>` (or the router proposing one), its quote, and the task as
it runs, pauses and ends, shown in its chat wherever that chat is open.

- The quote: what a typical task of a few steps costs, and the budget it may not pass (the
  person's, typed as `/task budget=50 ...`, or TASK_BUDGET_CREDITS); Start, Double the budget,
  Cancel. Files attached to the message (text, CSV, code) are the task's to read.
- Started, the task is one message of its chat (kept with the thread) and below it a step per step
  of its plan, with its tool calls and their answers nested inside. The run itself lives in the
  database and runs in a worker (tasks/), not in this chat: closing the tab does not stop it.
- What the person sees is drawn from the run's row each time it changes (told through the live
  channel to every replica, to the sessions where the task's chat is open), and when the chat is
  reopened: the steps are sent to the page, not kept with the thread, so they are always the
  run's own.
- Cancel stops the run at once wherever it runs; a paused run offers what it needs (credits: the
  packs; budget: a doubled one) and goes on by itself when it gets it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any, cast

import chainlit as cl
from chainlit.step import StepDict
from langgraph.checkpoint.base import BaseCheckpointSaver

from agents.catalog import Model
from agents.tasks import config_of as task_config
from agents.toolbox import TOOLS
from credits.ledger import UNITS_PER_CREDIT, show_credits
from storage import runs, work_quotes
from tasks import files as task_files
from ui import quotes, turn, wallet
from ui.command import Command
from ui.deployment import Deployment, person
from ui.errors import Refused
from ui.live import News

log = logging.getLogger("ui.tasks")

AUTHOR = "Task"
START_ACTION = "task_start"
MORE_BUDGET_ACTION = "task_more_budget"
DROP_ACTION = "task_drop"
CANCEL_ACTION = "task_cancel"
RAISE_ACTION = "task_raise_budget"
BUDGET = re.compile(r"^\s*budget\s*[=:]?\s*(\d{1,7})\b[\s,:;-]*", re.IGNORECASE)
TYPICAL_TURNS = 8  # model calls of a task of three steps: a plan, two per step, the answer
TYPICAL_TOOLS = 3
TYPICAL_PROMPT_TOKENS = 3000
SHOWN = "tasks_shown"  # user_session: the ids of the task steps this page has
ACTIONS = "task_actions"  # user_session: the buttons each task's message has on this page
STATUS = {
    "pending": "waiting for a worker", "running": "running", "paused": "paused",
    "succeeded": "done", "failed": "failed", "cancelled": "cancelled",
}  # fmt: skip
MARK = {"planned": "○", "running": "◔", "done": "✓", "failed": "✗"}


def task_model(d: Deployment) -> Model:
    """The model tasks think with: TASK_MODEL, else the chat's."""
    if d.settings.task_model:
        return d.catalog.get(d.settings.task_model)
    return turn.current_model(d)


def estimate(d: Deployment, model: Model) -> int:
    """What a typical task costs, in units."""
    turns = TYPICAL_TURNS * d.pricing.tokens(
        model, TYPICAL_PROMPT_TOKENS, d.settings.max_output_tokens
    )
    tools = [d.pricing.work(p, calls=1) for name, p in d.catalog.work.items() if name in TOOLS]
    return turns + TYPICAL_TOOLS * (max(tools) if tools else 0)


async def propose(d: Deployment, message: cl.Message, text: str, why: str) -> None:
    """Quote a task for `text` with the files `message` carries."""
    budget_match = BUDGET.match(text)
    goal = text[budget_match.end() :] if budget_match else text
    goal = goal.strip()
    if not goal:
        raise Refused(
            "Say what the task should do, e.g. `/task find the three largest months in sales.csv "
            "and plot them`. Attach text or CSV files for it to read; `budget=50` first sets its "
            "budget in credits."
        )
    if len(goal) > d.settings.task_goal_max_chars:
        raise Refused(
            f"A task's goal may have at most {d.settings.task_goal_max_chars:,} characters; this "
            f"one has {len(goal):,}. Put the details in a file and attach it."
        )
    budget = (
        int(budget_match.group(1)) * UNITS_PER_CREDIT
        if budget_match
        else d.settings.task_budget_credits * UNITS_PER_CREDIT
    )
    if budget <= 0:
        raise Refused("A task's budget must be at least 1 credit.")
    await check_room(d)
    model = task_model(d)
    run_id = runs.new_id()
    given = await _attached(message)
    try:
        names = await task_files.keep(d.shelf, run_id, given)
    except task_files.FileRefused as refused:
        raise Refused(f"{refused} Nothing was started.") from refused
    request = {"goal": goal, "budget": budget, "files": names, "run": run_id, "model": model.id}
    step = cl.Step(name="Route", type="tool", show_input=False)
    step.output = f"**Task** · {why}"
    await step.send()
    await offer(d, request)


async def check_room(d: Deployment) -> None:
    """`Refused` when the person has as many tasks going as one may."""
    most = d.settings.task_most_going
    if await runs.going(d.engine, person()) >= most:
        raise Refused(
            f"You have {most} tasks going already (waiting, running or paused): one may have at "
            "most that many at once. Cancel one (/tasks) or wait for one to end; nothing was "
            "started."
        )


async def offer(d: Deployment, request: dict[str, Any]) -> None:
    quote = await work_quotes.offer(
        d.engine, person(), cl.context.session.thread_id, "task", request, int(request["budget"])
    )
    await show_quote(d, quote)


async def show_quote(d: Deployment, quote: work_quotes.Quote) -> None:
    r = quote.request
    model = d.catalog.get(str(r["model"]))
    names = ", ".join(r["files"]) or "none"
    payload = {"quote": quote.id}
    message = cl.Message(
        content=f"**Start this task?**\n\n> {_quoted(str(r['goal']))}\n\nModel {model.label}; "
        f"files: {names}. A typical task of a few steps costs about "
        f"**{show_credits(estimate(d, model))} credits** here; its budget is "
        f"**{show_credits(int(r['budget']))} credits**: it pauses and asks before spending more. "
        "Nothing is spent until you start it; you pay for the steps it takes.",
        actions=[
            cl.Action(name=START_ACTION, payload=payload, label="Start"),
            cl.Action(name=MORE_BUDGET_ACTION, payload=payload, label="Double the budget"),
            cl.Action(name=DROP_ACTION, payload=payload, label="Cancel"),
        ],
        author=AUTHOR,
    )
    await message.send()
    quotes.remember(quote.id, message)


async def decide(
    d: Deployment, action: cl.Action, decision: work_quotes.Decision
) -> work_quotes.Quote | None:
    return await quotes.decide(d, action, decision, AUTHOR, "Ask again with /task.")


async def show_open_quotes(d: Deployment, thread_id: str) -> None:
    """A reopened chat's task quotes that still wait for an answer, with their buttons again."""
    for quote in await work_quotes.open_in(d.engine, person(), thread_id):
        if quote.kind == "task" and str(quote.request.get("model")) in d.catalog.models:
            await show_quote(d, quote)


async def start(d: Deployment, action: cl.Action) -> None:
    """Start: the run is made pending and the worker poked; the task's message shows it."""
    if (quote := await decide(d, action, "confirmed")) is None:
        return
    await check_room(d)  # again: another tab may have started one since the quote
    r = quote.request
    anchor = cl.Message(
        content=f"**Task** · starting\n\n> {_quoted(str(r['goal']))}", author=AUTHOR
    )
    await anchor.send()
    run = await runs.start(
        d.engine, person(), cl.context.session.thread_id, str(r["goal"]), int(r["budget"]),
        message_id=anchor.id, files=tuple(r["files"]), run_id=str(r["run"]), model=str(r["model"]),
    )  # fmt: skip
    if d.worker is not None:
        d.worker.poke()
    await show(d, run)


async def more_budget(d: Deployment, action: cl.Action) -> None:
    if (quote := await decide(d, action, "cancelled")) is None:
        return
    request = dict(quote.request)
    request["budget"] = 2 * int(request["budget"])
    await offer(d, request)


async def drop(d: Deployment, action: cl.Action) -> None:
    if (quote := await decide(d, action, "cancelled")) is None:
        return
    for name in quote.request.get("files", []):
        await d.shelf.delete(task_files.key_of(str(quote.request["run"]), str(name)))
    await cl.Message(content="Cancelled: nothing was started or spent.", author=AUTHOR).send()


async def cancel(d: Deployment, action: cl.Action) -> None:
    """Cancel a run: its row first (no worker moves it after this), then wherever it runs."""
    run_id = str((action.payload or {}).get("run", ""))
    if not await runs.cancel(d.engine, run_id, person()):
        raise Refused("This task has ended already (or is not yours): nothing to cancel.")
    if d.worker is not None:
        d.worker.stop_run(run_id)
    await d.live.tell(person(), kind="cancel", task=run_id)
    run = await runs.get(d.engine, run_id, person())
    if run is not None:
        await show(d, run)


async def raise_budget(d: Deployment, action: cl.Action) -> None:
    payload = action.payload or {}
    run_id, budget = str(payload.get("run", "")), payload.get("budget")
    if not isinstance(budget, int) or isinstance(budget, bool) or not 0 < budget < 2**62:
        raise Refused("That is not a budget: nothing changed.")
    if not await runs.raise_budget(d.engine, run_id, person(), budget):
        raise Refused("This task has ended already (or is not yours): its budget stays.")
    await runs.wake(d.engine, person(), run_id)
    if d.worker is not None:
        d.worker.poke()
    await d.live.tell(person(), kind="task", task=run_id)


async def forget_thread(d: Deployment, checkpointer: object, thread_id: str) -> None:
    """A deleted chat's tasks: stopped wherever they run, their checkpoints deleted (their runs
    stay, cancelled, with what they spent, in /tasks and /usage)."""
    for run in await runs.cancel_in_thread(d.engine, thread_id):
        if d.worker is not None:
            d.worker.stop_run(run.id)
        await d.live.tell(run.owner, kind="cancel", task=run.id)
        if isinstance(checkpointer, BaseCheckpointSaver):
            await checkpointer.adelete_thread(task_config(run.id)["configurable"]["thread_id"])


async def heard(d: Deployment, news: News) -> None:
    """On every replica: credits arrived (wake the person's paused runs they now cover), or a
    run was cancelled (stop it if it runs here)."""
    if d.worker is None:
        return
    if news.kind == "cancel":
        d.worker.stop_run(news.task)
    elif news.kind == "balance":
        balance = await d.ledger.balance(news.person)
        if await runs.wake(d.engine, news.person, available=balance.available):
            d.worker.poke()


async def sweep(d: Deployment) -> None:
    """The worker's sweep: runs paused for credits whose owners have enough now."""
    woken = False
    for owner, needs in await runs.waiting_for_credits(d.engine):
        if (await d.ledger.balance(owner)).available >= needs:
            woken = bool(await runs.wake(d.engine, owner, available=needs)) or woken
    if woken and d.worker is not None:
        d.worker.poke()


async def refresh(d: Deployment, news: News) -> None:
    """In one of the person's open chats: the task shown again (where it is this chat's), and
    the badge (its spending moved the balance)."""
    run = await runs.get(d.engine, news.task, news.person)
    if run is not None and run.thread_id == cl.context.session.thread_id:
        await show(d, run)
    if cl.user_session.get("badge") is not None:
        await wallet.show_balance(d, cl.context.session.thread_id, None)


async def show_in_thread(d: Deployment, thread_id: str) -> None:
    """A reopened chat's tasks, as they stand."""
    cl.user_session.set(SHOWN, set())  # the page drew the thread afresh
    cl.user_session.set(ACTIONS, {})
    for run in reversed(await runs.of_owner(d.engine, person(), limit=50)):
        if run.thread_id == thread_id:
            await show(d, run)


async def show_due(d: Deployment) -> None:
    """Once Chainlit has sent a reopened thread to the page (it does so after `on_chat_resume`,
    and the page then drops what it had): the thread's tasks."""
    if due := cl.user_session.get("tasks_due"):
        cl.user_session.set("tasks_due", None)
        await show_in_thread(d, str(due))


def due_after_resume(thread_id: str) -> None:
    """A reopened chat: its tasks are drawn once the page has the thread (`show_due`). What this
    session had of them came back from the thread's metadata, where Chainlit keeps the user
    session, as stale JSON: the page has none of it."""
    cl.user_session.set(SHOWN, set())
    cl.user_session.set(ACTIONS, {})
    cl.user_session.set("tasks_due", thread_id)


async def show(d: Deployment, run: runs.Run) -> None:
    """Draw `run` in this chat: its message (kept with the thread), its steps and tool calls."""
    if run.message_id is None:
        return
    shown: set[str] = cl.user_session.get(SHOWN) or set()
    anchor = cl.Message(content=head(run), author=AUTHOR)
    anchor.id = run.message_id
    anchor.created_at = run.created_at.isoformat()
    await anchor.update()
    await _replace_actions(run, actions_of(d, run))
    for step in steps_of(run, cl.context.session.thread_id):
        if step["id"] in shown:
            await cl.context.emitter.update_step(step)
        else:
            await cl.context.emitter.send_step(step)
            shown.add(step["id"])
    cl.user_session.set(SHOWN, shown)


async def _replace_actions(run: runs.Run, actions: Sequence[cl.Action]) -> None:
    """The task message's buttons, as its state now offers (Chainlit keeps none with a thread);
    sent again only when they change, not at every step of the run."""
    kept: dict[str, list[cl.Action]] = cl.user_session.get(ACTIONS) or {}
    before = kept.get(run.id, [])
    if [(a.name, a.payload) for a in before] == [(a.name, a.payload) for a in actions]:
        return
    for old in before:
        await old.remove()
    for action in actions:
        await action.send(for_id=run.message_id or "")
    kept[run.id] = list(actions)
    cl.user_session.set(ACTIONS, kept)


def head(run: runs.Run) -> str:
    """The task message: what it is, where it stands, what it spent, its answer."""
    progress = run.progress
    plan = progress.get("plan") or []
    status = STATUS.get(run.status, run.status)
    if run.status == "running" and plan:
        at = next((i for i, p in enumerate(plan) if p["status"] == "running"), len(plan) - 1)
        status = f"running · step {at + 1} of {len(plan)}"
    lines = [
        f"**Task** · {status} · {show_credits(run.spent)} of {show_credits(run.budget)} credits "
        f"spent",
        f"> {_quoted(run.goal)}",
    ]
    if run.files:
        lines.append(f"Files: {', '.join(run.files)}")
    if run.status == "paused" and run.paused_reason:
        lines.append(f"**Paused.** {run.paused_reason} It goes on by itself once "
                     f"{'its budget is raised' if run.needs == 0 else 'you have the credits'}; "
                     "nothing is lost meanwhile.")  # fmt: skip
    if progress.get("note") and run.status in ("pending", "running"):
        lines.append(str(progress["note"]))
    if run.status == "succeeded" and progress.get("answer"):
        lines.append(str(progress["answer"]))
    if run.status in ("failed", "cancelled") and run.outcome:
        lines.append(f"{run.outcome} What it spent ({show_credits(run.spent)} credits) was for "
                     "the steps it took; nothing more is held.")  # fmt: skip
    return "\n\n".join(lines)


def actions_of(d: Deployment, run: runs.Run) -> list[cl.Action]:
    if run.ended:
        return []
    found = [cl.Action(name=CANCEL_ACTION, payload={"run": run.id}, label="Cancel task")]
    if run.status == "paused" and run.needs == 0:
        budget = 2 * run.budget
        found.insert(0, cl.Action(name=RAISE_ACTION, payload={"run": run.id, "budget": budget},
                                  label=f"Raise the budget to {show_credits(budget)} credits"))  # fmt: skip
    elif run.status == "paused" and d.selling:
        found.insert(0, wallet.buy_action("Top up"))
    return found


def steps_of(run: runs.Run, thread_id: str) -> list[StepDict]:
    """A step per step of the plan, and inside each its tool calls, with ids of their own so that
    every drawing of the run updates the same ones."""
    progress = run.progress
    found: list[StepDict] = []
    when = run.created_at.isoformat()
    for i, item in enumerate(progress.get("plan") or []):
        status = item["status"]
        step_id = _id(run.id, "step", i)
        found.append(_step(
            step_id, run.message_id, thread_id, f"{MARK.get(status, '○')} Step {i + 1}: "
            f"{item['title']}"[:200], "run", "", item["summary"] or WAITING.get(status, ""),
            status == "failed", when, None if status == "running" else when,
        ))  # fmt: skip
        for call in (c for c in progress.get("calls") or [] if c["item"] == i):
            found.append(_step(
                _id(run.id, "call", call["n"]), step_id, thread_id, call["tool"], "tool",
                call["arguments"], call["result"], call["result"].startswith("refused:"), when,
                when,
            ))  # fmt: skip
    return found


WAITING = {"running": "Working on it…", "planned": "Planned."}


def _step(
    step_id: str, parent_id: str | None, thread_id: str, name: str, kind: str, given: str,
    output: str, failed: bool, start: str, end: str | None,
) -> StepDict:  # fmt: skip
    """A step as the page draws it (sent to the page only: the run's row is where it is kept)."""
    return {
        "name": name, "type": cast(Any, kind), "id": step_id, "threadId": thread_id,
        "parentId": parent_id, "streaming": False, "metadata": {}, "tags": None, "input": given,
        "isError": failed, "output": output, "createdAt": start, "start": start, "end": end,
        "language": None, "defaultOpen": False, "autoCollapse": False,
        "showInput": "json" if kind == "tool" else False, "generation": None,
    }  # fmt: skip


def _id(run_id: str, kind: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"task:{run_id}:{kind}:{n}"))


async def list_tasks(d: Deployment, command: str, text: str, message: cl.Message) -> None:
    """`/tasks`: the person's tasks, newest first, with what each spent."""
    found = await runs.of_owner(d.engine, person(), limit=20)
    if not found:
        await cl.Message(content="You have no tasks yet. Start one with `/task <goal>`.",
                         author=AUTHOR).send()  # fmt: skip
        return
    rows = ["| Started | Task | State | Spent | Budget |", "|---|---|---|---|---|"]
    for run in found:
        goal = _quoted(run.goal)[:70].replace("|", "\\|")
        rows.append(
            f"| {run.created_at.astimezone(UTC):%Y-%m-%d %H:%M} | {goal} | "
            f"{STATUS.get(run.status, run.status)} | {show_credits(run.spent)} | "
            f"{show_credits(run.budget)} |"
        )
    actions = [
        cl.Action(name=CANCEL_ACTION, payload={"run": r.id}, label=f"Cancel: {r.goal[:30]}")
        for r in found if not r.ended
    ][:5]  # fmt: skip
    await cl.Message(content="**Your tasks**\n\n" + "\n".join(rows), actions=actions,
                     author=AUTHOR).send()  # fmt: skip


async def _task(d: Deployment, command: str, text: str, message: cl.Message) -> None:
    await propose(d, message, text, "You asked for a task with /task.")


async def _attached(message: cl.Message) -> list[tuple[str, bytes]]:
    """The files `message` carries, read from where Chainlit put them (checked by `keep`)."""
    given: list[tuple[str, bytes]] = []
    for element in message.elements or []:
        if path := getattr(element, "path", None):
            data = await asyncio.to_thread(task_files.read_given, Path(path))
            given.append((str(element.name or Path(path).name), data))
    return given


def _quoted(text: str) -> str:
    return " ".join(text.split())[:300]


COMMANDS = (
    Command(
        "task", "list-checks", "Run a long task: research, code, analysis of your files", _task
    ),
    Command("tasks", "list-todo", "Your tasks: running, paused, done, with their cost", list_tasks),
)
