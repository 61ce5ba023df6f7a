#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time, one after the other, and report
# how many inputs each executed and what it found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    (default: 60 seconds each, every target)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz
# when it is missing. Seeds come from fuzz/seeds/ (committed, rebuilt by fuzz/seeds.py);
# what libFuzzer learns goes to fuzz/corpus/, crashes to fuzz/artifacts/<target>/ (both
# ignored by git). Exits non-zero when any target found something: each finding becomes
# a regression test in the normal test suite (docs/development.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
case $seconds in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

mapfile -t all < <(cargo +nightly fuzz list)
targets=("${@:-${all[@]}}")

# One build for every target; `run` below then only links what is already built.
cargo +nightly fuzz build

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
found=0
printf '\n%-20s %14s %10s  %s\n' target execs "exec/s" findings
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  before=$(find "artifacts/$target" -type f | wc -l)
  # -timeout: one input taking over 10 s is a finding (a CPU sink), as is over 2 GiB.
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$logs/$target.log" 2>&1 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -n1)
  after=$(find "artifacts/$target" -type f | wc -l)
  new=$((after - before))
  if [ -z "$execs" ]; then
    # No final stats: the target died before libFuzzer could print them.
    echo "---- $target: no statistics; the end of its log:" >&2
    tail -n 40 "$logs/$target.log" >&2
    new=$((new > 0 ? new : 1))
  fi
  found=$((found + new))
  printf '%-20s %14s %10s  %s\n' "$target" "${execs:-?}" "${rate:-?}" "$new"
  if [ "$new" -gt 0 ]; then
    find "artifacts/$target" -type f -newer "$logs" -printf '    %p\n'
    grep -m1 -A12 -E '^(==[0-9]+==ERROR|thread .* panicked)' "$logs/$target.log" | sed 's/^/    /' || true
  fi
done

if [ "$found" -gt 0 ]; then
  echo "findings: $found (reproduce: cd fuzz && cargo +nightly fuzz run TARGET ARTIFACT)"
  exit 1
fi
echo "findings: none"
