"""The standard test world and the harness around it.

World (STYLE.md): two clinics, `clinic_a` ("alpha") and `clinic_b` ("beta"),
each with processor keys, one staff persona per role, a patient and an issued
statement; plus `outsider`, a user with no membership anywhere. Tests that need
fewer rows use the factories in tests/factories.py directly.

Harness:
- markers `postgres`, `redis`, `e2e` skip a test whose service is missing;
  under CI=true every skip fails the run instead (CI skips nothing).
- `localstripe`: a session-wide localstripe on a free loopback port; the
  fixture points settings at it and wipes its data before each test.
- `chromium_browser` / `browser_page`: Playwright driving /usr/bin/chromium;
  screenshots go to test-artifacts/ (gitignored).
- every test gets its own cache key prefix, so rate-limit counters never leak
  between tests or between runs sharing one Redis.
- each run uses its own PostgreSQL test database, test_settle_<run id>.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from hypothesis import settings as hypothesis_settings

from tests.services import ARTIFACTS_DIR, CHROMIUM_PATH, chromium_problem, ci_mode, redis_problem

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
    from pytest_django.fixtures import Settings as SettingsWrapper

    from billing.models import Patient, ProcessorAccount, Statement
    from portal.models import Tenant
    from security.models import User

CI = ci_mode()
BASE_DOMAIN_FOR_TESTS = "localhost"

# Hypothesis: no example database on disk (no .hypothesis/ in the checkout),
# no per-example deadline (a cold Django start would trip it).
hypothesis_settings.register_profile("settle", database=None, deadline=None, print_blob=True)
hypothesis_settings.load_profile("settle")


# --------------------------------------------------------------------------------------
# Session set-up: test database name, eager Celery, artifacts folder
# --------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # One id per run, shared by xdist workers (they inherit the environment).
    run_id = os.environ.setdefault("SETTLE_TEST_RUN_ID", str(os.getpid()))
    ARTIFACTS_DIR.mkdir(exist_ok=True)

    from django.conf import settings

    # Runs in one checkout must not share (and drop) each other's database.
    for db in settings.DATABASES.values():
        if db["ENGINE"] == "django.db.backends.postgresql" and not db.get("TEST", {}).get("NAME"):
            db.setdefault("TEST", {})["NAME"] = f"test_settle_{run_id}"

    # Tasks run in-process in tests even when pytest is started without
    # tests/runner.py; the worker test configures its own, non-eager client.
    from portal.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


def _database_problem() -> str | None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "needs PostgreSQL (DATABASE_URL=postgres://...); this run uses SQLite"
    return None


def _redis_problem() -> str | None:
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return "needs Redis (REDIS_URL=redis://...); this run has none"
    problem = redis_problem(url)
    return f"needs Redis; {url} does not answer: {problem}" if problem else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs = {
        "postgres": _database_problem,
        "redis": _redis_problem,
        "e2e": lambda: f"needs Chromium: {problem}" if (problem := chromium_problem()) else None,
    }
    problems: dict[str, str | None] = {}
    for item in items:
        for marker, probe in needs.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in problems:
                problems[marker] = probe()
            reason = problems[marker]
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if call.when == "call" and report.failed:
        item.stash[_FAILED_KEY] = True
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        # DESIGN.md: CI runs with every service and skips nothing.
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: this test may not be skipped; it would have been skipped because: {reason}"


_FAILED_KEY = pytest.StashKey[bool]()


# --------------------------------------------------------------------------------------
# Per-test isolation
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_cache(settings: SettingsWrapper) -> None:
    """A fresh cache namespace per test (rate limits, throttles).

    A prefix instead of cache.clear(): on Redis, clear() is FLUSHDB and would
    wipe the counters of other runs sharing the server.
    """
    caches = copy.deepcopy(settings.CACHES)
    prefix = f"t{os.environ.get('SETTLE_TEST_RUN_ID', '')}-{uuid.uuid4().hex[:12]}"
    for conf in caches.values():
        conf["KEY_PREFIX"] = prefix
    settings.CACHES = caches


@pytest.fixture(autouse=True)
def _isolated_audit_anchors(settings: SettingsWrapper, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fresh audit anchor folder per test (created on first use).

    Each test's database starts empty, so a platform chain re-numbers from 1;
    anchors left by an earlier test would contradict it.
    """
    settings.SETTLE_AUDIT_ANCHOR_DIR = str(tmp_path_factory.getbasetemp() / "anchors" / uuid.uuid4().hex)


# --------------------------------------------------------------------------------------
# The standard world: two clinics, personas per role, an outsider
# --------------------------------------------------------------------------------------


