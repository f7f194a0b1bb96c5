"""Chainlit entry point: wiring only. Start with `make run` (or `chainlit run app.py`)."""

from __future__ import annotations

import gc
import logging
from contextlib import AsyncExitStack
from typing import Any

from settings import get_settings, write_private

settings = get_settings()
settings.export_for_chainlit()  # before Chainlit reads its environment

import chainlit as cl  # noqa: E402
from chainlit.auth import cookie as chainlit_cookie  # noqa: E402
from chainlit.auth.cookie import _auth_cookie_name as AUTH_COOKIE  # noqa: E402
from chainlit.auth.cookie import get_token_from_cookies  # noqa: E402
from chainlit.config import config as chainlit_config  # noqa: E402
from chainlit.server import app as fastapi_app  # noqa: E402
from chainlit.server import sio as chainlit_sio  # noqa: E402
from chainlit.session import WebsocketSession  # noqa: E402
from chainlit.types import CommandDict, ThreadDict  # noqa: E402
from langchain_core.messages import BaseMessage, HumanMessage  # noqa: E402

import access  # noqa: E402
import chat  # noqa: E402
import grants  # noqa: E402
import picker  # noqa: E402
import signins  # noqa: E402
import statement  # noqa: E402
import wallet  # noqa: E402
from agents import graph as conversation  # noqa: E402
from agents import local_check, remote  # noqa: E402
from agents.catalog import Model, load_catalog  # noqa: E402
from agents.checkpoints import open_checkpointer  # noqa: E402
from agents.errors import AgentError  # noqa: E402
from agents.local import LocalRunner, bundled_model_path  # noqa: E402
from agents.prompts import SYSTEM_PROMPT  # noqa: E402
from agents.providers import HealthCheck, chat_model, text_counter, token_counter  # noqa: E402
from agents.state import TurnContext  # noqa: E402
from api import edge, health, mount, password, signin  # noqa: E402
from auth import passwords, providers, signup  # noqa: E402
from auth.sessions import SessionCheck, Standings, guard_events  # noqa: E402
from auth.throttle import Throttle, ThrottledLogin  # noqa: E402
from credits import metering  # noqa: E402
from credits.configured import ledger_from_settings  # noqa: E402
from credits.errors import InsufficientCredits  # noqa: E402
from credits.ledger import UNITS_PER_CREDIT, Balance  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.history import ChatHistory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.move import left_behind  # noqa: E402
from storage.session_files import use_own_folder  # noqa: E402

log = logging.getLogger("app")
logging.getLogger().setLevel(settings.log_level)
use_own_folder(settings.data_dir)

engine = create_engine(settings.db_url)
catalog = load_catalog(settings.models_file, settings.provider_secret, settings.default_model)
local_model = next((m for m in catalog.models.values() if m.provider.kind == "local"), None)
runner = LocalRunner(
    path=settings.local_model_path or bundled_model_path(),
    n_ctx=local_model.context_length if local_model else 4096,
    n_threads=settings.local_model_threads,
)
health_check = HealthCheck(runner)
resources = AsyncExitStack()
graphs: dict[str, conversation.Conversation] = {}
ledger = ledger_from_settings(settings)
pricing = metering.Pricing(settings.credit_usd, settings.price_markup)
WELCOME_UNITS = settings.welcome_bonus_credits * UNITS_PER_CREDIT
LOW_UNITS = settings.low_balance_credits * UNITS_PER_CREDIT

