# syntax=docker/dockerfile:1
# Settle's production image: gunicorn serving portal.wsgi, also used for the
# Celery worker and beat (docker-compose.yml). The `dev` target adds the
# development tools (localstripe) for the compose `dev` profile.

# --- base: runtime dependencies only, installed from the hash-locked file -------
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns nothing but var/ (collected static files, beat schedule).
RUN groupadd --system --gid 10001 settle \
 && useradd --system --uid 10001 --gid settle --home-dir /app --no-create-home --shell /usr/sbin/nologin settle

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
# Every package pinned with its hash (make lock); all have manylinux wheels for
# CPython 3.11, so no compiler is needed.
RUN python -m pip install --require-hashes --only-binary=:all: -r requirements/base.txt

# --- production ----------------------------------------------------------------
FROM base AS production

COPY . .

# Static files are collected at build time, hashed and compressed by whitenoise
# (CompressedManifestStaticFilesStorage). Production settings refuse to load
# without their secrets, so this step alone gets placeholders that only exist
# for the duration of the RUN; nothing connects to them.
ENV SETTLE_ENV=production \
    SETTLE_VAR_DIR=/app/var \
    WEB_CONCURRENCY=3
RUN mkdir -p /app/var \
 && DJANGO_SECRET_KEY="collectstatic-build-placeholder-not-a-secret-0123456789abcdef" \
    DATABASE_URL="postgres://build:build@127.0.0.1:1/build" \
    REDIS_URL="redis://127.0.0.1:1/0" \
    SETTLE_BASE_DOMAIN="build.invalid" \
    DJANGO_ALLOWED_HOSTS="build.invalid" \
    python manage.py collectstatic --noinput --verbosity 0 \
 && chown -R settle:settle /app/var

USER settle
EXPOSE 8000
# Workers: WEB_CONCURRENCY (gunicorn reads it). TLS ends at the load balancer,
# which sets X-Forwarded-Proto and X-Forwarded-For (SETTLE_TRUSTED_PROXY_COUNT).
CMD ["gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--timeout", "60"]

# --- dev: adds the development and test tools (localstripe, pytest, ...) ---------
FROM production AS dev
USER root
# localstripe is published only as a source distribution (pure Python), so it
# is the one package allowed to build here.
RUN python -m pip install --require-hashes -r requirements/base.txt -r requirements/dev.txt
USER settle
