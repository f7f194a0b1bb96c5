"""Chainlit entry point: wiring only. Start with `make run` (or `chainlit run app.py`).

`build` makes what the app runs on and mounts our routes; Chainlit needs them in place before it
serves, so it runs when Chainlit loads this file, and it opens nothing: the databases, the ledger
(and its signing key) and the local model are opened in `start`. Every callback below is a line or
two into the chat side (`ui/`), inside `errors.told()`, the one place errors become chat text.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import AsyncExitStack
from typing import Any

from settings import Settings, get_settings

settings = get_settings()
settings.export_for_chainlit()  # before Chainlit reads its environment

import chainlit as cl  # noqa: E402
from chainlit.auth import cookie as chainlit_cookie  # noqa: E402
from chainlit.auth.cookie import _auth_cookie_name as AUTH_COOKIE  # noqa: E402
from chainlit.auth.cookie import get_token_from_cookies  # noqa: E402
from chainlit.config import config as chainlit_config  # noqa: E402
from chainlit.data import get_data_layer  # noqa: E402
from chainlit.server import app as fastapi_app  # noqa: E402
from chainlit.server import sio as chainlit_sio  # noqa: E402
from chainlit.session import WebsocketSession  # noqa: E402
from chainlit.types import ThreadDict  # noqa: E402

from agents import graph as conversation  # noqa: E402
from agents import local_check, remote, sandbox  # noqa: E402
from agents import tasks as task_graph  # noqa: E402
from agents.catalog import load_catalog  # noqa: E402
from agents.checkpoints import open_checkpointer  # noqa: E402
from agents.fetch import networks as fetch_networks  # noqa: E402
from agents.local import LocalRunner, bundled_model_path  # noqa: E402
from agents.prices import Pricing  # noqa: E402
from agents.providers import Health, HealthCheck  # noqa: E402
from api import edge, errors, health, mount, password, signin  # noqa: E402
from api import images as image_routes  # noqa: E402
from api import payments as payment_routes  # noqa: E402
from auth import passwords, providers, signup  # noqa: E402
from auth.roles import is_admin  # noqa: E402
from auth.sessions import SessionCheck, Standings, guard_events  # noqa: E402
from auth.throttle import Throttle, ThrottledLogin  # noqa: E402
from credits import metering  # noqa: E402
from payments import configured as payments_configured  # noqa: E402
from payments import purchases  # noqa: E402
from payments.chain import Chain  # noqa: E402
from payments.crypto import CryptoPayments  # noqa: E402
from payments.errors import ProviderDown  # noqa: E402
from payments.inbox import Inbox  # noqa: E402
from payments.watcher import Watcher  # noqa: E402
from storage import runs  # noqa: E402
from storage.bucket import Bucket  # noqa: E402
from storage.element_files import ElementFiles  # noqa: E402
from storage.engine import create_engine  # noqa: E402
from storage.history import ChatHistory  # noqa: E402
from storage.images import Folder, Shelf, finish_thumbnails  # noqa: E402
from storage.ledger import ledger_from_settings  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.move import left_behind  # noqa: E402
from storage.session_files import use_own_folder  # noqa: E402
from tasks.carry import Workplace, carry_out  # noqa: E402
from tasks.worker import Worker  # noqa: E402
from ui import (  # noqa: E402
    buy,
    channels,
    crypto,
    edits,
    images,
    loop,
    menu,
    picker,
    route,
    signins,
    statement,
    tasks,
    turnstile,
    wallet,
)  # fmt: skip
from ui.deployment import Deployment, person  # noqa: E402
from ui.errors import told  # noqa: E402
from ui.live import Live  # noqa: E402

log = logging.getLogger("app")


def build(settings: Settings) -> Deployment:
    """What the app runs on, and our HTTP side mounted on Chainlit's (nothing opened yet)."""
    logging.getLogger().setLevel(settings.log_level)
    engine = create_engine(settings.db_url)
    catalog = load_catalog(settings.models_file, settings.provider_secret, settings.default_model)
    local = next((m for m in catalog.models.values() if m.provider.kind == "local"), None)
    runner = LocalRunner(
        path=settings.local_model_path or bundled_model_path(),
        n_ctx=local.context_length if local else 4096,
        n_threads=settings.local_model_threads,
    )
    live = Live(
        channels.chosen(settings.redis_url, settings.db_url),
        lambda news: (wallet.refresh if news.kind == "balance" else tasks.refresh)(d, news),
        heard=lambda news: tasks.heard(d, news),
    )
    ledger = ledger_from_settings(settings)
    sellers = payments_configured.providers(settings)
    inbox = Inbox(engine, ledger, sellers, lambda change: buy.tell(live, change))
    d = Deployment(
        settings, engine, ledger, catalog, runner,
        Pricing(settings.credit_usd, settings.price_markup), Standings(engine),
        providers.configured(settings), settings.auth_secret(), live,
        payments_configured.packs(settings), sellers, inbox, shelf_of(settings),
    )  # fmt: skip
    if chain_config := payments_configured.crypto(settings):
        chain = Chain.at(settings.crypto_rpc_url or "", chain_config.chain_id)
        d.crypto = CryptoPayments(engine, chain, chain_config)
        d.watcher = Watcher(engine, ledger, chain, chain_config, lambda news: crypto.tell(d, news))
    secret = d.auth_secret
    errors.install(fastapi_app)
    mount(
        fastapi_app,
        health.router(
            engine,
            catalog,
            HealthCheck(runner),
            d.ledger,
            live.health,
            d.inbox.health,
            lambda: Health(*d.watcher.summary()) if d.watcher else Health(True, "not used"),
            lambda: d.worker.health() if d.worker else Health(False, "not started"),
        ),
    )
    throttle = Throttle(
        settings.redis_url, settings.login_attempts_per_address, settings.login_attempts_per_account
    )
    fastapi_app.add_middleware(ThrottledLogin, throttle=throttle)
    mount(fastapi_app, password.router(engine, d.standings, throttle, secret))
    mount(fastapi_app, image_routes.router(engine, d.shelf, d.standings, secret))
    mount(
        fastapi_app,
        payment_routes.router(
            engine, d.ledger, d.providers, d.standings, secret,
            lambda change: buy.tell(d.live, change), d.inbox,
        ),
    )  # fmt: skip
    policy = signup.Policy.of(
        settings.signup, settings.signup_emails, settings.signup_email_domains,
        settings.signup_github_org,
    )  # fmt: skip
    mount(
        fastapi_app,
        signin.router(
            signin.SignIn(
                engine, d.sign_in_providers, policy, d.standings, settings.chainlit_url,
                lambda token: d.standings.account_of(token, secret),
                # The session says "admin" where our records do; every admin act asks again.
                lambda account: is_admin(engine, account, "admin", settings.admin_email_list),
            )
        ),
    )  # fmt: skip
    fastapi_app.add_middleware(
        SessionCheck, standings=d.standings, secret=secret, token_of=get_token_from_cookies,
        cookie_name=AUTH_COOKIE,
    )  # fmt: skip
    fastapi_app.add_middleware(edge.Edge, max_body_bytes=int(settings.max_request_mb * 2**20))
    edge.restrict_origins(
        chainlit_config.project.allow_origins,
        chainlit_sio,
        edge.public_origin(settings.chainlit_url),
    )
    edge.secure_cookie(
        chainlit_cookie, chainlit_config.project, settings.chainlit_url, settings.session_days
    )
    uploads = chainlit_config.features.spontaneous_file_upload
    if uploads is not None:
        uploads.max_size_mb = max(1, int(settings.upload_max_mb))
    # Socket.io frames carry messages and settings, never files (those come over HTTP).
    chainlit_sio.eio.max_http_buffer_size = 4 * settings.max_message_chars + 64 * 1024
    return d


