#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, builds the broker,
# runs clippy, the Rust tests (unit, property, store against the embedded store and dynalite), then
# the interoperability tests with real clients (paho-mqtt, mosquitto_pub/sub, MQTT.js).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

scripts/install-deps.sh
cargo build --release --bins
# Lints are part of the suite: every warning (unreachable_pub included, see Cargo.toml's
# [workspace.lints]) fails it.
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
.venv/bin/pytest tests/interop -q -ra --timeout=120 "$@"
