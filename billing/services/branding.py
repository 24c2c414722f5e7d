"""A clinic's branding: the brand colour and the logo its patient pages show.

Checks that need no database are plain functions (tested alone); the one
write is branding_set. Rules:

- The colour is the background of white button text on patient pages, so it
  must reach WCAG 2.x contrast 4.5:1 against white (success criterion 1.4.3);
  a failing colour is refused with the computed ratio.
- A logo is a PNG or JPEG, recognised by its content (never by its name or
  the browser's content type), at most LOGO_MAX_BYTES and LOGO_MAX_SIDE
  pixels a side. It is decoded and re-encoded with Pillow: what is stored is
  pixels only (no metadata, no trailing bytes), which also defeats polyglot
  files. SVG is refused: it can carry script.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.http import HttpRequest
from PIL import Image, ImageOps

from audit.recorder import audit_record
from portal.models import Tenant

# WCAG 2.x AA for normal text.
MIN_CONTRAST = 4.5
LOGO_MAX_BYTES = 512 * 1024
LOGO_MAX_SIDE = 2000
LOGO_MIN_SIDE = 16
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


class BrandingError(ValueError):
    """A colour or logo the rules refuse; `field` names the form field, the message is for the admin."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# --- Colour --------------------------------------------------------------------------------


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else float(((c + 0.055) / 1.055) ** 2.4)


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of "#rrggbb"."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_with_white(colour: str) -> float:
    """The contrast ratio of white text on `colour` (1 to 21)."""
    return 1.05 / (relative_luminance(colour) + 0.05)


def brand_colour_check(value: str) -> str:
    """The colour, lower-cased, if it is #rrggbb and white text on it is readable; else BrandingError."""
    colour = value.strip().lower()
    if len(colour) != 7 or colour[0] != "#" or any(c not in "0123456789abcdef" for c in colour[1:]):
        raise BrandingError("Enter a colour as # and six hex digits, such as #1f6feb.", field="brand_colour")
    ratio = contrast_with_white(colour)
    # Compare the rounded-down ratio: a colour shown as "4.50:1" must not be refused.
    if int(ratio * 100) / 100 < MIN_CONTRAST:
        raise BrandingError(
            f"White text on {colour} has a contrast ratio of {int(ratio * 100) / 100:.2f}:1; "
            f"at least {MIN_CONTRAST}:1 is needed (WCAG 2.x). Choose a darker colour.",
            field="brand_colour",
        )
    return colour


# --- Logo ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanLogo:
    """A logo re-encoded from its pixels: what is stored and served."""

    content: bytes
    extension: str  # "png" or "jpg"
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _sniff(head: bytes) -> str | None:
    if head.startswith(_PNG):
        return "PNG"
    if head.startswith(_JPEG):
        return "JPEG"
    return None


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in text[:1024]


def logo_clean(data: bytes) -> CleanLogo:
    """Check an uploaded logo and re-encode it; raises BrandingError naming the problem."""
    if len(data) > LOGO_MAX_BYTES:
        raise BrandingError(
            f"The logo is {len(data) // 1024} kB; the limit is {LOGO_MAX_BYTES // 1024} kB.", field="logo"
        )
    kind = _sniff(data[:16])
    if kind is None:
        if _looks_like_svg(data[:2048]):
            raise BrandingError(
                "SVG logos are not accepted (they can carry scripts). Upload a PNG or JPEG.", field="logo"
            )
        raise BrandingError("This file is not a PNG or JPEG image.", field="logo")
    try:
        with warnings.catch_warnings():
            # A decompression bomb is refused, not just warned about.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Any = Image.open(io.BytesIO(data), formats=[kind])
            width, height = image.size
            if max(width, height) > LOGO_MAX_SIDE or min(width, height) < LOGO_MIN_SIDE:
                raise BrandingError(
                    f"The logo is {width}×{height} pixels; each side must be {LOGO_MIN_SIDE} to {LOGO_MAX_SIDE}.",
                    field="logo",
                )
            image.load()
            image = ImageOps.exif_transpose(image)
    except BrandingError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BrandingError("This file could not be read as an image; it may be damaged.", field="logo") from None
    out = io.BytesIO()
    if kind == "PNG":
        mode = "RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB"
        image.convert(mode).save(out, format="PNG", optimize=True)
        extension = "png"
    else:
        image.convert("RGB").save(out, format="JPEG", quality=90)
        extension = "jpg"
    return CleanLogo(content=out.getvalue(), extension=extension, width=image.width, height=image.height)


# --- Change --------------------------------------------------------------------------------


def branding_set(
    *,
    tenant: Tenant,
    actor: Any,
    actor_role: str,
    request: HttpRequest | None,
    brand_colour: str,
    logo: bytes | None = None,
    remove_logo: bool = False,
) -> list[str]:
    """Check and save the brand colour and, when given, a new logo (or remove it).

    Returns the names of what changed (empty: nothing did, no event). Raises
    BrandingError before anything is saved. Audit: settings.branding_changed
    (colour old -> new; the logo's size and hash, never its pixels).
    """
    colour = brand_colour_check(brand_colour)
    clean = logo_clean(logo) if logo is not None else None
    details: dict[str, Any] = {}
    old_file = None
    with transaction.atomic(durable=True):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        fields: list[str] = []
        if locked.brand_colour.lower() != colour:
            details.update(brand_colour_old=locked.brand_colour, brand_colour_new=colour)
            locked.brand_colour = colour
            fields.append("brand_colour")
        if clean is not None:
            old_file = locked.logo.name or None
            name = f"{tenant.public_id}-{uuid.uuid4().hex[:12]}.{clean.extension}"
            locked.logo.save(name, ContentFile(clean.content), save=False)
            details.update(
                logo="changed", logo_sha256=clean.sha256[:16], logo_width=clean.width, logo_height=clean.height
            )
            fields.append("logo")
        elif remove_logo and locked.logo:
            old_file = locked.logo.name
            locked.logo = ""
            details.update(logo="removed")
            fields.append("logo")
        if not fields:
            return []
        locked.save(update_fields=fields)
        audit_record(
            action="settings.branding_changed",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="tenant",
            target_id=str(tenant.public_id),
            request=request,
            details={"changed": fields, **details},
        )
        if old_file:
            storage = locked.logo.storage
            transaction.on_commit(lambda: storage.delete(old_file))
    tenant.refresh_from_db(fields=["brand_colour", "logo"])
    return fields
