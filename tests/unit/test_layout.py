"""The shape ARCHITECTURE.md asks for, kept: the ledger is a library, the chat side is a leaf.

Read from the source (imports), so a module that reaches across a boundary fails here before it
becomes a habit."""

from __future__ import annotations

import ast
from pathlib import Path

from settings import ROOT

APP_PARTS = {"settings", "storage", "ui", "agents", "auth", "api", "payments", "app"}
FRAMEWORKS = {"chainlit", "langchain_core", "langgraph", "fastapi"}


def imported(path: Path) -> set[str]:
    """The top-level package of everything `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_ledger_library_knows_nothing_of_the_app() -> None:
    """Everything in `credits/` but its command line imports neither the app's parts (its
    settings, storage, chat side, models) nor Chainlit, LangChain or FastAPI."""
    library = [p for p in (ROOT / "credits").glob("*.py") if p.name != "__main__.py"]
    assert len(library) > 10
    reaching = {p.name: imported(p) & (APP_PARTS | FRAMEWORKS) for p in library}
    assert {name: found for name, found in reaching.items() if found} == {}


def test_only_the_entry_point_imports_the_chat_side() -> None:
    """`ui/` is what a person meets in Chainlit: the packages below it never import it."""
    below = [
        p
        for package in ("credits", "agents", "auth", "storage", "api", "payments")
        for p in (ROOT / package).rglob("*.py")
    ]
    assert [str(p.relative_to(ROOT)) for p in below if "ui" in imported(p)] == []


def test_the_payment_sdks_are_imported_only_by_their_adapters() -> None:
    """Stripe's and PayPal's SDKs stay inside payments/stripe.py and payments/paypal.py, and
    web3.py inside payments/chain.py (eth-account, its signing half, signs in wallets too)."""
    sources = [
        p for p in ROOT.rglob("*.py")
        if not p.is_relative_to(ROOT / ".venv") and not p.is_relative_to(ROOT / "tests")
    ]  # fmt: skip
    users = {
        sdk: sorted(str(p.relative_to(ROOT)) for p in sources if sdk in imported(p))
        for sdk in ("stripe", "paypalserversdk", "web3", "eth_account")
    }
    assert users == {
        "stripe": ["payments/stripe.py"],
        "paypalserversdk": ["payments/paypal.py"],
        "web3": ["payments/chain.py"],
        "eth_account": ["payments/siwe.py"],
    }
