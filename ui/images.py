"""Images in the chat: asked for in words or with `/image`, quoted, confirmed, watched, kept.

A request becomes a plan (the person's image choices from the settings, checked against the model:
`agents.images.check`) priced per image from the catalogue (`Pricing.image`). At or above the
person's "ask me above" price the quote waits for Confirm (storage/work_quotes.py: confirmed once,
shown again when the chat is reopened); below it, the quote is shown and the images are made.

Making them runs on the metered path: the most they can cost (every image asked for) is held, and
the provider's requests go out at once (the page is told while it works); each image that comes
back whole is stored with its thumbnail (storage/images.py) and shown, and the charge is the price
of the images delivered, never what the provider says. The progress bar moves from the model's
measured pace (`agents.images.Pace`) until each image arrives, with the partial images a provider
streams (where it does) shown small meanwhile. Stop keeps and charges the images already shown; a
failure, a timeout or a broken image costs nothing for the images it took.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import chainlit as cl
from chainlit.input_widget import InputWidget, Select, Slider, TextInput

from agents import images
from agents.catalog import Model
from agents.errors import AgentError, ModelNotAvailable
from agents.images import ImageRefused, ImageRequest
from credits import metering
from credits.ledger import UNITS_PER_CREDIT, show_credits
from storage import images as kept_images
from storage import preferences, work_quotes
from ui import chat_task, metered, quotes, wallet
from ui.command import Command
from ui.deployment import Deployment, person
from ui.errors import Refused, told
from ui.wallet import AUTHOR

log = logging.getLogger("images")

CONFIRM_ACTION = "image_confirm"
CANCEL_ACTION = "image_cancel"
AS_TEXT_ACTION = "image_as_text"
PROGRESS = "ImageProgress"
TICK_S = 0.5  # the progress bar moves this often while the provider works
DEFAULT = "default"
SIZES = ("512x512", "768x768", "1024x1024", "1024x768", "768x1024", "1536x1024", "1024x1536",
         "1280x720", "720x1280")  # fmt: skip
# The chat settings' widgets for images, and the preference each one keeps.
WIDGETS = {"image_model": "model", "image_size": "size", "image_steps": "steps",
           "image_count": "count", "image_seed": "seed", "ask_above": "ask_above"}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Images to make: the model, the request, and the price of one image, in units."""

    model: Model
    request: ImageRequest
    per_image: int

    @property
    def most(self) -> int:
        return self.per_image * self.request.count

    def describe(self) -> str:
        r = self.request
        steps = f" · {r.steps} steps" if r.steps is not None else ""
        seed = f" · seed {r.seed}" if r.seed is not None else ""
        count = "1 image" if r.count == 1 else f"{r.count} images"
        return (
            f"**{self.model.label}** · {r.size}{steps} · {count}{seed} · "
            f"**{show_credits(self.most)} credits**"
            + (f" ({show_credits(self.per_image)} each)" if r.count > 1 else "")
        )

    def as_json(self) -> dict[str, Any]:
        r = self.request
        return {"model": self.model.id, "prompt": r.prompt, "width": r.width, "height": r.height,
                "steps": r.steps, "count": r.count, "seed": r.seed, "per_image": self.per_image}  # fmt: skip


def image_model(d: Deployment, chosen: object) -> Model:
    """The person's image model, or the cheapest enabled one; `ModelNotAvailable` when none is."""
    able = d.catalog.enabled("image")
    if not able:
        raise ModelNotAvailable(
            "No image model is configured here. An administrator can enable one by setting a "
            "provider's key (NEBIUS_API_KEY for FLUX, OPENAI_API_KEY, OPENROUTER_API_KEY): see "
            "models.toml.",
            pickable=False,
        )
    for model in able:
        if model.id == chosen:
            return model
    return min(able, key=lambda m: m.image.usd if m.image else 0)


