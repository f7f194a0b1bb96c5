"""The packs on sale, read from `packs.toml`: what each costs and how many credits it gives.

Prices are kept in the currency's minor unit (cents) as integers, credits in ledger units; nothing
here is a float. A file that does not parse, names an unknown currency or prices a pack at nothing
is refused when the app starts, with the line to fix.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from credits.ledger import UNITS_PER_CREDIT, show_credits
from payments.errors import UnknownPack

PACK_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
# Currencies both providers take, and their minor-unit exponent (Stripe's and PayPal's lists agree
# on these; a currency where they differ, like HUF, is left out).
EXPONENTS = {
    "usd": 2, "eur": 2, "gbp": 2, "chf": 2, "cad": 2, "aud": 2, "nzd": 2, "sek": 2, "nok": 2,
    "dkk": 2, "pln": 2, "czk": 2, "mxn": 2, "brl": 2, "sgd": 2, "hkd": 2, "ils": 2, "php": 2,
    "thb": 2, "jpy": 0,
}  # fmt: skip


@dataclass(frozen=True)
class Pack:
    id: str
    label: str
    currency: str
    price_minor: int  # in the currency's minor unit
    credits: int  # whole credits bought
    bonus: int = 0  # whole credits given on top

    @property
    def units(self) -> int:
        """Ledger units the pack gives, bonus included."""
        return (self.credits + self.bonus) * UNITS_PER_CREDIT

    @property
    def price(self) -> str:
        """The price as people read it: `20.00 USD`."""
        return show_money(self.price_minor, self.currency)

    def describe(self) -> str:
        bonus = f" + {self.bonus:,} bonus" if self.bonus else ""
        return f"{self.label}: {self.credits:,} credits{bonus} for {self.price}"

    @property
    def total_credits(self) -> str:
        return show_credits(self.units)


def show_money(minor: int, currency: str) -> str:
    exponent = EXPONENTS.get(currency, 2)
    major = Decimal(minor).scaleb(-exponent)
    return f"{major:,.{exponent}f} {currency.upper()}"


def to_major(minor: int, currency: str) -> str:
    """`2000, "usd"` -> `"20.00"`, as PayPal takes amounts."""
    exponent = EXPONENTS.get(currency, 2)
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


def to_minor(major: str, currency: str) -> int:
    """`"20.00", "usd"` -> `2000`; more decimals than the currency has is an error."""
    exponent = EXPONENTS.get(currency, 2)
    try:
        value = Decimal(major)
    except InvalidOperation:
        raise ValueError(f"{major!r} is not an amount") from None
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{major!r} has more decimals than {currency.upper()} has")
    return int(minor)


class Packs:
    """The pack catalogue: `find(id)`, and the packs in the file's order."""

    def __init__(self, currency: str, packs: list[Pack]) -> None:
        self.currency = currency
        self.all = packs
        self._by_id = {p.id: p for p in packs}

    def find(self, pack_id: object) -> Pack:
        if not isinstance(pack_id, str) or pack_id not in self._by_id:
            raise UnknownPack(f"There is no pack {str(pack_id)[:40]!r}.")
        return self._by_id[pack_id]

    @classmethod
    def load(cls, path: Path) -> Packs:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: dict[str, object], where: str = "packs.toml") -> Packs:
        currency = str(data.get("currency", "")).lower()
        if currency not in EXPONENTS:
            raise ValueError(f"{where}: currency {currency!r} is not one of {sorted(EXPONENTS)}")
        table = data.get("packs", {})
        if not isinstance(table, dict):
            raise ValueError(f"{where}: [packs.<id>] tables expected")
        packs = []
        for pack_id, entry in table.items():
            if not PACK_ID.fullmatch(pack_id) or not isinstance(entry, dict):
                raise ValueError(f"{where}: [packs.{pack_id}] is not a valid pack")
            try:
                price = to_minor(str(entry["price"]), currency)
                credits, bonus = entry["credits"], entry.get("bonus", 0)
                label = str(entry.get("label", pack_id))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{where}: [packs.{pack_id}]: {exc}") from exc
            if price <= 0 or not isinstance(credits, int) or credits <= 0:
                raise ValueError(f"{where}: [packs.{pack_id}] must cost and give something")
            if not isinstance(bonus, int) or bonus < 0:
                raise ValueError(f"{where}: [packs.{pack_id}]: bonus is a whole number >= 0")
            packs.append(Pack(pack_id, label, currency, price, credits, bonus))
        return cls(currency, packs)
