"""The model catalogue: what models exist, who serves them, what they can do and what they cost.

Loaded from `models.toml`. A provider whose base URL or API key is not configured is disabled, and its
models are hidden from users rather than failing when picked. A provider found unusable at run time
(the local model failing its start-up check) is marked down the same way, with the reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from agents.errors import CatalogError, ModelNotAvailable

CAPABILITIES: frozenset[str] = frozenset({"chat", "vision", "image", "embedding"})
AUTO = "auto"


@dataclass(frozen=True)
class Provider:
    id: str
    kind: Literal["local", "openai"]
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    disabled_reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None


ImageApi = Literal["images", "openai", "chat"]
IMAGE_APIS: tuple[str, ...] = ("images", "openai", "chat")


@dataclass(frozen=True)
class ImageSpec:
    """What an image model accepts and what one image costs (`[models.image]` in models.toml).

    `usd` is the provider's price of one image at the reference size and step count; an image of
    another size or step count costs `usd x (its megapixels / the reference's) x (its steps /
    reference_steps)` (models without a steps parameter: x 1). Sizes are free within `side`, each
    side a multiple of `side_multiple`, unless `sizes` lists the only ones allowed.
    """

    api: ImageApi  # images: POST /images/generations with width, height, steps, seed (Nebius)
    #               openai: the same endpoint with size and n; chat: /chat/completions modalities
    usd: Decimal
    reference: tuple[int, int]
    default_size: tuple[int, int]
    reference_steps: int | None = None  # None: the model takes no step count
    steps: tuple[int, int] | None = None  # the step counts allowed, inclusive
    default_steps: int | None = None
    side: tuple[int, int] = (64, 2048)
    side_multiple: int = 64
    sizes: tuple[tuple[int, int], ...] = ()  # when set, the only sizes allowed
    most_images: int = 4  # the most images one request may ask for
    prompt_chars: int = 2000
    seconds_per_step: Decimal = Decimal("0.5")  # the first estimate of progress, then measured
    seconds_per_image: Decimal = Decimal("5")  # likewise, for models without steps
    extension: Literal["png", "jpg", "webp"] = "png"
    partials: int = 0  # openai: partial images the provider streams while it works (0-3)
    ask_b64: bool = True  # openai: ask for response_format=b64_json (gpt-image models refuse it)


@dataclass(frozen=True)
class Model:
    id: str
    label: str
    name: str
    provider: Provider
    capabilities: frozenset[str]
    context_length: int
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    image: ImageSpec | None = None  # what an image model accepts, and its price

    @property
    def enabled(self) -> bool:
        return self.provider.enabled

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class WorkPrice:
    """The price of a kind of work that is not priced by its model's tokens (a summary, a tool
    call): per million tokens read and written, and per call, in US dollars; absent is zero."""

    kind: str
    label: str
    input_usd_per_mtok: Decimal = Decimal(0)
    output_usd_per_mtok: Decimal = Decimal(0)
    call_usd: Decimal = Decimal(0)


@dataclass
class Catalog:
    models: dict[str, Model]
    providers: dict[str, Provider]
    default_id: str
    down: dict[str, str] = field(default_factory=dict)  # provider id -> why, found at run time
    work: dict[str, WorkPrice] = field(default_factory=dict)  # kind -> its price ([work.<kind>])

    def price_of(self, kind: str) -> WorkPrice:
        """The price of `kind` of work; `ModelNotAvailable` when the catalogue has none (the work
        is not offered)."""
        if kind not in self.work:
            raise ModelNotAvailable(f"This service does not price {kind!r} work in its catalogue.")
        return self.work[kind]

    def mark_down(self, provider_id: str, reason: str) -> None:
        """Disable a provider found unusable at run time. If it served the default model, the
        cheapest enabled chat model becomes the default (when there is one)."""
        self.down[provider_id] = reason
        provider = replace(self.providers[provider_id], disabled_reason=reason)
        self.providers[provider_id] = provider
        for mid, model in list(self.models.items()):
            if model.provider.id == provider_id:
                self.models[mid] = replace(model, provider=provider)
        if not self.models[self.default_id].enabled and self.enabled("chat"):
            self.default_id = self.choose(AUTO).id

    def enabled(self, capability: str = "chat") -> list[Model]:
        """Models a user may pick for `capability`, in catalogue order."""
        return [m for m in self.models.values() if m.enabled and m.can(capability)]

    def get(self, model_id: str) -> Model:
        """An enabled model by id; `ModelNotAvailable` if unknown or hidden."""
        model = self.models.get(model_id)
        if model is None:
            raise ModelNotAvailable(f"There is no model called {model_id!r}.")
        if not model.enabled:
            raise ModelNotAvailable(
                f"{model.label} is not available: {model.provider.disabled_reason}."
            )
        return model

    def choose(self, model_id: str | None, capability: str = "chat") -> Model:
        """The model to use: the one asked for, the default, or for "auto" the cheapest able one."""
        if model_id == AUTO:
            able = self.enabled(capability)
            if not able:
                raise ModelNotAvailable(f"No enabled model can do {capability!r}.")
            return min(able, key=lambda m: m.input_usd_per_mtok + m.output_usd_per_mtok)
        model = self.get(model_id or self.default_id)
        if not model.can(capability):
            raise ModelNotAvailable(f"{model.label} cannot do {capability!r}.")
        return model


def load_catalog(path: Path, lookup: Callable[[str], str | None], default_id: str) -> Catalog:
    """Read `path`; `lookup` resolves the environment variable names it mentions."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"Cannot read the model catalogue {path}: {exc}") from exc
    providers = {
        pid: _provider(pid, spec, lookup) for pid, spec in raw.get("providers", {}).items()
    }
    models: dict[str, Model] = {}
    for spec in raw.get("models", []):
        model = _model(spec, providers)
        if model.id in models:
            raise CatalogError(f"Model id {model.id!r} appears twice in {path}.")
        models[model.id] = model
    if default_id not in models:
        raise CatalogError(f"DEFAULT_MODEL {default_id!r} is not in {path}.")
    work = {kind: _work(kind, spec) for kind, spec in raw.get("work", {}).items()}
    return Catalog(models=models, providers=providers, default_id=default_id, work=work)