mount(fastapi_app, health.router(engine, catalog, health_check, ledger))
throttle = Throttle(
    settings.redis_url, settings.login_attempts_per_address, settings.login_attempts_per_account
)
fastapi_app.add_middleware(ThrottledLogin, throttle=throttle)
standings = Standings(engine)
auth_secret = settings.auth_secret()
mount(fastapi_app, password.router(engine, standings, throttle, auth_secret))
sign_in_providers = providers.configured(settings)
mount(
    fastapi_app,
    signin.router(
        signin.SignIn(
            engine,
            sign_in_providers,
            signup.Policy.of(
                settings.signup, settings.signup_emails, settings.signup_email_domains,
                settings.signup_github_org,
            ),
            standings,
            settings.chainlit_url,
            lambda token: standings.account_of(token, auth_secret),
            # The session says "admin" where our records do; every admin action asks them again.
            lambda account: grants.is_admin(engine, account, "admin", settings.admin_email_list),
        )
    ),
)  # fmt: skip
fastapi_app.add_middleware(
    SessionCheck,
    standings=standings,
    secret=auth_secret,
    token_of=get_token_from_cookies,
    cookie_name=AUTH_COOKIE,
)
fastapi_app.add_middleware(edge.Edge, max_body_bytes=int(settings.max_request_mb * 2**20))
edge.restrict_origins(
    chainlit_config.project.allow_origins, chainlit_sio, edge.public_origin(settings.chainlit_url)
)
edge.secure_cookie(
    chainlit_cookie, chainlit_config.project, settings.chainlit_url, settings.session_days
)
# Socket.io frames carry messages and settings, never files (those come over HTTP).
chainlit_sio.eio.max_http_buffer_size = 4 * settings.max_message_chars + 64 * 1024


@cl.on_app_startup
async def start() -> None:
    guard_events(chainlit_sio.handlers["/"], session_counts, chainlit_sio.disconnect)
    if settings.is_postgres and (behind := left_behind(settings.data_dir)):
        log.warning(behind)
        print(f"\n{'=' * 64}\n  {behind}\n{'=' * 64}\n", flush=True)
    await upgrade_async(settings.db_url)
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    if generated := await passwords.ensure_admin(engine, settings.admin_email, admin_password):
        announce_admin_password(generated)
    checkpointer = await resources.enter_async_context(
        open_checkpointer(settings.db_url, settings.data_dir)
    )
    graphs["conversation"] = conversation.build(checkpointer)
    await ledger.start()
    if local_model is not None:
        await start_local_model()
    # Everything made so far lives as long as the process: take it out of the garbage collector's
    # view, or each full collection walks it all and stalls every session (bench/ledger.py).
    gc.collect()
    gc.freeze()
    log.info("Ready: %d chat model(s) enabled", len(catalog.enabled("chat")))


@cl.on_app_shutdown
async def stop() -> None:
    await resources.aclose()
    await metering.finish_settling()
    await remote.close_pools()
    await ledger.close()
    runner.close()
    await engine.dispose()


async def start_local_model() -> None:
    """Load the embedded model, once a child process has shown that it runs on this machine;
    otherwise go on without it (see agents/local_check.py)."""
    assert local_model is not None
    if settings.local_model_check:
        verdict = await local_check.check(runner.path, runner.n_ctx, runner.n_threads)
        if not verdict.ok:
            reason = f"the local model cannot run on this machine: {verdict.reason}"
            catalog.mark_down(local_model.provider.id, reason)
            log.error("%s. %s", reason[0].upper() + reason[1:], local_check.ADVICE)
            return
        log.info("Local model checked in a child process (%s)", verdict.system_info)
    await runner.start()


async def session_counts(sid: str) -> bool:
    """Whether an open socket.io session's token still counts (not signed out, not disabled)."""
    session = WebsocketSession.get(sid)
    if session is None or not session.token:
        return True
    return await standings.admits(session.token, auth_secret)


def announce_admin_password(password: str) -> None:
    """Show the generated password (first, so that it is seen whatever happens next) and keep it
    in the data directory, over a file left by an earlier database (its administrator is not in
    this one)."""
    path = settings.data_dir / "initial-admin-password"
    banner = (
        f"\n{'=' * 64}\n  First run: created administrator {settings.admin_email}\n"
        f"  Password: {password}\n  (also saved to {path}; change it after logging in)\n{'=' * 64}\n"
    )
    print(banner, flush=True)
    write_private(path, password, replace=True)


@cl.data_layer
def data_layer() -> ChatHistory:
    return ChatHistory(
        engine,
        live_authors=frozenset({wallet.AUTHOR}),
        forget=forget_thread,
        max_message_chars=settings.max_message_chars,
    )


