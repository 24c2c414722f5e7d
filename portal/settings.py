"""Django settings for Settle.

Everything that differs between machines comes from the environment through
the typed readers in portal.env. SETTLE_ENV selects the mode:

- development (default): SQLite, eager Celery, console email, localstripe.
- test: like development, tuned for the test suite (fast hashing is NOT used:
  tests exercise the real Argon2 hasher).
- production: every secret must be given; the process refuses to start
  without them, and there are no development fallbacks.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_required,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
SETTLE_ENV = env_choice("SETTLE_ENV", ("development", "test", "production"), "development")
PRODUCTION = SETTLE_ENV == "production"
VAR_DIR = Path(env_str("SETTLE_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")
if not PRODUCTION:
    VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", default=SETTLE_ENV == "development")
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production")

if PRODUCTION:
    SECRET_KEY = env_required("DJANGO_SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters")
else:
    # A fixed development key: never used in production (see above).
    SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or "settle-development-key-" + "x" * 40

# --- Hosts and tenancy -------------------------------------------------------
# Tenants live at <slug>.<SETTLE_BASE_DOMAIN> or at a custom domain; the
# platform (operators, Django admin, processor webhooks) at SETTLE_PLATFORM_HOST.
SETTLE_BASE_DOMAIN = (env_str("SETTLE_BASE_DOMAIN", None if PRODUCTION else "localhost") or "").lower()
if PRODUCTION and not SETTLE_BASE_DOMAIN:
    raise ImproperlyConfigured("SETTLE_BASE_DOMAIN must be set in production")
SETTLE_PLATFORM_HOST = (env_str("SETTLE_PLATFORM_HOST", SETTLE_BASE_DOMAIN) or "").lower()
# Hosts besides SETTLE_PLATFORM_HOST that reach the platform (webhooks from
# localstripe arrive at 127.0.0.1 in development).
SETTLE_EXTRA_PLATFORM_HOSTS = env_list("SETTLE_EXTRA_PLATFORM_HOSTS", [] if PRODUCTION else ["127.0.0.1"])
SETTLE_PUBLIC_SCHEME = env_choice("SETTLE_PUBLIC_SCHEME", ("http", "https"), "https" if PRODUCTION else "http")
SETTLE_PUBLIC_PORT = env_int("SETTLE_PUBLIC_PORT", 0 if PRODUCTION else 8000, minimum=0)

# Host validation is done by the tenant middleware against the Tenant table
# (custom domains cannot be listed here ahead of time). Django's own check
# still rejects anything outside these patterns.
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS",
    [f".{SETTLE_BASE_DOMAIN}", SETTLE_BASE_DOMAIN, "127.0.0.1"] if not PRODUCTION else [],
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set in production")

# Number of reverse proxies in front of the app that append to
# X-Forwarded-For. The client address is taken that many hops from the right,
# so a client cannot forge its own address by sending the header itself.
SETTLE_TRUSTED_PROXY_COUNT = env_int("SETTLE_TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- Applications -------------------------------------------------------------
INSTALLED_APPS = [
    "portal.admin_site.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "portal",
    "security",
    "audit",
    "billing",
    "messaging",
]

MIDDLEWARE = [
    # Outermost: headers on every response, the health check's included.
    "security.headers.SecurityHeadersMiddleware",
    "portal.middleware.HealthCheckMiddleware",
    "portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.tenancy.middleware.TenantMiddleware",
    # 400 for a NUL in the path, query, cookies or form fields, before the
    # session or a view can put it in a query (PostgreSQL refuses it: a 500).
    "security.textinput.RefuseUnstorableTextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): True once a second factor was given this session.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Staff idle (15 min) and absolute (12 h) session limits; after auth and messages.
    "security.sessions.StaffSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, so it sees the lockout flag set by the authentication backend.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "portal.context_processors.tenant",
                "security.context_processors.staff_permissions",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
if PRODUCTION:
    _database_url = env_required("DATABASE_URL")
else:
    _database_url = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'settle.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and SETTLE_ENV == "development":
    # The embedded default serves requests on threads: writers take the
    # database lock when their transaction begins and wait for each other,
    # instead of failing with "database is locked" when two audited acts
    # append to one chain at once.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
if PRODUCTION and DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("production requires PostgreSQL (DATABASE_URL=postgres://...)")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ----------------------------------------------------
REDIS_URL = env_required("REDIS_URL") if PRODUCTION else env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
# Embedded default: no broker, tasks run in-process as they are queued.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 25 * 60, minimum=1)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "settle-stuck-payments": {
        "task": "billing.tasks.payments_settle_stuck",
        "schedule": env_int("SETTLE_STUCK_PAYMENT_SWEEP_SECONDS", 300, minimum=10),
    },
    "settle-stuck-refunds": {
        "task": "billing.tasks.refunds_settle_stuck",
        "schedule": env_int("SETTLE_STUCK_REFUND_SWEEP_SECONDS", 300, minimum=10),
    },
}

# --- Auth, passwords, sessions, cookies -------------------------------------------
AUTH_USER_MODEL = "security.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # The staff rule (security.passwords): createsuperuser and the admin are
    # used by platform operators, who are staff. Patients' rule is applied by
    # services through security.passwords.validate_password_for.
    {"NAME": "security.passwords.StaffPasswordValidator"},
    {"NAME": "security.passwords.BreachedPasswordValidator"},
]
LOGIN_URL = "staff:login"
LOGIN_REDIRECT_URL = "staff:dashboard"
# The axes backend first: it refuses a locked-out account or IP before any
# password is checked (and so before any timing difference).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Lockout (django-axes for sign-ins and second factors; security.lockout for
# guest statement look-ups), one policy for both: SECURITY.md "Lockout".
SETTLE_LOCKOUT_FAILURES = 10
SETTLE_LOCKOUT_MINUTES = 30
AXES_FAILURE_LIMIT = SETTLE_LOCKOUT_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=SETTLE_LOCKOUT_MINUTES)
# Per account OR per IP: either reaching the limit locks.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The same address the rest of the portal uses: X-Forwarded-For counts only
# through SETTLE_TRUSTED_PROXY_COUNT trusted proxies, so forging it dodges nothing.
AXES_CLIENT_IP_CALLABLE = "portal.net.client_ip"
AXES_USERNAME_CALLABLE = "security.login_lockout.axes_username"
AXES_LOCKOUT_CALLABLE = "security.auth_views.locked_out"
# Counters are cleared only after both factors succeed (security.mfa), so a
# known password cannot be used to reset the second-factor failure count.
AXES_RESET_ON_SUCCESS = False
# A lock lasts 30 minutes from when it was set; attempts while locked do not extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token", "new_password1", "new_password2", "old_password"]
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_VERBOSE = False

# --- Second factor (django-otp) -----------------------------------------------------
OTP_TOTP_ISSUER = "Settle"
# Throttle between wrong codes doubles each time (1 s, 2 s, 4 s, ...); lockout
# above ends the run after 10.
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1

SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 12 * 60 * 60
if PRODUCTION:
    # __Host- cookies: Secure, path=/, no Domain attribute, so one tenant's
    # host can never set or read another's cookie.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 63072000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Payments processor -------------------------------------------------------------
# STRIPE_API_BASE points the stripe library elsewhere (localstripe in
# development and tests); unset in production, where Stripe itself is used.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", None if PRODUCTION else "http://127.0.0.1:8420") or None
STRIPE_JS_URL = (
    env_str(
        "STRIPE_JS_URL",
        "https://js.stripe.com/v3/" if PRODUCTION else "http://127.0.0.1:8420/js.stripe.com/v3/",
    )
    or "https://js.stripe.com/v3/"
)
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 20, minimum=1)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_stripe_js_origin = _origin(STRIPE_JS_URL)
_stripe_api_origin = _origin(STRIPE_API_BASE) if STRIPE_API_BASE else "https://api.stripe.com"

# --- PHI encryption keys (security.crypto) -------------------------------------------
# Data keys are per tenant and purpose, wrapped by a key provider:
# "local" (a master key from SETTLE_MASTER_KEY or SETTLE_MASTER_KEY_FILE; base64 or
# hex of 32 bytes) or "aws-kms" (SETTLE_KMS_KEY_ID, SETTLE_KMS_REGION and, for
# moto or a VPC endpoint, SETTLE_KMS_ENDPOINT_URL). Outside production the local
# provider generates a key file under VAR_DIR on first use; production refuses
# to start without a key it did not generate itself.
SETTLE_KEY_PROVIDER = env_choice("SETTLE_KEY_PROVIDER", ("local", "aws-kms"), "local")
SETTLE_MASTER_KEY = env_secret("SETTLE_MASTER_KEY") or None
# Earlier master keys, still able to unwrap until `manage.py rewrap_keys` has run.
SETTLE_MASTER_KEY_PREVIOUS = env_list("SETTLE_MASTER_KEY_PREVIOUS")
SETTLE_KMS_KEY_ID = env_str("SETTLE_KMS_KEY_ID", "") or ""
SETTLE_KMS_REGION = env_str("SETTLE_KMS_REGION") or env_str("AWS_REGION") or None
SETTLE_KMS_ENDPOINT_URL = env_str("SETTLE_KMS_ENDPOINT_URL") or None
# Plaintext data keys stay in memory at most this long (capped at 300) and this many uses.
SETTLE_DATA_KEY_CACHE_SECONDS = env_int("SETTLE_DATA_KEY_CACHE_SECONDS", 300, minimum=0)
SETTLE_DATA_KEY_CACHE_MAX_USES = env_int("SETTLE_DATA_KEY_CACHE_MAX_USES", 100_000, minimum=1)
# How long a process trusts its idea of which key version is active; a rotation
# waits this long before checking that nothing uses the old version.
SETTLE_ACTIVE_KEY_CACHE_SECONDS = env_int("SETTLE_ACTIVE_KEY_CACHE_SECONDS", 30, minimum=0)
if PRODUCTION and SETTLE_KEY_PROVIDER == "local":
    if not SETTLE_MASTER_KEY:
        raise ImproperlyConfigured("SETTLE_MASTER_KEY or SETTLE_MASTER_KEY_FILE must be set in production")
    if SETTLE_MASTER_KEY.lstrip().startswith("# settle: generated"):
        raise ImproperlyConfigured(
            "SETTLE_MASTER_KEY_FILE names a development key Settle generated; provision a real one"
        )
if PRODUCTION and SETTLE_KEY_PROVIDER == "aws-kms" and not SETTLE_KMS_KEY_ID:
    raise ImproperlyConfigured("SETTLE_KMS_KEY_ID must be set in production when SETTLE_KEY_PROVIDER=aws-kms")
# The asymmetric KMS key (ECC_NIST_P256) that signs audit checkpoints and export
# seals under aws-kms (the local provider derives an Ed25519 key from its master
# key). Earlier signing keys stay listed so their checkpoints still verify in place.
SETTLE_KMS_AUDIT_SIGNING_KEY_ID = env_str("SETTLE_KMS_AUDIT_SIGNING_KEY_ID", "") or ""
SETTLE_KMS_AUDIT_SIGNING_KEY_PREVIOUS = env_list("SETTLE_KMS_AUDIT_SIGNING_KEY_PREVIOUS")

# --- Audit trail keys (audit.conf) ----------------------------------------------------
# Who signs checkpoints and export seals: "provider" (the key provider's signing
# key, verifiable offline with its public key) or "hmac" (the legacy HMAC key
# below; only to verify what it signed before the provider did).
SETTLE_AUDIT_SIGNER = env_choice("SETTLE_AUDIT_SIGNER", ("provider", "hmac"), "provider")
if (
    PRODUCTION
    and SETTLE_AUDIT_SIGNER == "provider"
    and SETTLE_KEY_PROVIDER == "aws-kms"
    and not SETTLE_KMS_AUDIT_SIGNING_KEY_ID
):
    raise ImproperlyConfigured(
        "SETTLE_KMS_AUDIT_SIGNING_KEY_ID must be set in production when SETTLE_KEY_PROVIDER=aws-kms"
    )
# Legacy keys, base64 of 32 bytes each: the HMAC key that signed checkpoints and
# export seals before the key provider did (it still verifies them, and signs
# when SETTLE_AUDIT_SIGNER=hmac), and the key that wrapped audit export file keys
# before the provider generated them (it still decrypts those files). Outside
# production they are derived from the development SECRET_KEY.
if PRODUCTION:
    SETTLE_AUDIT_SIGNING_KEY = env_required("SETTLE_AUDIT_SIGNING_KEY")
    SETTLE_AUDIT_EXPORT_KEY = env_required("SETTLE_AUDIT_EXPORT_KEY")
else:
    SETTLE_AUDIT_SIGNING_KEY = env_secret("SETTLE_AUDIT_SIGNING_KEY") or ""
    SETTLE_AUDIT_EXPORT_KEY = env_secret("SETTLE_AUDIT_EXPORT_KEY") or ""

# --- Content security policy ------------------------------------------------------
# Scripts only from ourselves (with a per-response nonce) and the processor's
# script host. docs/payment-page-scripts.md is the inventory (PCI DSS 6.4.3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE, _stripe_js_origin],
        "connect-src": [SELF, _stripe_api_origin],
        "frame-src": [_stripe_js_origin, "https://hooks.stripe.com"],
        "img-src": [SELF, "data:"],
        "style-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        # Violations go to security.headers.csp_report (both reporting styles:
        # report-uri for older browsers, report-to with Reporting-Endpoints).
        "report-uri": ["/csp-report/"],
        "report-to": ["csp-endpoint"],
    },
}

# --- Static files, i18n ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = VAR_DIR / "media"
# Outside production, serve static files straight from the source folders.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Email ----------------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
# Where the file backend (the `make run` default) writes each sent message.
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587 if PRODUCTION else 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=PRODUCTION)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Settle <no-reply@settle.localhost>")

# --- Logging ----------------------------------------------------------------------------
# Structured JSON lines with the request id; never PHI or card data.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "portal.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The stripe library logs every request at INFO; ids only, but noisy.
        "stripe": {"level": "WARNING"},
        # axes logs the attempted username (an email, or a mistyped password)
        # at WARNING; failures are counted in its tables and audited instead.
        "axes": {"level": "ERROR"},
    },
}