def shelf_of(settings: Settings) -> Shelf:
    """Where images and chat files are kept: an S3-compatible bucket, or a folder."""
    if not settings.images_s3_endpoint:
        return Folder(settings.image_folder)
    return Bucket(
        settings.images_s3_endpoint, settings.images_s3_bucket or "",
        settings.images_s3_access_key.get_secret_value() if settings.images_s3_access_key else "",
        settings.images_s3_secret_key.get_secret_value() if settings.images_s3_secret_key else "",
        settings.images_s3_region, settings.images_s3_prefix,
    )  # fmt: skip


d = build(settings)
resources = AsyncExitStack()
# A young collection every 50,000 new objects, not Python's 700: at 200 sessions a turn makes tens
# of thousands of short-lived objects. Over bench/turns.py --rounds 2 the app spent 2.03 s in the
# collector with Python's thresholds (1,516 young collections, 12 full), 1.45 s with these (806, 7;
# both counts include start-up, before the thresholds are set), timed with gc.callbacks. Nothing
# waits on the collector to let go of a stopped turn (ui/loop.py, and every stream read under
# contextlib.aclosing).
GC_THRESHOLDS = (50_000, 10, 10)


@cl.on_app_startup
async def start() -> None:
    """Start everything, or say why not and exit: Chainlit would log an exception raised here and
    serve anyway, half-started."""
    try:
        await start_all()
    except Exception as failed:
        log.exception("Not starting: %s", failed)
        await stop()  # what did start is stopped, or its threads would keep the process alive
        raise SystemExit(3) from failed