async def forget_thread(thread_id: str) -> None:
    """A deleted thread's model memory goes with it."""
    if graph := graphs.get("conversation"):
        await conversation.forget(graph, thread_id)


@cl.password_auth_callback
async def password_login(username: str, password: str) -> cl.User | None:
    login = await passwords.check(engine, username, password)
    if login is None or (await standings.of(login.identifier)).disabled:
        return None
    return cl.User(identifier=login.identifier, metadata={"role": login.role, "via": "password"})


def current_model() -> Model:
    """The model for this turn: the one picked in this chat, "auto", or the default."""
    chosen = (cl.user_session.get("chat_settings") or {}).get(picker.WIDGET)
    return catalog.choose(picker.valid(catalog, chosen))


def user_id() -> str:
    user = cl.context.session.user
    assert user is not None, "every chat has a signed-in user"
    return user.identifier


def user_role() -> object:
    user = cl.context.session.user
    return user.metadata.get("role") if user is not None else None


async def show_balance(
    thread_id: str, for_id: str | None, balance: Balance | None = None
) -> Balance:
    """Send this chat's badge (with the message `for_id`), or update it if it is already shown."""
    balance = balance or await ledger.balance(user_id())
    props = wallet.badge_props(balance, settings.credit_usd, LOW_UNITS)
    badge = cl.user_session.get("badge")
    if badge is not None:
        await wallet.refresh_badge(badge, props)
        return balance
    badge = wallet.new_badge(thread_id, props)
    cl.user_session.set("badge", badge)
    await badge.send(for_id=for_id or "", persist=False)
    return balance


async def show_picker() -> None:
    """The model picker, at the person's saved choice."""
    selected = await picker.preferred(engine, catalog, user_id())
    await picker.settings_widget(catalog, pricing, selected).send()


async def offer_choices() -> None:
    """The model picker, and the commands this person may use."""
    await show_picker()
    admin = await grants.is_admin(engine, user_id(), user_role(), settings.admin_email_list)
    await cl.context.emitter.set_commands(command_menu(admin))


@cl.on_chat_start
async def chat_start() -> None:
    await offer_choices()
    if not settings.metering:
        return
    user = user_id()
    welcomed = await wallet.pay_welcome_bonus(ledger, user, WELCOME_UNITS)
    balance = await ledger.balance(user)
    text = wallet.welcome_text(WELCOME_UNITS, balance) if welcomed else wallet.balance_text(balance)
    greeting = await cl.Message(content=text, author=wallet.AUTHOR).send()
    await show_balance(cl.context.session.thread_id, greeting.id, balance)


@cl.on_chat_resume
async def chat_resume(thread: ThreadDict) -> None:
    await offer_choices()
    if settings.metering:
        steps = thread.get("steps") or []
        await show_balance(thread["id"], steps[-1]["id"] if steps else None)


@cl.on_settings_update
async def settings_update(chosen: dict[str, Any]) -> None:
    """Keep the person's model choice for their next chats; an invalid one is put back."""
    if picker.WIDGET not in chosen:
        return
    kept = await picker.remember(engine, catalog, user_id(), chosen[picker.WIDGET])
    if kept is None:
        await show_picker()


@cl.action_callback("use_model")
async def use_model(action: cl.Action) -> None:
    kept = await picker.remember(engine, catalog, user_id(), action.payload.get("model"))
    if kept is None:
        return
    await show_picker()
    await cl.Message(
        content=f"Switched to {catalog.choose(kept).label}: send your message again.",
        author=wallet.AUTHOR,
    ).send()


@cl.action_callback(statement.RECEIPT_ACTION)
async def show_receipt(action: cl.Action) -> None:
    wanted = str(action.payload.get("transfer", ""))
    await (await statement.prove(ledger, user_id(), wanted, wallet.AUTHOR)).send()


