#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, idempotently:
# - Debian: mosquitto-clients (mosquitto_pub/_sub) and mosquitto (a reference broker);
# - Python venv .venv: paho-mqtt 2.x, pytest, awscli (the tutorial's `aws dynamodb` commands);
# - npm (tests/node): MQTT.js 5 and dynalite 4 (the DynamoDB-compatible test server).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/pytest ] || [ ! -x .venv/bin/aws ] || ! .venv/bin/python -c 'import paho.mqtt' 2>/dev/null; then
  echo "install-deps: python venv .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
fi

if [ ! -f tests/node/node_modules/dynalite/cli.js ] || [ ! -d tests/node/node_modules/mqtt ]; then
  echo "install-deps: npm (tests/node)"
  if [ -f tests/node/package-lock.json ]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
  fi
fi
echo "install-deps: ok"