async def start_all() -> None:
    loop.close_dropped_generators(asyncio.get_running_loop())  # what chainlit's loop leaves out
    if d.watcher is not None:  # first: a wrong chain stops the start before anything runs
        await check_chain(d.watcher.chain)
    use_own_folder(settings.data_dir)
    wallet.send_badges_after_resume(chainlit_sio.handlers["/"], d, lambda: tasks.show_due(d))
    edits.answer_in_tasks(
        chainlit_sio.handlers["/"],
        lambda thread, message: conversation.rewind(d.conversation, thread, message),
    )
    guard_events(chainlit_sio.handlers["/"], session_counts, chainlit_sio.disconnect)
    turnstile.one_at_a_time(chainlit_sio.handlers["/"])  # around the check: it passes in turn too
    if settings.is_postgres and (behind := left_behind(settings.data_dir)):
        log.warning(behind)
        print(f"\n{'=' * 64}\n  {behind}\n{'=' * 64}\n", flush=True)
    await upgrade_async(settings.db_url)
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    await passwords.ensure_first_admin(
        d.engine, settings.admin_email, admin_password, settings.data_dir
    )
    checkpointer = await resources.enter_async_context(
        open_checkpointer(settings.db_url, settings.data_dir)
    )
    d.graphs["conversation"] = conversation.build(checkpointer)
    await d.ledger.start()
    await start_worker(task_graph.build(checkpointer))
    d.live.start()
    d.inbox.start()
    resources.push_async_callback(d.inbox.close)
    if d.watcher is not None:
        d.watcher.start()
        resources.push_async_callback(d.watcher.chain.close)
        resources.push_async_callback(d.watcher.close)
    if d.providers and settings.reconcile_every_s:
        reconciler = asyncio.create_task(
            purchases.reconcile_forever(
                d.engine, d.ledger, d.providers, settings.reconcile_every_s,
                settings.reconcile_days, lambda change: buy.tell(d.live, change),
            ),
            name="reconciler",
        )  # fmt: skip
        reconciler.add_done_callback(purchases.log_end)
        resources.callback(reconciler.cancel)
    if any(m.provider.kind == "local" for m in d.catalog.models.values()):
        await local_check.start_checked(d.runner, d.catalog, settings.local_model_check)
    # Everything made so far lives as long as the process: take it out of the garbage collector's
    # view, or each full collection walks it all and stalls every session (bench/ledger.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("Ready: %d chat model(s) enabled", len(d.catalog.enabled("chat")))