async def plan_for(d: Deployment, prompt: str) -> tuple[Plan, int]:
    """The plan for `prompt` with the person's choices, and the price in units at or above which
    they are asked first; `ImageRefused` when the model cannot make it."""
    chosen = await preferences.image_choices_of(d.engine, person())
    model = image_model(d, chosen.model)
    assert model.image is not None
    request = request_for(model, chosen, prompt)
    per_image = d.pricing.image(model.image, request.width, request.height, request.steps)
    ask_above = d.settings.image_ask_above_credits if chosen.ask_above is None else chosen.ask_above
    return Plan(model, request, per_image), ask_above * UNITS_PER_CREDIT


def request_for(model: Model, chosen: preferences.ImageChoices, prompt: str) -> ImageRequest:
    """The request `chosen` makes of `model`, checked (`ImageRefused` saying what it takes)."""
    assert model.image is not None
    size = chosen.size or DEFAULT
    width, height = model.image.default_size if size == DEFAULT else _size(size)
    steps = chosen.steps or model.image.default_steps
    request = ImageRequest(prompt, width, height, steps, chosen.count or 1, chosen.seed)
    return images.check(model.image, request)


async def ask(d: Deployment, prompt: str, why: str) -> None:
    """Quote images of `prompt`; make them now when the quote is below the person's threshold."""
    if not prompt.strip():
        raise Refused(
            "Say what the image should show, e.g. `/image a lighthouse at dusk`. The model, size, "
            "steps, number of images and seed are in the chat settings."
        )
    plan, ask_above = await plan_for(d, prompt)
    step = cl.Step(name="Route", type="tool", show_input=False)
    step.output = f"**Image** · {why}\n\nQuote: {plan.describe()}"
    await step.send()
    if d.settings.metering and plan.most >= ask_above:
        quote = await work_quotes.offer(
            d.engine, person(), cl.context.session.thread_id, "image", plan.as_json(), plan.most
        )
        await show_quote(quote, plan)
        return
    await make(d, plan)


async def show_quote(quote: work_quotes.Quote, plan: Plan) -> None:
    payload = {"quote": quote.id}
    message = cl.Message(
        content=f"**Make this image?** {plan.describe()}\n\n> {_quoted(plan.request.prompt)}\n\n"
        "Nothing is spent until you confirm; you pay only for the images that come back.",
        actions=[
            cl.Action(name=CONFIRM_ACTION, payload=payload, label="Confirm"),
            cl.Action(name=CANCEL_ACTION, payload=payload, label="Cancel"),
            cl.Action(name=AS_TEXT_ACTION, payload=payload, label="Answer in text instead"),
        ],
        author=AUTHOR,
    )
    await message.send()
    quotes.remember(quote.id, message)


async def show_open_quotes(d: Deployment, thread_id: str) -> None:
    """A reopened chat's quotes that still wait for an answer, with their buttons again."""
    for quote in await work_quotes.open_in(d.engine, person(), thread_id):
        if quote.kind == "image":
            with contextlib.suppress(AgentError):
                await show_quote(quote, plan_of(d, quote))


def plan_of(d: Deployment, quote: work_quotes.Quote) -> Plan:
    """The plan a quote was made for, at the price quoted."""
    r = quote.request
    model = d.catalog.get(str(r["model"]))
    request = ImageRequest(
        str(r["prompt"]), int(r["width"]), int(r["height"]), r["steps"], int(r["count"]), r["seed"]
    )
    return Plan(model, request, int(r["per_image"]))


async def decide(
    d: Deployment, action: cl.Action, decision: work_quotes.Decision
) -> work_quotes.Quote | None:
    """Confirm or cancel an image quote: once, by its owner; its buttons go."""
    return await quotes.decide(d, action, decision, AUTHOR, "Ask again for a new one.")


async def confirm(d: Deployment, action: cl.Action) -> None:
    """Confirm: the images are made as the chat's running task, so that Stop stops them (an
    action's callback runs in an HTTP request, which Stop does not reach) and the page shows the
    Stop button meanwhile; the button's request returns at once."""
    if (quote := await decide(d, action, "confirmed")) is None:
        return
    plan = plan_of(d, quote)
    chat_task.start(make_told(d, plan), "making images")


