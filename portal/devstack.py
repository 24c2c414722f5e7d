"""The embedded default behind `make run`: the whole portal on one machine.

    python -m portal.devstack [--noreload]

In order: checks that 127.0.0.1:8000 and 127.0.0.1:8420 are free, migrates
the database (SQLite in var/ unless DATABASE_URL says otherwise), seeds the
demo clinics (billing.demo), starts localstripe on loopback with a fresh store
of its own under var/, registers each clinic's webhook with it, starts
`manage.py runserver 127.0.0.1:8000`, starts the in-process scheduler that
runs CELERY_BEAT_SCHEDULE's periodic tasks (there is no beat here; see
portal.devtools.scheduler) and prints a banner with the URLs, a demo
statement, test cards and logins. Ctrl-C (SIGINT) or SIGTERM stops every child
and exits 0; if a child dies on its own, the others are stopped and the exit
status is 1.

Children run in sessions of their own, so the terminal's Ctrl-C reaches only
this process, which then stops them in order (web server first, then
localstripe), each with its whole process group (runserver's autoreloader
runs the server in a second process). localstripe is started here, never by
runserver, so the autoreloader cannot start it twice.

Development only: SETTLE_ENV is forced to development for this process and
its children.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import socket

# Only our own development servers, with fixed argument lists (see start_child).
import subprocess  # nosec B404
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from portal.devtools.scheduler import DevScheduler, scheduler_from_settings

BASE_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WEB_PORT = 8000
STRIPE_PORT = 8420
STRIPE_BASE = f"http://{HOST}:{STRIPE_PORT}"
WEB_BASE = f"http://{HOST}:{WEB_PORT}"
STORE_NAME = "localstripe-devstack.pickle"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0

TEST_CARDS = (
    ("4242 4242 4242 4242", "succeeds"),
    ("4000 0000 0000 0341", "declined when charged"),
    ("4000 0000 0000 0002", "declined at setup (when the card is tokenized)"),
    ("4000 0025 0000 3155", "requires 3-D Secure authentication"),
)

# Settings that make the stack hang together; they override the caller's
# environment so a stray variable cannot point the demo at real services.
STACK_ENVIRONMENT = {
    "SETTLE_ENV": "development",
    "DJANGO_SETTINGS_MODULE": "portal.settings",
    "STRIPE_API_BASE": STRIPE_BASE,
    "STRIPE_JS_URL": f"{STRIPE_BASE}/js.stripe.com/v3/",
    "SETTLE_BASE_DOMAIN": "localhost",
    "SETTLE_PUBLIC_SCHEME": "http",
    "SETTLE_PUBLIC_PORT": str(WEB_PORT),
    "PYTHONUNBUFFERED": "1",
    # Sent mail (invitations, password reset links) lands in files the banner names.
    "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
}


class Stop(Exception):
    """SIGINT or SIGTERM arrived: stop everything and exit 0."""


class StartupFailed(Exception):
    """Something the stack needs did not come up; the message says what."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- Preconditions ---------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    """True when we could listen on HOST:port (as the servers will, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_ports() -> None:
    busy = [port for port in (WEB_PORT, STRIPE_PORT) if not port_is_free(port)]
    if busy:
        ports = " and ".join(f"{HOST}:{port}" for port in busy)
        raise StartupFailed(
            f"{ports} {'is' if len(busy) == 1 else 'are'} already in use. Is another `make run` still "
            f"running? Find the process with `lsof -iTCP:{busy[0]} -sTCP:LISTEN` (or `ss -ltnp`), stop it, "
            "and run again."
        )


# --- Database, seed and webhook secrets (in this process) ---------------------------------


@dataclass(frozen=True)
class WebhookTarget:
    slug: str
    url: str
    secret: str


def prepare_database() -> tuple[Any, list[WebhookTarget]]:
    """Migrate, seed, and read each clinic's webhook secret. Returns the seed result."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from billing.demo import demo_report, demo_seed, demo_summary
    from billing.models import ProcessorAccount
    from portal.tenancy.context import platform_scope

    say("==> Migrating the database")
    call_command("migrate", interactive=False, verbosity=1)
    say("")
    say("==> Seeding the demo clinics (as manage.py seed_demo does)")
    result = demo_seed()
    say(demo_summary(result))
    say("")
    say(demo_report(result))
    say("")
    with platform_scope():
        accounts = list(ProcessorAccount.objects.select_related("tenant").order_by("tenant__slug"))
        targets = [
            WebhookTarget(
                slug=account.tenant.slug,
                url=f"{WEB_BASE}/webhooks/stripe/{account.tenant.public_id}/",
                secret=account.webhook_secret,
            )
            for account in accounts
        ]
    # The web server gets the database to itself (SQLite allows one writer).
    connections.close_all()
    return result, targets


# --- Children ---------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: if this process is killed outright (SIGKILL), the kernel sends the
    # child SIGTERM, so a crashed stack does not leave servers holding the ports.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_child(name: str, args: Sequence[str], env: dict[str, str]) -> Child:
    # Fixed argument lists naming our own modules; no shell.
    process = subprocess.Popen(  # noqa: S603  # nosec B603
        list(args),
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    return Child(name=name, process=process)


def stop_child(child: Child) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it lingers."""
    if child.running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)
        try:
            child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            say(f"    {child.name} did not stop within {STOP_TIMEOUT_SECONDS:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
    # The group may outlive its leader (runserver's reloaded server process).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signal.SIGKILL)


def wait_until_answers(child: Child, url: str, *, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback http URL we built
    while time.monotonic() < deadline:
        if not child.running:
            raise StartupFailed(f"{child.name} exited with status {child.process.returncode} while starting")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310  # nosec B310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise StartupFailed(f"{child.name} did not answer at {url} within {START_TIMEOUT_SECONDS:.0f}s")


def register_webhooks(targets: Sequence[WebhookTarget]) -> None:
    """Tell localstripe where each clinic's events go and how to sign them.

    localstripe sends every event to every registered webhook, each signed
    with that webhook's own secret, so each clinic's endpoint also receives
    the other clinic's events; they carry no payment of that clinic and are
    acknowledged without effect.
    """
    for target in targets:
        body = json.dumps({"url": target.url, "secret": target.secret}).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http URL we built
            f"{STRIPE_BASE}/_config/webhooks/settle-{target.slug}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # nosec B310
            if response.status != 200:
                raise StartupFailed(f"localstripe refused the webhook of {target.slug}: HTTP {response.status}")


# --- Banner -----------------------------------------------------------------------------


def _database_label(database: Mapping[str, Any]) -> str:
    if database["ENGINE"].endswith("sqlite3"):
        return str(database["NAME"])
    return f"{database['NAME']} on {database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}"


def banner(result: Any, store: Path, reload: bool, scheduler: DevScheduler | None = None) -> str:
    from django.conf import settings

    demo = result.clinics[0]
    sample = demo.statements[0]
    dob = sample.date_of_birth
    billing = next((login for login in demo.staff if login.role == "Billing manager"), demo.staff[0])
    rule = "=" * 78
    lines = [
        rule,
        "  Settle is running (development)                      Ctrl-C stops everything",
        rule,
        f"  Patient page     {demo.patient_url}",
        (
            f"    Look up        statement {sample.number}, date of birth {dob.isoformat()} "
            f"({dob:%B} {dob.day}, {dob.year}), balance {sample.balance}"
        ),
        "",
        "  Test cards       any future expiry, any 3-digit CVC, any 5-digit postal code",
    ]
    lines += [f"    {number}  {meaning}" for number, meaning in TEST_CARDS]
    lines += [
        "",
        f"  Staff login      {demo.staff_login_url}",
        f"    {billing.email} / {result.password}  ({billing.role.lower()}; every role is listed above)",
        f"  Platform console {result.admin_url.replace('/admin/', '/platform/')}  (onboard clinics; same login as below)",
        f"  Django admin     {result.admin_url}",
        f"    {result.operator.email} / {result.password}",
        "    Staff sign in with a password, then a code from an authenticator app: the first",
        "    sign-in shows a QR code to scan (or a key to type) and ten recovery codes.",
    ]
    for other in result.clinics[1:]:
        first = other.statements[0]
        lines.append(
            f"  Also seeded      {other.name}: {other.patient_url}  "
            f"(statement {first.number}, date of birth {first.date_of_birth.isoformat()})"
        )
    lines += [
        "",
        f"  localstripe      {STRIPE_BASE}  (fresh store: {_shown_path(store)})",
        f"  Database         {_database_label(settings.DATABASES['default'])}",
        f"  Web server       runserver on {WEB_BASE} ({'autoreload on' if reload else 'autoreload off'})",
        f"  Sent email       {_shown_path(Path(str(settings.EMAIL_FILE_PATH)))}/  (invitations, password reset links)",
    ]
    if scheduler is not None:
        lines.append(f"  Scheduler        in this process, Celery beat's schedule: {scheduler.describe()}")
    if os.environ.get("REDIS_URL"):
        lines.append("  Note             REDIS_URL is set: tasks go to Redis; start a worker and a beat yourself.")
    lines.append(rule)
    return "\n".join(lines)


# --- Main ---------------------------------------------------------------------------------


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(*, reload: bool) -> int:
    os.environ.update(STACK_ENVIRONMENT)
    env = dict(os.environ)
    children: list[Child] = []
    scheduler: DevScheduler | None = None
    exit_status = 0
    try:
        check_ports()
        result, targets = prepare_database()

        from django.conf import settings

        var_dir = Path(settings.VAR_DIR)
        var_dir.mkdir(parents=True, exist_ok=True)
        store = var_dir / STORE_NAME
        # Fresh per run: payments from an earlier run are not in this store.
        store.unlink(missing_ok=True)
        store.with_suffix(".tmp").unlink(missing_ok=True)

        say(f"==> Starting localstripe on {STRIPE_BASE}")
        localstripe = start_child(
            "localstripe",
            [
                sys.executable,
                "-m",
                "portal.devtools.localstripe_server",
                "--host",
                HOST,
                "--port",
                str(STRIPE_PORT),
                "--store",
                str(store),
            ],
            env,
        )
        children.append(localstripe)
        wait_until_answers(localstripe, f"{STRIPE_BASE}/js.stripe.com/v3/")
        register_webhooks(targets)
        for target in targets:
            say(f"    webhook for {target.slug}: {target.url}")

        say(f"==> Starting the web server on {WEB_BASE}")
        runserver = [sys.executable, "manage.py", "runserver", f"{HOST}:{WEB_PORT}"]
        if not reload:
            runserver.append("--noreload")
        web = start_child("web server", runserver, env)
        children.append(web)
        wait_until_answers(web, f"{WEB_BASE}/healthz")

        if settings.CELERY_TASK_ALWAYS_EAGER:
            # No beat here: run CELERY_BEAT_SCHEDULE's tasks in this process (portal.devtools.scheduler).
            scheduler = scheduler_from_settings(say=say)
            scheduler.start()

        say("")
        say(banner(result, store, reload, scheduler))
        while True:
            for child in children:
                if not child.running:
                    raise StartupFailed(f"{child.name} exited with status {child.process.returncode}")
            time.sleep(0.5)
    except Stop as stop:
        say("")
        say(f"==> {stop.args[0]} received: stopping")
    except StartupFailed as failure:
        say("")
        say(f"!!! {failure}")
        exit_status = 1
    finally:
        # Signals arriving while we clean up must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if scheduler is not None:
            say("    stopping the scheduler")
            scheduler.stop()
        for child in reversed(children):
            say(f"    stopping {child.name}")
            stop_child(child)
        if children:
            say("==> Stopped")
    return exit_status


def _shown_path(path: Path) -> Path:
    """`path` relative to the project when it is inside it (SETTLE_VAR_DIR may be elsewhere)."""
    return path.relative_to(BASE_DIR) if path.is_relative_to(BASE_DIR) else path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Settle's embedded development stack (make run).")
    parser.add_argument(
        "--noreload",
        action="store_true",
        help="do not restart the web server when code changes (localstripe is never restarted)",
    )
    args = parser.parse_args(argv)
    with stop_signals():
        return run(reload=not args.noreload)


if __name__ == "__main__":
    sys.exit(main())
