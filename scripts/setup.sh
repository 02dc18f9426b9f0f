#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Java check, redis-server, the virtual environment.
# Called by `make setup` (and so by `make demo` and `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv}"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- Java 17+ (Spark) ---------------------------------------------------------------------
if ! command -v java >/dev/null 2>&1; then
  die "Java 17 or newer is required for Spark and was not found. Install it (Debian: apt-get install -y openjdk-17-jre-headless) or put it on PATH / set JAVA_HOME."
fi
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}')
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  die "Java 17 or newer is required for Spark; found version '${java_major:-unknown}'. Install openjdk-17-jre-headless or set JAVA_HOME."
fi

# --- redis-server (the embedded online store) and openssl (the TLS tests' certificates) -------
packages=""
command -v redis-server >/dev/null 2>&1 || packages="redis-server"
command -v openssl >/dev/null 2>&1 || packages="$packages openssl"
if [ -n "$packages" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    say "installing$packages (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    say "installing$packages (Debian packages, via sudo)"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
  else
    die "$packages missing and cannot be installed automatically here. Install them (e.g. apt-get install redis-server openssl), or for Redis set VITRINE_REDIS_URL to an existing one."
  fi
fi
command -v redis-server >/dev/null 2>&1 || die "redis-server is still not on PATH after installing it"

# --- Python virtual environment ----------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: Vitrine needs CPython 3.11 (set PYTHON=...)"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.stamp-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing Python dependencies (pinned by constraints.txt); this takes a few minutes the first time"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
  rm -f "$VENV"/.stamp-*
  touch "$stamp"
fi
"$VENV/bin/python" -m serving.proto.build >/dev/null  # gRPC stubs (also generated lazily on import)
say "ready: $("$VENV/bin/python" --version), $(redis-server --version | awk '{print $3}'), java $java_major"
