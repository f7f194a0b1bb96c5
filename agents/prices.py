"""What model work costs in credits: the catalogue's provider prices turned into ledger units.

Providers price in US dollars (per million tokens; per image at a reference size and step count);
a person pays in credits. One credit is CREDIT_USD dollars, and PRICE_MARKUP multiplies every
provider price. Results are whole ledger units, rounded up: the smallest amount is never free by
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from agents.catalog import ImageSpec, Model, WorkPrice
from credits.ledger import UNITS_PER_CREDIT


@dataclass(frozen=True)
class Pricing:
    """Turns provider prices in US dollars into ledger units."""

    credit_usd: Decimal
    markup: Decimal = Decimal(1)

    def of_usd(self, usd: Decimal) -> int:
        """What work the provider prices at `usd` costs, in units, rounded up to a whole unit."""
        units = usd * self.markup / self.credit_usd * UNITS_PER_CREDIT
        return int(units.to_integral_value(rounding=ROUND_CEILING))

    def units(
        self,
        input_usd_per_mtok: Decimal,
        output_usd_per_mtok: Decimal,
        tokens_in: int,
        tokens_out: int,
    ) -> int:
        """What `tokens_in` and `tokens_out` cost, in units."""
        return self.of_usd(
            (input_usd_per_mtok * tokens_in + output_usd_per_mtok * tokens_out) / 1_000_000
        )

    def tokens(self, model: Model, tokens_in: int, tokens_out: int) -> int:
        """What `model` costs for `tokens_in` and `tokens_out`, in units."""
        return self.units(
            model.input_usd_per_mtok, model.output_usd_per_mtok, tokens_in, tokens_out
        )

    def work(
        self, price: WorkPrice, tokens_in: int = 0, tokens_out: int = 0, calls: int = 0
    ) -> int:
        """What `calls` calls of a kind of work reading `tokens_in` and writing `tokens_out`
        cost, in units."""
        tokens = price.input_usd_per_mtok * tokens_in + price.output_usd_per_mtok * tokens_out
        return self.of_usd(tokens / 1_000_000 + price.call_usd * calls)

    def image(self, spec: ImageSpec, width: int, height: int, steps: int | None) -> int:
        """What ONE image of `width` x `height` pixels made in `steps` steps costs, in units:
        the catalogue's price at its reference size and steps, scaled linearly by both."""
        pixels = Decimal(width * height) / (spec.reference[0] * spec.reference[1])
        if spec.reference_steps is None or steps is None:
            return self.of_usd(spec.usd * pixels)
        return self.of_usd(spec.usd * pixels * steps / spec.reference_steps)

    def credits_per_1k(self, usd_per_mtok: Decimal) -> Decimal:
        """Credits per 1,000 tokens at a provider price in dollars per million tokens."""
        return usd_per_mtok / 1000 * self.markup / self.credit_usd