async def make_told(d: Deployment, plan: Plan) -> None:
    """`make`, with what goes wrong told in the chat."""
    async with told("Making images"):
        await make(d, plan)


async def cancel(d: Deployment, action: cl.Action) -> None:
    if await decide(d, action, "cancelled") is not None:
        await cl.Message(content="Cancelled: nothing was spent.", author=AUTHOR).send()


async def make(d: Deployment, plan: Plan) -> None:
    """Make the images of `plan` on a hold of their most; charge the ones delivered."""
    work = metering.Work(
        "image", plan.most,
        {"model": plan.model.id, "size": plan.request.size, "steps": plan.request.steps,
         "images": plan.request.count},
    )  # fmt: skip

    async def do(meter: metering.Meter | None) -> None:
        await Making(d, plan, meter).run()

    async def short(available: int) -> None:
        await wallet.tell_cannot_cover(
            d, available, "this image", plan.describe(),
            "A smaller size, fewer steps or fewer images cost less.",
        )  # fmt: skip

    await metered.run(d, work, do, short)


class Making:
    """The images of one plan being made: the progress bar, then the thumbnails."""

    # Made once the provider's requests are out (each of Chainlit's takes ~1 ms): the message,
    # and the step that sums the work up at the end.
    message: cl.Message
    summary: cl.Step

    def __init__(self, d: Deployment, plan: Plan, meter: metering.Meter | None) -> None:
        self.d = d
        self.plan = plan
        self.meter = meter
        self.kept: list[kept_images.Stored] = []
        self.partials: dict[int, str] = {}  # image index -> its latest partial, as a data URI
        self.failures: list[str] = []
        self.started = time.monotonic()
        self.estimate_s = d.pace.estimate_s(plan.model, plan.request)
        self.progress = cl.CustomElement(
            name=PROGRESS, props=self.props("working"), display="inline"
        )

    def _count(self) -> str:
        n = self.plan.request.count
        return "1 image" if n == 1 else f"{n} images"

    def props(self, state: str) -> dict[str, object]:
        asked = self.plan.request.count
        elapsed = time.monotonic() - self.started
        share = min(0.95, elapsed / self.estimate_s) if self.estimate_s > 0 else 0.95
        percent = 100 if state == "done" else round(100 * max(len(self.kept) / asked, share))
        return {
            "state": state,  # working, done, failed, stopped
            "percent": min(percent, 100 if state == "done" else 99),
            "asked": asked,
            "done": len(self.kept),
            "label": self.plan.model.label,
            "previews": [f"/images/{s.id}/thumb" for s in self.kept],
            "partials": [self.partials[n] for n in sorted(self.partials)]
            if state == "working"
            else [],
            "elapsed_s": round(elapsed, 1),
        }

    async def show(self, state: str) -> None:
        await wallet.refresh_badge(self.progress, self.props(state))

    async def run(self) -> None:
        d, plan = self.d, self.plan
        # The provider starts first: the page is told while it works.
        sent = images.send(plan.model, plan.request, d.settings.image_timeout_s, self.preview)
        try:
            self.message = cl.Message(
                content=f"Making {self._count()} with {plan.model.label}…",
                author=plan.model.label,
            )
            await self.message.send()
            # The bar goes straight to the page (element.send would also write its props to a
            # file at every update, for a history write that storage/history.py skips).
            self.progress.for_id = self.message.id
            await self.show("working")
        except BaseException:
            sent.cancel()
            raise
        self.summary = cl.Step(name=plan.model.label, type="tool", show_input=False)
        ticker = asyncio.create_task(self.tick(), name="image-progress")
        state = "stopped"
        try:
            await self.receive(sent)
            state = "done" if not self.failures else "failed"
        finally:
            sent.cancel()  # however receiving ended, no request is left out
            ticker.cancel()
            if self.meter is not None:  # all is in: charged while the page is told
                self.meter.settle_soon()
            await self.finish(state)

    async def tick(self) -> None:
        """Moves the bar while the provider works (cancelled once the images are in)."""
        try:
            while True:
                await asyncio.sleep(TICK_S)
                await self.show("working")
        except asyncio.CancelledError:
            raise
        except Exception:  # the person left: the work goes on without its bar
            log.warning("The progress bar stopped", exc_info=True)

    async def receive(self, sent: images.Sent) -> None:
        d, plan = self.d, self.plan
        made = kept_images.Made(
            person(), cl.context.session.thread_id,
            self.meter.transfer_id if self.meter else "unmetered", plan.model.id,
            plan.request.prompt,
        )  # fmt: skip
        coming = images.arrivals(sent)
        try:
            async with contextlib.aclosing(coming):
                async for picture in coming:
                    await self.keep(made, picture)
        except images.ImageFailed as failed:
            self.failures += failed.reasons
        except AgentError as failed:
            self.failures.append(str(failed))
        if not self.failures:
            d.pace.observe(plan.model, plan.request, time.monotonic() - self.started)

    async def keep(self, made: kept_images.Made, picture: images.Picture) -> None:
        d, plan = self.d, self.plan
        try:
            stored = await kept_images.keep(
                d.engine, d.shelf, made, picture.data, picture.content_type,
                picture.width, picture.height, picture.sha256,
            )  # fmt: skip
        except OSError as error:
            log.error("An image could not be stored: %s", error)
            self.failures.append("An image came back but could not be stored here.")
            return
        kept_images.thumbnail_soon(d.engine, d.shelf, stored.id, picture.data)
        self.kept.append(stored)
        if self.meter is not None:
            self.meter.use(
                plan.per_image * len(self.kept),
                {"images": len(self.kept), "asked": plan.request.count},
            )
        if len(self.kept) < plan.request.count:  # the last one: the message says it
            await self.show("working")

    async def preview(self, index: int, data: bytes) -> None:
        """A partial image the provider streamed: shown small until the image itself comes."""
        try:
            small = await asyncio.to_thread(kept_images.thumbnail, data)
        except kept_images.Unreadable:
            return  # a preview that does not decode is not worth a word
        self.partials[index] = "data:image/jpeg;base64," + base64.b64encode(small).decode()
        if self.progress.for_id:  # the bar is on the page (else it shows this when it comes)
            await self.show("working")

    async def finish(self, state: str) -> None:
        plan, kept = self.plan, self.kept
        lines = [gallery(kept)] if kept else []
        if state == "stopped":
            lines.append(f"Stopped: {len(kept)} of {plan.request.count} images came before that.")
        elif self.failures:
            lines.append(
                f"**{plan.request.count - len(kept)} of {plan.request.count} images did not "
                f"come back.** {images.summary(self.failures)}"
            )
        charged = self.meter.charged if self.meter is not None else None
        cost = "not metered" if charged is None else f"charged **{show_credits(charged)} credits**"
        if self.failures or state == "stopped":
            lines.append(
                f"You are charged for the {len(kept)} delivered: {cost}."
                if kept
                else "Nothing was charged."
            )
        self.message.content = "\n\n".join(lines) or "No image came back. Nothing was charged."
        self.message.elements = []
        with contextlib.suppress(Exception):  # the bar's last word, then it goes: the message
            await self.show(state)  # says it all from here on (and is kept with the thread)
            # From the page only: it was never stored (Element.remove would delete it there too).
            await cl.context.emitter.emit("remove_element", {"id": self.progress.id})
        await self.message.update()
        self.summary.output = (
            f"**{plan.model.label}** · {cost} · {len(kept)} of {plan.request.count} images · "
            f"{plan.request.size}"
            + (f" · {plan.request.steps} steps" if plan.request.steps else "")
            + f" · {time.monotonic() - self.started:.2f} s"
        )
        await self.summary.send()