async def start_worker(graph: task_graph.Task) -> None:
    """The worker of long tasks (on SQLite the only one: what it was doing when the process was
    killed is taken up again at once)."""
    if not settings.is_postgres:
        await runs.recover(d.engine)
    workplace = Workplace(
        d.engine, d.ledger if settings.metering else None, graph, d.catalog, d.runner, d.pricing,
        d.shelf, settings.task_scratch,
        lambda owner, run_id: d.live.tell(owner, kind="task", task=run_id),
        settings.task_model or settings.default_model, settings.max_output_tokens,
        settings.model_timeout_s, settings.hold_timeout_s, fetch_networks(settings.task_fetch_allow),
        sandbox.Limits(cpu_s=settings.task_python_cpu_s, memory_mb=settings.task_python_memory_mb),
    )  # fmt: skip
    d.worker = Worker(
        d.engine, lambda run, name: carry_out(workplace, run, name), settings.task_lease_s,
        settings.task_worker_runs, sweep=lambda: tasks.sweep(d),
    )  # fmt: skip
    d.worker.start()
    resources.push_async_callback(d.worker.close)


async def check_chain(chain: Chain) -> None:
    """The node must serve the configured chain: a mismatch stops the start (a configuration
    mistake); an unreachable node does not (the watcher checks again before its first poll)."""
    try:
        await chain.check()
    except ProviderDown as down:
        log.warning("Crypto: the node cannot be reached now (%s); the watcher keeps trying", down)


@cl.on_app_shutdown
async def stop() -> None:
    if isinstance(history := get_data_layer(), ChatHistory):
        await history.flush()  # what the chats wrote last, before the engine closes
    await resources.aclose()
    await metering.finish_settling()
    await d.live.close()
    await remote.close_pools()
    await finish_thumbnails()
    await d.shelf.close()
    await d.ledger.close()
    d.runner.close()
    await d.engine.dispose()


async def session_counts(sid: str) -> bool:
    """Whether an open socket.io session's token still counts (not signed out, not disabled)."""
    session = WebsocketSession.get(sid)
    if session is None or not session.token:
        return True
    return await d.standings.admits(session.token, d.auth_secret)


@cl.data_layer
def data_layer() -> ChatHistory:
    return ChatHistory(
        d.engine,
        live_authors=frozenset({wallet.AUTHOR}),
        forget=forget_thread,
        max_message_chars=settings.max_message_chars,
        files=ElementFiles(d.shelf),
    )


async def forget_thread(thread_id: str) -> None:
    """A deleted thread's model memory goes with it, and its tasks stop."""
    if graph := d.graphs.get("conversation"):
        await conversation.forget(graph, thread_id)
        await tasks.forget_thread(d, graph.checkpointer, thread_id)


@cl.password_auth_callback
async def password_login(username: str, password: str) -> cl.User | None:
    login = await passwords.check(d.engine, username, password)
    if login is None or (await d.standings.of(login.identifier)).disabled:
        return None
    return cl.User(identifier=login.identifier, metadata={"role": login.role, "via": "password"})


@cl.on_chat_start
async def chat_start() -> None:
    async with told():
        d.live.join(person(), cl.context.session.id)
        await picker.show(d)
        await menu.offer(d)
        if settings.metering:
            await wallet.greet(d)


@cl.on_chat_resume
async def chat_resume(thread: ThreadDict) -> None:
    async with told():
        d.live.join(person(), cl.context.session.id)
        await picker.show(d)
        await menu.offer(d)
        if settings.metering:
            wallet.show_after_resume(thread["id"], wallet.badge_host(thread))
        await images.show_open_quotes(d, thread["id"])
        await tasks.show_open_quotes(d, thread["id"])
        tasks.due_after_resume(thread["id"])


@cl.on_chat_end
async def chat_end() -> None:
    d.live.leave_when_gone(cl.context.session.id, chainlit_config.project.session_timeout + 5)


