"""Images a person sends to a model that can see: checked, normalised, priced before they go.

`prepare` trusts nothing of the upload: not its name, not the MIME type the browser gave. Pillow
reads the header first (a declared size over the limit is refused before a pixel is decoded: the
decompression bomb's defence), checks the whole file (`verify`), then decodes it (a JPEG straight at
a reduced scale, `draft`), turns it upright (EXIF), flattens it to RGB and scales it down to what a
tiled vision model reads at high detail (within 2048 x 2048, the short side at most 768), and sends
it as a JPEG data URI. What the model will count is estimated from that size: the larger of
OpenAI's tiles (85 + 170 per 512-pixel tile) and a 28-pixel patch count (Qwen-VL's), so that the
hold covers either; the charge is the usage the provider reports.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from agents.errors import AgentError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
LONGEST = 2048
SHORTEST = 768
JPEG_QUALITY = 85


class NotAnImage(AgentError):
    """An upload that is not an image a model can be shown (or is too large)."""


@dataclass(frozen=True)
class Seen:
    """An image ready for a vision model."""

    data_uri: str
    width: int
    height: int
    source: str  # what it was: "JPEG 4000x3000"

    @property
    def tokens(self) -> int:
        return image_tokens(self.width, self.height)

    def part(self) -> dict[str, object]:
        """The OpenAI-compatible content part."""
        return {"type": "image_url", "image_url": {"url": self.data_uri, "detail": "high"}}


def image_tokens(width: int, height: int) -> int:
    """The most a vision model counts for an image of `width` x `height` (after `fitted`)."""
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    patches = math.ceil(width / 28) * math.ceil(height / 28)
    return 85 + max(170 * tiles, patches)


def fitted(width: int, height: int) -> tuple[int, int]:
    """The size an image of `width` x `height` is sent at."""
    scale = min(1.0, LONGEST / max(width, height))
    short = min(width, height) * scale
    if short > SHORTEST:
        scale *= SHORTEST / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare(data: bytes, name: str, most_bytes: int, most_pixels: int) -> Seen:
    """`data` (an upload called `name`) as a vision model is sent it; `NotAnImage` saying why not."""
    if len(data) > most_bytes:
        raise NotAnImage(
            f"{name} is {len(data) / 2**20:.1f} MB; images up to {most_bytes / 2**20:.0f} MB "
            "can be sent."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                kind, (width, height) = probe.format, probe.size
                if kind not in FORMATS:
                    raise NotAnImage(f"{name} is a {kind} image; send a PNG, JPEG, WebP or GIF.")
                if width * height > most_pixels:
                    raise NotAnImage(
                        f"{name} is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                        f"images up to {most_pixels / 1e6:.0f} megapixels can be sent."
                    )
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                target = fitted(width, height)
                # JPEG: decoded at 1/2, 1/4 or 1/8 scale, down to 10% under the size sent (a
                # 4000x3000 photo is read at 1000x750, not 2000x1500: four times less to decode).
                image.draft("RGB", (math.ceil(target[0] * 0.9), math.ceil(target[1] * 0.9)))
                image.load()
                upright = ImageOps.exif_transpose(image)
                flat = _flattened(upright)
                target = fitted(*flat.size)
                if flat.size != target:
                    flat = flat.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
                out = io.BytesIO()
                flat.save(out, "JPEG", quality=JPEG_QUALITY)
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage(
            f"{name} has far more pixels than an image can be sent with (at most "
            f"{most_pixels / 1e6:.0f} megapixels)."
        ) from exc
    except (OSError, ValueError, SyntaxError, Warning) as exc:
        raise NotAnImage(f"{name} is not an image we can read (PNG, JPEG, WebP or GIF).") from exc
    uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
    return Seen(uri, *flat.size, f"{kind} {width}x{height}")


def _flattened(image: Image.Image) -> Image.Image:
    """RGB, transparency laid on white."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB") if image.mode != "RGB" else image