def _provider(pid: str, spec: dict[str, Any], lookup: Callable[[str], str | None]) -> Provider:
    kind = spec.get("kind")
    if kind == "local":
        return Provider(id=pid, kind="local")
    if kind != "openai":
        raise CatalogError(f"Provider {pid!r}: kind must be 'local' or 'openai', not {kind!r}.")
    base_url = spec.get("base_url")
    if base_url is None and (env := spec.get("base_url_env")):
        base_url = lookup(env)
    key_env = spec.get("api_key_env")
    api_key = lookup(key_env) if key_env else None
    reason = None
    if not base_url:
        reason = f"set {spec.get('base_url_env', 'base_url')} to enable provider {pid}"
    elif not api_key and not spec.get("api_key_optional", False):
        reason = f"set {key_env} to enable provider {pid}"
    return Provider(
        id=pid, kind="openai", base_url=base_url, api_key=api_key, disabled_reason=reason
    )


def _model(spec: dict[str, Any], providers: dict[str, Provider]) -> Model:
    mid = spec.get("id")
    if not isinstance(mid, str) or not mid:
        raise CatalogError(f"A model has no id: {spec!r}")
    provider = providers.get(spec.get("provider", ""))
    if provider is None:
        raise CatalogError(f"Model {mid!r} names an unknown provider {spec.get('provider')!r}.")
    capabilities = frozenset(spec.get("capabilities", []))
    if not capabilities or not capabilities <= CAPABILITIES:
        raise CatalogError(f"Model {mid!r}: capabilities must be some of {sorted(CAPABILITIES)}.")
    context_length = spec.get("context_length")
    if not isinstance(context_length, int) or context_length <= 0:
        raise CatalogError(f"Model {mid!r}: context_length must be a positive integer.")
    return Model(
        id=mid,
        label=spec.get("label", mid),
        name=spec.get("name", mid),
        provider=provider,
        capabilities=capabilities,
        context_length=context_length,
        input_usd_per_mtok=_price(f"Model {mid!r}", spec, "input_usd_per_mtok"),
        output_usd_per_mtok=_price(f"Model {mid!r}", spec, "output_usd_per_mtok"),
        image=_image(mid, spec["image"]) if "image" in capabilities else None,
    )