@cl.action_callback(signins.UNLINK_ACTION)
async def unlink_signin(action: cl.Action) -> None:
    said = await signins.unlink(
        engine, user_id(), action.payload.get("provider"), action.payload.get("subject")
    )
    await cl.Message(content=said, author=wallet.AUTHOR).send()


def command_menu(admin: bool) -> list[CommandDict]:
    """The commands offered in the composer: /usage to all, /grant and /adjust to admins."""
    offered = [
        ("usage", "chart-column", "Your spending, last transfers and their receipts"),
        ("signins", "key-round", "How you sign in, and linking another provider"),
        ("password", "lock", "Change your password"),
    ]
    if admin:
        offered += [(verb, "coins", grants.USAGE[verb]) for verb in grants.VERBS]
        offered += [(verb, "user-cog", access.USAGE[verb]) for verb in access.VERBS]
    return [
        CommandDict(
            id=name, icon=icon, description=text, button=False, persistent=False, selected=False
        )
        for name, icon, text in offered
    ]


def command_of(message: cl.Message) -> tuple[str, str] | None:
    """(command, its text) when the message is one of ours, picked from the menu or typed."""
    if message.command in COMMANDS:
        return message.command, message.content
    head, _, rest = message.content.strip().partition(" ")
    if head.startswith("/") and head[1:] in COMMANDS:
        return head[1:], rest
    return None


async def run_command(command: str, text: str, message: cl.Message) -> None:
    if command == "signins":
        await (await signins.overview(engine, user_id(), sign_in_providers, wallet.AUTHOR)).send()
        return
    if command == "password":
        text = await signins.password_text(engine, user_id())
        await cl.Message(content=text, author=wallet.AUTHOR).send()
        return
    if command == "usage":
        labels = {m.id: m.label for m in catalog.models.values()}
        await (await statement.statement(ledger, user_id(), labels, wallet.AUTHOR)).send()
        return
    if not await grants.is_admin(engine, user_id(), user_role(), settings.admin_email_list):
        await cl.ErrorMessage(content=f"Only administrators can use /{command}.").send()
        return
    try:
        if command in access.VERBS:
            done = await access.carry_out(command, text, standings, ledger, engine, user_id())
        else:
            order = grants.parse(command, text)
            done = await grants.carry_out(ledger, engine, order, user_id(), message.id)
    except grants.Refused as refused:
        await cl.ErrorMessage(content=f"/{command} refused: {refused} Nothing was changed.").send()
        return
    await cl.Message(content=done, author=wallet.AUTHOR).send()
    if settings.metering and command in grants.VERBS:  # the admin may have granted to themself
        await show_balance(cl.context.session.thread_id, None)


COMMANDS = ("usage", "signins", "password", *grants.VERBS, *access.VERBS)


def edited(message: cl.Message) -> bool:
    """Whether this message came from an edit: Chainlit's edit removes every later message from
    the chat and runs the edited one again, so it is the chat's only message with its id. A replay
    of an old message id comes in as a second message beside the first."""
    return sum(m.id == message.id for m in cl.chat_context.get()) == 1


@cl.on_message
async def on_message(message: cl.Message | None) -> None:
    if message is None or message.type != "user_message":
        return  # an edit of a message this chat does not have, or of one the person did not write
    if command := command_of(message):
        await run_command(*command, message)
        return
    try:
        text = chat.check_message(message.content, settings.max_message_chars)
    except chat.MessageRejected as rejected:
        if str(rejected):
            await cl.ErrorMessage(content=str(rejected)).send()
        return
    try:
        model = current_model()
    except AgentError as error:
        await cl.ErrorMessage(content=f"{error} Choose another model in the settings.").send()
        return
    context = turn_context(model)
    thread_id = cl.context.session.thread_id
    graph = graphs["conversation"]
    prompt, question = await conversation.prompt_for(
        graph, context, HumanMessage(content=text, id=message.id), thread_id, edited(message)
    )

    async def reply(meter: metering.Meter | None) -> None:
        bill = make_bill(meter, model, context, prompt)
        await chat.answer(
            graph, context, model, question, thread_id, settings.stream_flush_ms, bill
        )

    if not settings.metering:
        await reply(None)
        return
    most = most_cost(model, prompt)
    metadata = {"model": model.id, "kind": "chat"}

    async def charged(meter: metering.Meter) -> None:
        """Once the turn is settled: the low-balance warning if this crossed it, then the badge
        (last, so that its update means all about this charge has been said)."""
        balance = await ledger.balance(user_id())
        await warn_if_low(balance.available + meter.charged, balance.available)
        await show_balance(thread_id, None, balance)

    async with metering.turn(
        ledger, user_id(), settings.hold_timeout_s, metadata, after=charged
    ) as meter:
        try:
            await meter.hold(most)
        except InsufficientCredits as short:
            await tell_shortfall(short.available, most, model, prompt)
            return
        await reply(meter)