@dataclass
class Clinic:
    """One tenant with everything a test usually needs."""

    tenant: Tenant
    processor_account: ProcessorAccount
    staff: dict[str, User]
    patient: Patient
    statement: Statement
    webhook_secret: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def host(self) -> str:
        return f"{self.tenant.slug}.{BASE_DOMAIN_FOR_TESTS}"

    def user(self, role: str) -> User:
        return self.staff[role]

    def client(self, user: User | None = None, **extra: Any) -> Client:
        """A test client on this clinic's host, logged in as `user` if given."""
        return tenant_client(self.tenant, user=user, **extra)

    def client_as(self, role: str) -> Client:
        return self.client(self.staff[role])


def tenant_host(tenant: Tenant) -> str:
    return tenant.custom_domain or f"{tenant.slug}.{BASE_DOMAIN_FOR_TESTS}"


def tenant_client(tenant: Tenant, *, user: User | None = None, **extra: Any) -> Client:
    """A Django test client whose requests carry the tenant's host."""
    client = Client(HTTP_HOST=tenant_host(tenant), **extra)
    if user is not None:
        login_verified(client, user)
    return client


def login_verified(client: Client, user: User) -> None:
    """Sign `user` in on `client` with both factors, as after password + code.

    Gives the user a confirmed authenticator (tests.factories.totp_device)
    and marks the session verified the way django_otp.login does. For a
    password-only session use client.force_login(user) alone.
    """
    from django_otp import DEVICE_ID_SESSION_KEY

    from tests.factories import totp_device

    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = totp_device(user).persistent_id
    session.save()


def password_step(client: Client, email: str, *, password: str | None = None, next_url: str = "") -> Any:
    """Post the first step of signing in (email + password); returns its response."""
    from django.urls import reverse

    from tests.factories import PERSONA_PASSWORD

    data = {"username": email, "password": password or PERSONA_PASSWORD}
    if next_url:
        data["next"] = next_url
    return client.post(reverse("staff:login"), data)


def sign_in(client: Client, user: User, *, password: str | None = None) -> Any:
    """Sign in through the real pages: password step, then a code from the user's app.

    The user gets a confirmed authenticator first (tests.factories.totp_device).
    django-otp refuses a code from a time step already used; tests sign in
    several times within seconds, so the device's last used step is cleared
    first, as if each sign-in happened in its own 30-second step.
    Returns the response of the code step (a redirect when it succeeded).
    """
    from django.urls import reverse

    from tests.factories import totp_code, totp_device

    device = totp_device(user)
    type(device).objects.filter(pk=device.pk).update(last_t=-1)
    response = password_step(client, user.email, password=password)
    assert response.status_code == 302, f"password step refused: {response.status_code}"
    device.refresh_from_db()
    return client.post(reverse("staff:mfa"), {"otp_token": totp_code(device)})


def platform_client(*, user: User | None = None, **extra: Any) -> Client:
    """A Django test client on the platform host."""
    from django.conf import settings

    client = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST, **extra)
    if user is not None:
        login_verified(client, user)
    return client


def build_clinic(slug: str, name: str) -> Clinic:
    from security.models import Role
    from tests.factories import (
        MembershipFactory,
        PatientFactory,
        ProcessorAccountFactory,
        StatementFactory,
        TenantFactory,
        UserFactory,
    )

    tenant = TenantFactory.create(slug=slug, name=name)
    account = ProcessorAccountFactory.create(
        tenant=tenant,
        publishable_key=f"pk_test_{slug}",
        secret_key=f"sk_test_{slug}",
        webhook_secret=f"whsec_{slug}",
    )
    staff: dict[str, User] = {}
    for role in Role:
        user = UserFactory.create(email=f"{role.value}@{slug}.example", full_name=f"{role.label} at {name}")
        MembershipFactory.create(tenant=tenant, user=user, role=role)
        staff[role.value] = user
    patient = PatientFactory.create(tenant=tenant, account_number=f"{slug.upper()}-0001")
    statement = StatementFactory.create(tenant=tenant, patient=patient, number=f"{slug.upper()}-1001")
    return Clinic(
        tenant=tenant,
        processor_account=account,
        staff=staff,
        patient=patient,
        statement=statement,
        webhook_secret=f"whsec_{slug}",
    )


@pytest.fixture
def clinic_a(db: None) -> Clinic:
    """Alpha Clinic at alpha.localhost: the clinic a test acts in."""
    return build_clinic("alpha", "Alpha Clinic")


@pytest.fixture
def clinic_b(db: None) -> Clinic:
    """Beta Clinic at beta.localhost: the other clinic, which must see nothing of alpha's."""
    return build_clinic("beta", "Beta Clinic")