def _image(mid: str, spec: object) -> ImageSpec:
    """The `[models.image]` table of an image model."""
    owner = f"Model {mid!r} image"
    if not isinstance(spec, dict):
        raise CatalogError(f"{owner}: an image model needs a [models.image] table.")
    known = {f.name for f in fields(ImageSpec)}
    if unknown := set(spec) - known:
        raise CatalogError(f"{owner}: unknown keys {sorted(unknown)}.")
    api = spec.get("api")
    if api not in IMAGE_APIS:
        raise CatalogError(f"{owner}: api must be one of {list(IMAGE_APIS)}, not {api!r}.")
    try:
        sizes = tuple(_size(s) for s in spec.get("sizes", ()))
        reference = _size(spec["reference"])
        steps = _pair(spec["steps"]) if "steps" in spec else None
        image = ImageSpec(
            api=api,
            usd=_price(owner, spec, "usd"),
            reference=reference,
            default_size=_size(spec.get("default_size", spec["reference"])),
            reference_steps=spec.get("reference_steps"),
            steps=steps,
            default_steps=spec.get("default_steps", spec.get("reference_steps")),
            side=_pair(spec.get("side", (64, 2048))),
            side_multiple=int(spec.get("side_multiple", 64)),
            sizes=sizes,
            most_images=int(spec.get("most_images", 4)),
            prompt_chars=int(spec.get("prompt_chars", 2000)),
            seconds_per_step=Decimal(str(spec.get("seconds_per_step", "0.5"))),
            seconds_per_image=Decimal(str(spec.get("seconds_per_image", "5"))),
            extension=spec.get("extension", "png"),
            partials=int(spec.get("partials", 0)),
            ask_b64=bool(spec.get("ask_b64", True)),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise CatalogError(f"{owner}: {exc!r} is missing or malformed.") from exc
    if (image.steps is None) != (image.reference_steps is None):
        raise CatalogError(f"{owner}: give both steps and reference_steps, or neither.")
    if image.steps and not image.steps[0] <= (image.default_steps or 0) <= image.steps[1]:
        raise CatalogError(f"{owner}: default_steps must be within steps.")
    if image.extension not in ("png", "jpg", "webp") or image.most_images < 1:
        raise CatalogError(f"{owner}: extension must be png, jpg or webp; most_images >= 1.")
    if not 0 <= image.partials <= 3 or (image.partials and image.api != "openai"):
        raise CatalogError(f"{owner}: partials (0-3) are for the openai api only.")
    return image


def _size(text: object) -> tuple[int, int]:
    """`"1024x768"` as (1024, 768)."""
    width, _, height = str(text).partition("x")
    size = int(width), int(height)
    if min(size) <= 0:
        raise ValueError(f"size {text!r}")
    return size


def _pair(value: object) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"range {value!r}")
    low, high = int(value[0]), int(value[1])
    if not 0 < low <= high:
        raise ValueError(f"range {value!r}")
    return low, high


def _work(kind: str, spec: dict[str, Any]) -> WorkPrice:
    rates = ("input_usd_per_mtok", "output_usd_per_mtok", "call_usd")
    unknown = set(spec) - {"label", *rates}
    if unknown:
        raise CatalogError(f"Work {kind!r}: unknown keys {sorted(unknown)}; prices are {rates}.")
    prices = {key: _price(f"Work {kind!r}", spec, key) for key in rates if key in spec}
    if not prices:
        raise CatalogError(f"Work {kind!r} names no price: give one of {rates}.")
    return WorkPrice(kind, str(spec.get("label", kind)), **prices)


def _price(owner: str, spec: dict[str, Any], key: str) -> Decimal:
    """`spec[key]` as a price; `owner` names what has it in errors ("Model 'x'")."""
    raw = spec.get(key)
    if isinstance(raw, float) or raw is None:
        raise CatalogError(f'{owner}: {key} must be a quoted decimal string, like "0.20".')
    try:
        price = Decimal(str(raw))
    except InvalidOperation as exc:
        raise CatalogError(f"{owner}: {key} is not a number: {raw!r}.") from exc
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{owner}: {key} must be zero or more.")
    return price