async def warn_if_low(before: int, after: int) -> None:
    """One toast and one message when an answer took the balance below the threshold."""
    if wallet.crossed_low(before, after, LOW_UNITS):
        await cl.context.emitter.send_toast(wallet.low_toast(after), "warning")
        await cl.Message(content=wallet.low_text(after, LOW_UNITS), author=wallet.AUTHOR).send()


def turn_context(model: Model) -> TurnContext:
    return TurnContext(
        model=chat_model(
            model,
            runner,
            settings.max_output_tokens,
            settings.model_timeout_s,
            settings.local_temperature,
            settings.stream_flush_ms / 1000,
            settings.model_deadline_s,
        ),
        context_length=model.context_length,
        max_output_tokens=settings.max_output_tokens,
        count_tokens=token_counter(model, runner),
        system_prompt=SYSTEM_PROMPT,
    )


def most_cost(model: Model, prompt: list[BaseMessage]) -> int:
    """The most an answer from `model` to `prompt` can cost: every prompt token and the longest
    answer."""
    longest = settings.max_output_tokens
    tokens_in = conversation.most_input_tokens(prompt, model.context_length, longest)
    return price(model, tokens_in, longest)


def price(model: Model, tokens_in: int, tokens_out: int) -> int:
    return pricing.units(model.input_usd_per_mtok, model.output_usd_per_mtok, tokens_in, tokens_out)


def make_bill(
    meter: metering.Meter | None, model: Model, context: TurnContext, prompt: list[BaseMessage]
) -> chat.Bill:
    """Prices a reply on the usage the provider reported, or on tokens counted here when it
    reported none (a stopped or broken stream), and tells the meter (None: metering is off)."""

    def bill(reply: chat.Reply) -> chat.Charge:
        counted = False
        if reply.input_tokens is not None and reply.output_tokens is not None:
            tokens_in, tokens_out = reply.input_tokens, reply.output_tokens
        elif reply.delivered:
            counted = True
            tokens_in = context.count_tokens(prompt)
            tokens_out = text_counter(model, runner)(reply.text)
        else:  # failed before any token: nothing is charged, the hold is released
            return chat.Charge(None if meter is None else 0, 0, 0, False)
        details: dict[str, object] = {"tokens_in": tokens_in, "tokens_out": tokens_out}
        if counted:
            details["counted"] = True
        if meter is None:
            return chat.Charge(None, tokens_in, tokens_out, counted)
        meter.use(price(model, tokens_in, tokens_out), details)
        return chat.Charge(meter.charged, tokens_in, tokens_out, counted)

    return bill


async def tell_shortfall(
    available: int, needed: int, model: Model, prompt: list[BaseMessage]
) -> None:
    cheaper = None
    for other in sorted(
        catalog.enabled("chat"), key=lambda m: m.input_usd_per_mtok + m.output_usd_per_mtok
    ):
        if other.id == model.id:
            continue
        cost = most_cost(other, prompt)
        if cost <= available and cost < needed:
            cheaper = other
            break
    short = wallet.Shortfall(available, needed, model, cheaper)
    await cl.Message(
        content=wallet.shortfall_text(short),
        actions=wallet.shortfall_actions(short),
        author=wallet.AUTHOR,
    ).send()
