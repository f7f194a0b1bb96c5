"""The chat side of every piece of metered work: hold what it can cost, run it, tell the person.

Chat answers use it now; images, vision and task steps will. The kind of work (ui/turn.py for chat)
prices it (`Work.most`, the most it can cost), says what runs it, and prices what was delivered with
`meter.use` as it ends; `credits.metering` holds, settles or releases (see its docstring for every
way a piece of work can end). This module adds what the person meets: the shortfall message when
they cannot cover the work (nothing was held or sent), and after the settle the low-balance warning
and the badge (after a shortfall too: it shows the balance as it is now). With METERING=false the
work runs unmetered (`meter` is None).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from credits import metering
from credits.errors import InsufficientCredits, OwesCredits
from ui import wallet
from ui.deployment import Deployment, person

Do = Callable[[metering.Meter | None], Awaitable[None]]
Short = Callable[[int], Awaitable[None]]  # told what the person has, when it cannot cover the work


async def run(d: Deployment, work: metering.Work, do: Do, short: Short) -> None:
    """Run `do` for `work`: on a hold of its most, settled at what it used; or `short`."""
    if not d.settings.metering:
        await do(None)
        return
    try:
        meter = await metering.hold(d.ledger, person(), work, d.settings.hold_timeout_s)
    except OwesCredits as owing:
        await wallet.tell_owed(d, owing.owed)
        await wallet.after_charge(d, 0)
        return
    except InsufficientCredits as shortfall:
        await short(shortfall.available)
        await wallet.after_charge(d, 0)  # the badge, with the balance as it is now
        return

    async def told(meter: metering.Meter) -> None:
        await wallet.after_charge(d, meter.charged)

    async with metering.running(meter, after=told):
        await do(meter)