@cl.on_settings_update
async def settings_update(chosen: dict[str, Any]) -> None:
    async with told():
        await picker.settings_update(d, chosen)


@cl.action_callback(picker.USE_MODEL_ACTION)
async def use_model(action: cl.Action) -> None:
    async with told():
        await picker.use_model(d, action)


@cl.action_callback(statement.RECEIPT_ACTION)
async def show_receipt(action: cl.Action) -> None:
    async with told():
        await statement.receipt_action(d, action)


@cl.action_callback(signins.UNLINK_ACTION)
async def unlink_signin(action: cl.Action) -> None:
    async with told():
        await signins.unlink_action(d, action)


@cl.action_callback(wallet.BUY_ACTION)
async def offer_packs(action: cl.Action) -> None:
    async with told():
        await buy.offer(d)


@cl.action_callback(buy.PACK_ACTION)
async def buy_pack(action: cl.Action) -> None:
    async with told("Buying credits"):
        await buy.buy_pack(d, action)


@cl.action_callback(crypto.CONNECT_ACTION)
async def connect_wallet(action: cl.Action) -> None:
    async with told("Connecting a wallet"):
        await crypto.connect(d)


@cl.action_callback(crypto.MESSAGE_ACTION)
async def wallet_message(action: cl.Action) -> dict[str, Any]:
    return await crypto.message_for(d, action)


@cl.action_callback(crypto.BIND_ACTION)
async def bind_wallet(action: cl.Action) -> dict[str, Any]:
    return await crypto.bind(d, action)


@cl.action_callback(crypto.MANUAL_ACTION)
async def sign_manually(action: cl.Action) -> None:
    async with told("Connecting a wallet"):
        await crypto.sign_manually(d)


@cl.action_callback(crypto.UNBIND_ACTION)
async def unbind_wallet(action: cl.Action) -> None:
    async with told("Unbinding a wallet"):
        await crypto.unbind(d, action)


@cl.action_callback(crypto.SENT_ACTION)
async def crypto_sent(action: cl.Action) -> None:
    await crypto.sent(d, action)


@cl.action_callback(crypto.PASTE_ACTION)
async def paste_hash(action: cl.Action) -> None:
    async with told("Crediting a payment"):
        await crypto.paste_hash(d)


@cl.action_callback(images.CONFIRM_ACTION)
async def confirm_images(action: cl.Action) -> None:
    async with told("Making images"):
        await images.confirm(d, action)  # runs on as the chat's task


@cl.action_callback(images.CANCEL_ACTION)
async def cancel_images(action: cl.Action) -> None:
    async with told():
        await images.cancel(d, action)


@cl.action_callback(images.AS_TEXT_ACTION)
async def images_as_text(action: cl.Action) -> None:
    async with told():
        await route.as_text(d, action)


@cl.action_callback(tasks.START_ACTION)
async def start_task(action: cl.Action) -> None:
    async with told("Starting a task"):
        await tasks.start(d, action)


@cl.action_callback(tasks.MORE_BUDGET_ACTION)
async def more_task_budget(action: cl.Action) -> None:
    async with told():
        await tasks.more_budget(d, action)


@cl.action_callback(tasks.DROP_ACTION)
async def drop_task(action: cl.Action) -> None:
    async with told():
        await tasks.drop(d, action)


@cl.action_callback(tasks.CANCEL_ACTION)
async def cancel_task(action: cl.Action) -> None:
    async with told("Cancelling a task"):
        await tasks.cancel(d, action)


@cl.action_callback(tasks.RAISE_ACTION)
async def raise_task_budget(action: cl.Action) -> None:
    async with told():
        await tasks.raise_budget(d, action)


@cl.on_message
async def on_message(message: cl.Message | None) -> None:
    if message is None or message.type != "user_message":
        return  # an edit of a message this chat does not have, or of one the person did not write
    if found := menu.find(message):
        command, text = found
        async with told(f"/{command.name}"):
            await menu.carry_out(d, command, text, message)
        return
    async with told():
        await route.respond(d, message)
