"""Starts the real app process (chainlit run app.py) once for the end-to-end and browser tests."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from credits.store import Ledger
from credits.verify import verify
from settings import ROOT, Settings
from storage.ledger import ledger_from_settings
from tests.crypto.anvil import CHAIN_ID, running_anvil
from tests.crypto.evm import Evm
from tests.e2e.client import ChatSession, login
from tests.e2e.process import app_environment, app_process, free_port, running_app
from tests.fakes.image_server import FakeStudio
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.paypal_server import FakePayPal
from tests.fakes.stripe_server import FakeStripe

ADMIN = ("admin@example.com", "admin-password-for-tests")
STUDIO = ROOT / "tests" / "fakes" / "studio.toml"  # image and vision models on the loopback studio
ETH_USD = 2000_00000000  # $2,000, as an 8-decimal price feed answers


@dataclass
class RunningApp:
    base_url: str
    data_dir: Path
    fake: FakeOpenAI

    def add_login(self, identifier: str, password: str) -> None:
        add_login(self.data_dir, identifier, password)


def add_login(data_dir: Path, identifier: str, password: str) -> None:
    """Create a password login the way an operator would, with the CLI."""
    subprocess.run(
        [sys.executable, "-m", "auth", "add", identifier, "--password-stdin"],
        input=password.encode(),
        check=True,
        cwd=ROOT,
        env=app_environment(data_dir),
    )


@pytest.fixture(scope="session")
def app() -> Iterator[RunningApp]:
    with app_on_fake() as running:
        yield running


@contextmanager
def app_on_fake(**more: str) -> Iterator[RunningApp]:
    """The app on SQLite with the loopback provider, run with `more` settings."""
    fake = FakeOpenAI().start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-e2e-"))
    overrides = dict(
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        VLLM_BASE_URL=fake.base_url,
        MODEL_TIMEOUT_S="5",
        LOG_LEVEL="INFO",
        CHECKPOINT_EVERY_S="1",  # receipts need a checkpoint covering their transfer
        # Every test signs in from this one address, some ten times as one person:
        # tests/e2e/test_edge.py tests the throttle at its defaults.
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute",
        LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )
    try:
        with running_app(data_dir, **overrides, **more) as base_url:
            yield RunningApp(base_url=base_url, data_dir=data_dir, fake=fake)
    finally:
        fake.stop()


@dataclass
class Studio:
    """The app with image and vision models, served by the loopback studio."""

    base_url: str
    data_dir: Path
    fake: FakeStudio

    def add_login(self, identifier: str, password: str) -> None:
        add_login(self.data_dir, identifier, password)


@pytest.fixture(scope="module")
def studio() -> Iterator[Studio]:
    fake = FakeStudio().start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-images-"))
    overrides = dict(
        ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1], MODELS_FILE=str(STUDIO),
        STUDIO_BASE_URL=fake.base_url, IMAGE_TIMEOUT_S="3", MODEL_TIMEOUT_S="5",
        LOG_LEVEL="INFO", CHECKPOINT_EVERY_S="1",
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute", LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )  # fmt: skip
    try:
        with running_app(data_dir, **overrides) as base_url:
            yield Studio(base_url, data_dir, fake)
    finally:
        fake.stop()


@pytest.fixture
async def ledger(app: RunningApp) -> AsyncIterator[Ledger]:
    async with ledger_beside(app.data_dir) as book:
        yield book


@asynccontextmanager
async def ledger_beside(data_dir: Path) -> AsyncIterator[Ledger]:
    """The ledger of the app on `data_dir`, opened beside it (a second process on the same file
    is supported); `verify` must pass when the block ends."""
    book = ledger_from_settings(Settings(data_dir=data_dir))
    await book.start(background=False)
    yield book
    report = await verify(book)
    await book.close()
    assert report.ok, report.problems


async def new_user(app: RunningApp | Shop) -> tuple[str, str]:
    user, password = f"u{uuid.uuid4().hex[:10]}@example.com", "a-long-enough-password"
    await asyncio.to_thread(app.add_login, user, password)
    return user, password


async def open_chat(app: RunningApp, user: str, password: str) -> ChatSession:
    chat = ChatSession(app.base_url, await login(app.base_url, user, password))
    await chat.connect()
    return chat


@dataclass
class Shop:
    """The app selling credits through the loopback Stripe and PayPal (which send it webhooks)."""

    base_url: str
    data_dir: Path
    stripe: FakeStripe
    paypal: FakePayPal
    settings: dict[str, str]  # what the app runs with (the command line needs the same)

    def add_login(self, identifier: str, password: str) -> None:
        add_login(self.data_dir, identifier, password)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    stripe = FakeStripe("whsec_e2e").start()
    paypal = FakePayPal("pp-client", "pp-secret", "WH-E2E").start()
    data_dir = tmp_path_factory.mktemp("shop")
    overrides = dict(
        ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1], LOG_LEVEL="INFO", CHECKPOINT_EVERY_S="1",
        STRIPE_SECRET_KEY=stripe.api_key, STRIPE_WEBHOOK_SECRET="whsec_e2e",
        STRIPE_API_BASE=stripe.url,
        PAYPAL_CLIENT_ID="pp-client", PAYPAL_CLIENT_SECRET="pp-secret", PAYPAL_WEBHOOK_ID="WH-E2E",
        PAYPAL_API_BASE=paypal.url, PAYPAL_WEBHOOK_VERIFY="api", RECONCILE_EVERY_S="0",
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute", LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )  # fmt: skip
    try:
        with running_app(data_dir, **overrides) as base_url:
            stripe.webhook_url = f"{base_url}/api/payments/stripe/webhook"
            paypal.webhook_url = f"{base_url}/api/payments/paypal/webhook"
            yield Shop(base_url, data_dir, stripe, paypal, overrides)
    finally:
        stripe.stop()
        paypal.stop()


@dataclass
class ChainShop:
    """The app selling credits for crypto on anvil, the chain's parts, and how to (re)start it."""

    base_url: str
    data_dir: Path
    evm: Evm
    token: Any
    settings: dict[str, str]
    port: int
    stack: ExitStack

    def add_login(self, identifier: str, password: str) -> None:
        add_login(self.data_dir, identifier, password)

    def start(self) -> None:
        self.stack.enter_context(app_process(self.data_dir, port=self.port, **self.settings))

    def stop(self) -> None:
        self.stack.close()
        self.stack = ExitStack()


