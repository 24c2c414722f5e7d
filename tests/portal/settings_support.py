"""Helpers for the clinic settings tests: a scripted account-level processor and images."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, PngImagePlugin

from billing.processor import (
    AccountCheck,
    EndpointApiUnavailable,
    EndpointSnapshot,
    ProcessorKeyRefused,
    ProcessorUnavailable,
)


@dataclass
class FakeAdmin:
    """What the processor answers about a key. `refuse`: "", "authentication", "permission", "unavailable"."""

    livemode: bool = False
    refuse: str = ""
    endpoints_api: bool = True
    keys_seen: list[str] = field(default_factory=list)
    endpoints: list[dict[str, object]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __call__(self, secret_key: str) -> FakeAdmin:
        self.keys_seen.append(secret_key)
        return self

    def check_account(self) -> AccountCheck:
        if self.refuse == "unavailable":
            raise ProcessorUnavailable("down")
        if self.refuse:
            raise ProcessorKeyRefused(self.refuse)
        return AccountCheck(livemode=self.livemode)

    def create_webhook_endpoint(self, *, url: str, events: Sequence[str], description: str) -> EndpointSnapshot:
        if not self.endpoints_api:
            raise EndpointApiUnavailable("not implemented")
        self.endpoints.append({"url": url, "events": list(events)})
        return EndpointSnapshot(id=f"we_fake{len(self.endpoints):04d}", url=url, secret="whsec_fromapi_0123456789abcd")

    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        self.deleted.append(endpoint_id)


def png_bytes(size: tuple[int, int] = (64, 32), *, text: str = "", mode: str = "RGB") -> bytes:
    image = Image.new(mode, size, (20, 60, 120) if mode == "RGB" else (20, 60, 120, 255))
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 32), *, exif_artist: str = "") -> bytes:
    image = Image.new("RGB", size, (20, 60, 120))
    out = io.BytesIO()
    exif = Image.Exif()
    if exif_artist:
        exif[0x013B] = exif_artist  # Artist
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()
