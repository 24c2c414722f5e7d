"""Clinic settings, branding: the colour's contrast check and the logo's checks and re-encoding."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from audit.models import AuditEvent
from billing.services.branding import (
    LOGO_MAX_BYTES,
    BrandingError,
    brand_colour_check,
    contrast_with_white,
    logo_clean,
)
from portal.models import Tenant
from security.models import Role
from tests.conftest import Clinic
from tests.portal.settings_support import jpeg_bytes, png_bytes

ADMIN = Role.CLINIC_ADMIN.value


@pytest.fixture(autouse=True)
def _media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


# --- Colour (no database) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("colour", "ratio"),
    [("#ffffff", 1.0), ("#000000", 21.0), ("#767676", 4.54), ("#1f6feb", 4.63), ("#777777", 4.47)],
)
def test_contrast_with_white_matches_wcag(colour: str, ratio: float):
    assert contrast_with_white(colour) == pytest.approx(ratio, abs=0.01)


def test_a_colour_that_fails_contrast_is_refused_with_its_ratio():
    with pytest.raises(BrandingError) as refused:
        brand_colour_check("#ffcc00")
    assert "1.51:1" in str(refused.value) and "4.5:1" in str(refused.value)
    assert brand_colour_check(" #0B5394 ") == "#0b5394"


@pytest.mark.parametrize("colour", ["0b5394", "#0b539", "#0b5394;}", "red", "#gggggg", ""])
def test_a_malformed_colour_is_refused(colour: str):
    with pytest.raises(BrandingError, match="six hex digits"):
        brand_colour_check(colour)


# --- Logo (no database) ---------------------------------------------------------------------


def test_png_metadata_and_trailing_bytes_are_dropped():
    polyglot = png_bytes(text="Patient Jane Roe") + b"<script>alert(1)</script>"
    clean = logo_clean(polyglot)
    assert clean.extension == "png" and (clean.width, clean.height) == (64, 32)
    assert b"Jane Roe" not in clean.content and b"<script>" not in clean.content
    assert Image.open(io.BytesIO(clean.content)).format == "PNG"


def test_jpeg_exif_is_dropped():
    original = jpeg_bytes(exif_artist="Dr Secret")
    assert b"Dr Secret" in original
    clean = logo_clean(original)
    assert clean.extension == "jpg" and b"Dr Secret" not in clean.content
    assert not Image.open(io.BytesIO(clean.content)).getexif()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>', "SVG"),
        (b"<svg onload='x'/>", "SVG"),
        (b"GIF89a" + b"\0" * 40, "not a PNG or JPEG"),
        (b"hello, this is text", "not a PNG or JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "could not be read"),
        (b"x" * (LOGO_MAX_BYTES + 1), "limit is 512 kB"),
    ],
)
def test_bad_logos_are_refused_naming_the_problem(data: bytes, message: str):
    with pytest.raises(BrandingError, match=message):
        logo_clean(data)


def test_logo_pixel_dimensions_are_bounded():
    with pytest.raises(BrandingError, match="3000×20 pixels"):
        logo_clean(png_bytes((3000, 20)))
    with pytest.raises(BrandingError, match="8×8 pixels"):
        logo_clean(png_bytes((8, 8)))


# --- Through the page -----------------------------------------------------------------------


def _tenant(clinic: Clinic) -> Tenant:
    return Tenant.objects.get(pk=clinic.tenant.pk)


def _post(clinic: Clinic, **data: object):
    return clinic.client_as(ADMIN).post(reverse("clinic_settings:branding"), {"brand_colour": "#1f6feb", **data})


@pytest.mark.django_db
def test_colour_and_logo_are_saved_served_and_audited(clinic_a: Clinic):
    upload = SimpleUploadedFile("logo.png", png_bytes(text="metadata"), content_type="image/png")
    response = _post(clinic_a, brand_colour="#0B5394", logo=upload)
    assert response.status_code == 302
    tenant = _tenant(clinic_a)
    assert tenant.brand_colour == "#0b5394"
    name = str(tenant.logo.name)
    assert name.startswith(f"tenant-logos/{tenant.public_id}-") and name.endswith(".png")
    served: Any = clinic_a.client().get(reverse("branding:logo"))
    assert served["Content-Type"] == "image/png"
    assert b"metadata" not in b"".join(served.streaming_content)
    assert "#0b5394" in clinic_a.client().get(reverse("branding:css")).content.decode()
    # The branding files are cached for minutes: pages link them by version, so a change shows at once.
    landing = clinic_a.client().get("/").content.decode()
    assert f'{reverse("branding:css")}?v=0b5394"' in landing
    assert f'{reverse("branding:logo")}?v={name[-12:]}"' in landing
    (event,) = AuditEvent.objects.filter(tenant=clinic_a.tenant, action="settings.branding_changed")
    assert event.details["brand_colour_old"] == "#1f6feb" and event.details["brand_colour_new"] == "#0b5394"
    assert event.details["logo"] == "changed" and len(event.details["logo_sha256"]) == 16


@pytest.mark.django_db
def test_replacing_the_logo_deletes_the_old_file(clinic_a: Clinic, _media: Path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _post(clinic_a, logo=SimpleUploadedFile("a.png", png_bytes(), content_type="image/png"))
    first = str(_tenant(clinic_a).logo.name)
    with django_capture_on_commit_callbacks(execute=True):
        _post(clinic_a, logo=SimpleUploadedFile("b.jpg", jpeg_bytes(), content_type="image/jpeg"))
    assert not (_media / first).exists()
    assert (_media / str(_tenant(clinic_a).logo.name)).exists()
    with django_capture_on_commit_callbacks(execute=True):
        _post(clinic_a, remove_logo="on")
    assert not _tenant(clinic_a).logo
    assert AuditEvent.objects.filter(action="settings.branding_changed", details__logo="removed").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "name", "content_type", "message"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "logo.png", "image/png", "SVG logos are not accepted"),
        (b"%PDF-1.4 not an image", "logo.jpg", "image/jpeg", "not a PNG or JPEG image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (LOGO_MAX_BYTES + 10), "big.png", "image/png", "the limit is 512 kB"),
    ],
)
def test_a_bad_logo_is_refused_and_nothing_is_half_saved(
    clinic_a: Clinic, data: bytes, name: str, content_type: str, message: str
):
    # A good colour in the same form is not saved either.
    response = _post(clinic_a, brand_colour="#0b5394", logo=SimpleUploadedFile(name, data, content_type=content_type))
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page and 'id="id_logo_error"' in page
    tenant = _tenant(clinic_a)
    assert tenant.brand_colour == "#1f6feb" and not tenant.logo
    assert not AuditEvent.objects.filter(action="settings.branding_changed").exists()


@pytest.mark.django_db
def test_a_colour_failing_contrast_is_refused_with_the_ratio(clinic_a: Clinic):
    response = _post(clinic_a, brand_colour="#ffcc00", logo=SimpleUploadedFile("a.png", png_bytes()))
    assert response.status_code == 400
    assert "White text on #ffcc00 has a contrast ratio of 1.51:1" in response.content.decode()
    assert 'id="id_brand_colour_error"' in response.content.decode()
    tenant = _tenant(clinic_a)
    assert tenant.brand_colour == "#1f6feb" and not tenant.logo