async def open_chain_shop(evm: Evm, data_dir: Path) -> ChainShop:
    await evm.setup()
    token = await evm.deploy("Token", "USD Coin", "USDC", 6)
    feed = await evm.deploy("PriceFeed", 8, "ETH / USD")
    await evm.set_price(feed, ETH_USD, await evm.now())
    receiver = await evm.person(eth=0)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = dict(
        ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1], LOG_LEVEL="INFO", CHAINLIT_URL=base_url,
        CRYPTO_RPC_URL=str(evm.provider.endpoint_uri),  # type: ignore[attr-defined]
        CRYPTO_CHAIN_ID=str(CHAIN_ID), CRYPTO_CHAIN_NAME="Anvil",
        CRYPTO_RECEIVING_ADDRESS=receiver.address, CRYPTO_TOKEN_ADDRESS=str(token.address),
        CRYPTO_PRICE_FEED=str(feed.address), CRYPTO_CONFIRMATIONS="3", CRYPTO_POLL_S="0.2",
        CRYPTO_START_BLOCK="0", CRYPTO_EXPLORER_URL="https://explorer.example",
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute", LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )  # fmt: skip
    return ChainShop(base_url, data_dir, evm, token, settings, port, ExitStack())


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    with running_anvil() as url:
        yield url


@pytest.fixture(scope="module")
async def chain_shop(
    anvil: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ChainShop]:
    shop = await open_chain_shop(Evm.at(anvil), tmp_path_factory.mktemp("crypto"))
    shop.start()
    try:
        yield shop
    finally:
        shop.stop()
        await shop.evm.close()


@dataclass
class Tasker:
    """The app with tasks thinking on the scripted provider, selling credits through Stripe; it
    can be killed and started again on the same data and port."""

    base_url: str
    data_dir: Path
    fake: FakeOpenAI
    stripe: FakeStripe
    settings: dict[str, str]
    port: int
    stack: ExitStack = field(default_factory=ExitStack)
    proc: subprocess.Popen | None = None

    def add_login(self, identifier: str, password: str) -> None:
        add_login(self.data_dir, identifier, password)

    def start(self) -> None:
        _, self.proc = self.stack.enter_context(
            app_process(self.data_dir, port=self.port, **self.settings)
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.stack.close()
        self.stack = ExitStack()


@pytest.fixture(scope="module")
def tasker() -> Iterator[Tasker]:
    fake = FakeOpenAI().start()
    stripe = FakeStripe("whsec_tasks").start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-tasks-"))
    port = free_port()
    settings = dict(
        ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1], LOG_LEVEL="INFO", CHECKPOINT_EVERY_S="1",
        VLLM_BASE_URL=fake.base_url, TASK_MODEL="vllm-llama-3.1-8b", MODEL_TIMEOUT_S="5",
        STRIPE_SECRET_KEY=stripe.api_key, STRIPE_WEBHOOK_SECRET="whsec_tasks",
        STRIPE_API_BASE=stripe.url, RECONCILE_EVERY_S="0",
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute", LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )  # fmt: skip
    shop = Tasker(f"http://127.0.0.1:{port}", data_dir, fake, stripe, settings, port)
    stripe.webhook_url = f"{shop.base_url}/api/payments/stripe/webhook"
    shop.start()
    try:
        yield shop
    finally:
        shop.stack.close()
        fake.stop()
        stripe.stop()
