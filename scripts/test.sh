#!/usr/bin/env bash
# Run Tessera's whole test suite on a fresh machine: installs the Python test peers into
# ./.venv, makes sure the local PostgreSQL and Redis are up, then checks formatting,
# lints, and runs every Rust test (unit, integration, mapping-file tests).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python test peers (.venv)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum tests/peers/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
  echo "$want" > "$stamp"
fi

step "System packages the tests drive (buildah, podman, runc, kubectl, chromium for the console)"
missing=()
for pkg in buildah podman runc chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

step "Local services (PostgreSQL, Redis)"
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi

step "Formatting"
cargo fmt --all -- --check

step "Lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Mapping files (tessera mappings check, every example and deployment config)"
for config in examples/*/broker.yaml deploy/kubernetes/base/broker.yaml deploy/kubernetes/overlays/replicas/broker.yaml; do
  cargo run --quiet --locked -p tessera-broker --bin tessera -- --log-format text \
    mappings check --strict --config "$config"
done

step "Tests"
# nextest runs each test in its own process: end-to-end tests send signals (SIGHUP) and
# set process-wide state, which `cargo test`'s one process per binary would share.
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
export TESSERA_PYTHON="$PWD/.venv/bin/python"
cargo nextest run --workspace --locked --no-fail-fast