def gallery(kept: list[kept_images.Stored]) -> str:
    """Thumbnails, each opening the full image, and a download link under each."""
    pictures = " ".join(
        f"[![{_alt(s.prompt)}](/images/{s.id}/thumb)](/images/{s.id})" for s in kept
    )
    links = " · ".join(
        f"[Image {n} full size](/images/{s.id}) ([download](/images/{s.id}?download=1))"
        for n, s in enumerate(kept, 1)
    )
    return f"{pictures}\n\n{links}"


def _alt(prompt: str) -> str:
    return " ".join(prompt.replace("[", "(").replace("]", ")").split())[:120]


def _quoted(prompt: str) -> str:
    return " ".join(prompt.split())[:500]


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise ImageRefused(f"{text!r} is not a size like 1024x768.")
    return int(width), int(height)


def widgets(d: Deployment, chosen: preferences.ImageChoices) -> list[InputWidget]:
    """The image choices in the chat settings (shown only where an image model is enabled)."""
    able = d.catalog.enabled("image")
    if not able:
        return []
    current = image_model(d, chosen.model)
    seed = chosen.seed
    ask_above = d.settings.image_ask_above_credits if chosen.ask_above is None else chosen.ask_above
    return [
        Select(
            id="image_model", label="Image model", initial_value=current.id,
            items={f"{m.label} · {show_credits(_per_image(d, m))} credits an image": m.id for m in able},
            description="Prices are for one image at the model's default size and steps.",
        ),
        Select(
            id="image_size", label="Image size", initial_value=chosen.size or DEFAULT,
            items={"The model's default": DEFAULT, **{s: s for s in SIZES}},
            description="Width x height in pixels; the price scales with the pixels.",
        ),
        Slider(
            id="image_steps", label="Image steps (0: the model's default)",
            initial=float(chosen.steps or 0), min=0, max=50, step=1,
            description="More steps: finer images, slower, and priced in proportion.",
        ),
        Slider(
            id="image_count", label="Images per request",
            initial=float(chosen.count or 1), min=1, max=4, step=1,
        ),
        TextInput(
            id="image_seed", label="Image seed (empty: random)",
            initial="" if seed is None else str(seed),
        ),
        Slider(
            id="ask_above", label="Ask me before work costing at least (credits)",
            initial=float(ask_above),
            min=0, max=500, step=1,
        ),
    ]  # fmt: skip


