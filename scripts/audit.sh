#!/usr/bin/env bash
# Check Cargo.lock against the RustSec advisory database with cargo-audit, offline, and
# fail on any advisory that .cargo/audit.toml does not resolve (each ignore there names
# its advisory and why it cannot reach Tessera).
#
#   scripts/audit.sh [ADVISORY_DB]
#
# ADVISORY_DB, or else $TESSERA_ADVISORY_DB, is a local copy of the RustSec advisory
# database (a clone of github.com/rustsec/advisory-db). Without either, cargo-audit's own
# copy is used ($CARGO_HOME/advisory-db, ~/.cargo/advisory-db by default). The database is
# never fetched: cargo-audit runs with --no-fetch, and --stale accepts a copy of any age,
# so keep the copy current yourself (`git -C <db> pull`, or a plain `cargo audit` run,
# which fetches into its own location). Installs cargo-audit when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

db=${1:-${TESSERA_ADVISORY_DB:-${CARGO_HOME:-$HOME/.cargo}/advisory-db}}
if [ ! -d "$db/crates" ]; then
  echo "audit: no advisory database at $db" >&2
  echo "audit: pass a copy of the RustSec advisory database as the argument or in TESSERA_ADVISORY_DB" >&2
  exit 2
fi

if ! cargo audit --version >/dev/null 2>&1; then
  cargo install --locked cargo-audit
fi

if [ -f "$db/SNAPSHOT.md" ]; then
  echo "audit: database $db ($(grep -o 'commit [0-9a-f]*, [0-9-]*' "$db/SNAPSHOT.md" | head -n1))"
elif git -C "$db" rev-parse --git-dir >/dev/null 2>&1; then
  echo "audit: database $db (commit $(git -C "$db" log -1 --format='%h, %cs'))"
else
  echo "audit: database $db"
fi
# cargo-audit reads .cargo/audit.toml from here; it exits non-zero on any advisory left.
exec cargo audit --db "$db" --no-fetch --stale --deny warnings