@pytest.fixture
def tenant_a(clinic_a: Clinic) -> Tenant:
    return clinic_a.tenant


@pytest.fixture
def tenant_b(clinic_b: Clinic) -> Tenant:
    return clinic_b.tenant


@pytest.fixture
def outsider(db: None) -> User:
    """A signed-up user with no membership at any clinic."""
    from tests.factories import UserFactory

    return UserFactory.create(email="outsider@example.com", full_name="Outsider")


@pytest.fixture
def client_for() -> Callable[..., Client]:
    """client_for(tenant_or_clinic, user=None) -> Client on that clinic's host."""

    def make(target: Tenant | Clinic, user: User | None = None, **extra: Any) -> Client:
        tenant = target.tenant if isinstance(target, Clinic) else target
        return tenant_client(tenant, user=user, **extra)

    return make


# --------------------------------------------------------------------------------------
# localstripe: the Stripe stand-in, on loopback, started once per session
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStripe:
    base_url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def js_url(self) -> str:
        return f"{self.base_url}/js.stripe.com/v3/"

    def request(self, method: str, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as response:
            return bytes(response.read())

    def reset(self) -> None:
        """Forget every object and every registered webhook, so events of an
        earlier test's intents are never delivered to a later test."""
        self.request("DELETE", "/_config/data")
        self.request("DELETE", "/_config/webhooks")


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[LocalStripe]:
    port = free_port()
    log_path = ARTIFACTS_DIR / f"localstripe-{os.getpid()}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.devtools.localstripe_server", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    server = LocalStripe(base_url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"localstripe exited with {process.returncode}; see {log_path}")
            try:
                server.request("GET", "/js.stripe.com/v3/")
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"localstripe did not answer on {server.base_url} within 30 s; see {log_path}")
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        if process.returncode in (0, -15):
            log_path.unlink(missing_ok=True)


def _replace_origin(policy: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    updated = copy.deepcopy(policy)
    for directive, sources in updated.get("DIRECTIVES", {}).items():
        updated["DIRECTIVES"][directive] = [new if source == old else source for source in sources]
    return updated


def _origin(url: str) -> str:
    match = re.match(r"^(https?://[^/]+)", url)
    return match.group(1) if match else url


@pytest.fixture
def localstripe(localstripe_server: LocalStripe, settings: SettingsWrapper) -> LocalStripe:
    """localstripe with no data, and the portal pointed at it for this test.

    Sets STRIPE_API_BASE and STRIPE_JS_URL, and swaps the localstripe origin
    into the content security policy so Stripe.js loads in the browser.
    """
    old_api, old_js = settings.STRIPE_API_BASE, settings.STRIPE_JS_URL
    policy = settings.CONTENT_SECURITY_POLICY
    if old_js:
        policy = _replace_origin(policy, _origin(old_js), localstripe_server.base_url)
    if old_api:
        policy = _replace_origin(policy, _origin(old_api), localstripe_server.base_url)
    settings.CONTENT_SECURITY_POLICY = policy
    settings.STRIPE_API_BASE = localstripe_server.base_url
    settings.STRIPE_JS_URL = localstripe_server.js_url
    localstripe_server.reset()
    return localstripe_server


# --------------------------------------------------------------------------------------
# Browser: Playwright driving Debian's Chromium
# --------------------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    """One headless Chromium for the session (tests marked e2e use it)."""
    problem = chromium_problem()
    if problem:
        pytest.skip(f"needs Chromium: {problem}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on the main thread, which
    # Django's async-safety guard mistakes for async code calling the ORM.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def artifact_path(name: str) -> Path:
    """A file in test-artifacts/ (kept by CI), named safely."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR / safe


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """screenshot(page, "receipt") saves test-artifacts/<test>-receipt.png."""

    def take(page: Page, label: str = "final") -> Path:
        path = artifact_path(f"{request.node.name}-{label}.png")
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def browser_page(chromium_browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context and page; on failure a screenshot is kept."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        if request.node.stash.get(_FAILED_KEY, False):
            # A failed screenshot must not hide the test's own failure.
            with contextlib.suppress(Exception):
                page.screenshot(path=str(artifact_path(f"{request.node.name}-failure.png")), full_page=True)
        context.close()


def live_url(live_server: Any, tenant: Tenant | None = None, path: str = "/") -> str:
    """URL of `path` on the live server, on the tenant's host (or the platform's).

    Chromium resolves *.localhost to loopback by itself, so tenant hosts work
    without touching /etc/hosts.
    """
    port = live_server.url.rsplit(":", 1)[1]
    host = tenant_host(tenant) if tenant is not None else BASE_DOMAIN_FOR_TESTS
    return f"http://{host}:{port}{path}"