def _per_image(d: Deployment, model: Model) -> int:
    assert model.image is not None
    width, height = model.image.default_size
    return d.pricing.image(model.image, width, height, model.image.default_steps)


async def settings_update(d: Deployment, chosen: dict[str, object]) -> None:
    """Keep the image choices the settings changed, once they make sense for the model chosen."""
    if not any(key in chosen for key in WIDGETS) or not d.catalog.enabled("image"):
        return
    wanted = parse_choices(chosen)
    kept = await preferences.image_choices_of(d.engine, person())
    after = replace(kept, **wanted)  # type: ignore[arg-type]
    model = image_model(d, after.model)
    request_for(model, after, "a check")
    await preferences.choose_images(d.engine, person(), {**wanted, "model": model.id})


def parse_choices(chosen: dict[str, object]) -> dict[str, preferences.Choice]:
    """The settings' values as preferences; `Refused` for one that is not a choice at all."""
    out: dict[str, preferences.Choice] = {}
    for widget, name in WIDGETS.items():
        if widget not in chosen:
            continue
        value = chosen[widget]
        if name in ("model", "size"):
            out[name] = None if value == DEFAULT and name == "size" else str(value)
            continue
        if name == "seed" and (value is None or str(value).strip() == ""):
            out[name] = None
            continue
        try:
            number = int(float(str(value)))
        except ValueError:
            raise Refused(
                f"{name.replace('_', ' ').capitalize()} must be a whole number."
            ) from None
        if number < 0:
            raise Refused(f"{name.replace('_', ' ').capitalize()} cannot be negative.")
        out[name] = None if name == "steps" and number == 0 else number
    return out


async def _image(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    await ask(d, text, "You asked for an image with /image.")


COMMANDS = (
    Command(
        "image", "image", "Make an image from a description (quoted first)", _image, images=True
    ),
)
