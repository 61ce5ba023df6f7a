#!/usr/bin/env bash
# Throughput of the real `tessera serve`, driven from outside by wrk, against the
# cryptographic floor of an exchange measured in the same run.
#
#   scripts/bench.sh                      build release, measure every configuration
#   BENCH_BINARY=path scripts/bench.sh    measure another `tessera` binary instead
#   BENCH_BASELINE=path scripts/bench.sh  also measure this binary, each configuration
#                                         right after the measured one (before/after)
#
# Settings: BENCH_SECONDS (per run, default 10), BENCH_CONNECTIONS (default 32),
# BENCH_PORT (first of the loopback ports used, default 18080), BENCH_ONLY (a regular
# expression: only the configurations whose name matches), BENCH_KEEP=1 (keep the
# working directory).
#
# Every configuration is the quickstart's `oidc` -> `jwt` exchange with one fixed RS256
# subject token (the demo issuer's), keep-alive, one wrk thread: JSON-lines audit only;
# the default (embedded SQLite store + JSON lines); PostgreSQL at 127.0.0.1:5432 (a
# database of its own, dropped afterwards) when it answers; and the repeated token with
# the verified-token cache. The other configurations turn that cache off, so that each of
# their exchanges verifies the token. The ratio column divides the rate by the one-core
# crypto bound (one RS256 verify + one ES256 sign per second of one core's CPU time,
# `cargo run --release -p tessera-broker --example crypto_bound`); both share the
# machine with wrk and whatever else runs. Syscalls per exchange are counted by
# `strace -c -f` over a short separate window (strace slows the broker; the counts, not
# that window's rate, are the figure).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
PORT=${BENCH_PORT:-18080}
ONLY=${BENCH_ONLY:-.}

step() { printf '==> %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null 2>&1; then
  step "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >&2; else sudo apt-get install -y wrk >&2; fi
fi

if [ -n "${BENCH_BINARY:-}" ]; then
  step "building the crypto bound (release)"
  cargo build --release --locked -p tessera-broker --example crypto_bound >&2
  BIN=$(realpath "$BENCH_BINARY")
else
  step "building tessera and the crypto bound (release)"
  cargo build --release --locked -p tessera-broker --bin tessera --example crypto_bound >&2
  BIN=$PWD/target/release/tessera
fi
BINS=("$BIN")
if [ -n "${BENCH_BASELINE:-}" ]; then BINS+=("$(realpath "$BENCH_BASELINE")"); fi

WORK=$(mktemp -d /tmp/tessera-bench.XXXXXX)
BROKER_PID=
PG_DB=
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql -h 127.0.0.1 -p 5432 -d postgres -Atqc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step "crypto bound (one thread, CPU time)"
target/release/examples/crypto_bound 3 670 >"$WORK/crypto.txt"
cat "$WORK/crypto.txt" >&2
BOUND=$(awk '$1 == "crypto_bound_per_core" { print $2 }' "$WORK/crypto.txt")

POSTGRES=no
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  PG_DB="tessera_bench_$$_$(date +%s)"
  psql -h 127.0.0.1 -p 5432 -d postgres -Atqc "CREATE DATABASE $PG_DB" >/dev/null && POSTGRES=yes
  PG_USER=$(psql -h 127.0.0.1 -p 5432 -d postgres -Atqc "SELECT current_user")
fi

# The configurations: name, then the audit block, then whether verified tokens are cached.
CONFIGS=(
  "JSON lines only (store off)|audit: { sink: file, path: audit.jsonl, store: { enabled: false } }|off"
  "default: SQLite + JSON lines|audit: { sink: file, path: audit.jsonl }|off"
)
if [ "$POSTGRES" = yes ]; then
  CONFIGS+=("PostgreSQL + JSON lines|audit: { sink: file, path: audit.jsonl, store: { url: 'postgres://$PG_USER@127.0.0.1:5432/$PG_DB' } }|off")
fi
CONFIGS+=("repeated token, jwt (default + cache)|audit: { sink: file, path: audit.jsonl }|on")

# broker.yaml for one run in directory $1 with audit block $2 and token cache $3.
write_config() {
  local dir=$1 audit=$2 cache=$3
  mkdir -p "$dir/mappings"
  cat >"$dir/mappings/bench.yaml" <<'EOF'
version: 1
rules:
  - name: bench
    match: { source: demo }
    grant: { target: internal-api }
EOF
  cat >"$dir/broker.yaml" <<EOF
version: 1
listen: 127.0.0.1:$PORT
issuer: { url: 'http://127.0.0.1:$PORT', key_dir: keys, algorithms: [ES256] }
sources:
  - { name: demo, type: oidc, issuer: 'http://127.0.0.1:$((PORT + 1))', audiences: [tessera], insecure_http: true, max_token_lifetime: 1h }
targets:
  - { name: internal-api, type: jwt, audience: 'https://internal-api.example', max_ttl: 1h, default_ttl: 15m }
mappings: mappings
data_dir: data
$audit
demo_issuer: { listen: '127.0.0.1:$((PORT + 1))', key_dir: demo-keys }
EOF
  # Binaries without a verified-token cache refuse the key: their runs keep the default.
  if [ "$cache" = off ]; then
    echo "token_cache: { enabled: false }" >>"$dir/broker.yaml"
    if ! "$4" --log-format text check --config "$dir/broker.yaml" >/dev/null 2>&1; then
      sed -i '/^token_cache:/d' "$dir/broker.yaml"
    fi
  fi
}

wait_ready() {
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# CPU time the process has used so far (user + system), in clock ticks.
cpu_ticks() {
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# A wrk latency figure (`3.30ms`, `812.00us`, `1.02s`) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60000 }
    else { sub(/s$/, "", v); printf "%.1f", v * 1000 }
  }'
}

URL="http://127.0.0.1:$PORT/v1/token"
ROWS=()
run_one() {
  local name=$1 audit=$2 cache=$3 bin=$4 label=$5
  local dir="$WORK/run-${#ROWS[@]}"
  write_config "$dir" "$audit" "$cache" "$bin"
  (cd "$dir" && exec "$bin" --log-format json serve --config broker.yaml 2>broker.log) &
  BROKER_PID=$!
  if ! wait_ready; then
    echo "broker did not start for '$name' ($label):" >&2; tail -n 20 "$dir/broker.log" >&2 || true
    kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=
    ROWS+=("$name|$label|failed to start|||||||")
    return
  fi
  local token
  token=$(curl -fs -X POST "http://127.0.0.1:$((PORT + 1))/token" -d sub=payments-api -d ttl=3600 | tr -d '\n')
  local body="grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=internal-api&subject_token=$token"
  cat >"$dir/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "$body"
EOF
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL" -H 'content-type: application/x-www-form-urlencoded' --data "$body")
  if [ "$status" != 200 ]; then
    echo "warm-up exchange answered $status for '$name' ($label)" >&2; tail -n 5 "$dir/broker.log" >&2
  fi
  wrk -t1 -c"$CONNS" -d2s -s "$dir/post.lua" "$URL" >/dev/null
  local cpu_before cpu_after
  cpu_before=$(cpu_ticks "$BROKER_PID")
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$dir/post.lua" "$URL" >"$dir/wrk.txt"
  cpu_after=$(cpu_ticks "$BROKER_PID")
  local rate p50 p99 max non2xx rss cpu
  rate=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$dir/wrk.txt")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$dir/wrk.txt")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$dir/wrk.txt")")
  max=$(to_ms "$(awk '$1 == "Latency" && NF >= 4 { print $4; exit }' "$dir/wrk.txt")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$dir/wrk.txt")
  cpu=$(awk -v t="$((cpu_after - cpu_before))" -v hz="$(getconf CLK_TCK)" '/requests in/ {
    if ($1 > 0) printf "%.0f", t / hz * 1e6 / $1 }' "$dir/wrk.txt")
  rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$BROKER_PID/status")
  local sys="-"
  if command -v strace >/dev/null 2>&1; then
    strace -c -f -p "$BROKER_PID" -o "$dir/strace.txt" 2>/dev/null &
    local strace_pid=$!
    sleep 0.5
    wrk -t1 -c"$CONNS" -d3s -s "$dir/post.lua" "$URL" >"$dir/wrk-strace.txt"
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    local n
    n=$(awk '/requests in/ { print $1 }' "$dir/wrk-strace.txt")
    sys=$(awk -v n="$n" '
      $NF == "total" { total = $4 } $NF == "futex" { futex = $4 }
      END { if (n > 0) printf "%.1f (futex %.1f)", total / n, futex / n; else print "-" }' "$dir/strace.txt")
  fi
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
  local ratio
  ratio=$(awk -v r="$rate" -v b="$BOUND" 'BEGIN { printf "%.2f", r / b }')
  ROWS+=("$name|$label|$rate|$ratio|$cpu|$p50 / $p99|$max|$rss|$sys|${non2xx:-0}")
  printf '%s (%s): %s/s, ratio %s, %s CPU µs/exchange, p50/p99 %s/%s ms, max %s ms, RSS %s MiB, syscalls/exchange %s\n' \
    "$name" "$label" "$rate" "$ratio" "$cpu" "$p50" "$p99" "$max" "$rss" "$sys" >&2
}

for config in "${CONFIGS[@]}"; do
  IFS='|' read -r name audit cache <<<"$config"
  if ! grep -Eq -- "$ONLY" <<<"$name"; then continue; fi
  for i in "${!BINS[@]}"; do
    label=$([ "$i" = 0 ] && echo measured || echo baseline)
    step "$name ($label: ${BINS[$i]})"
    run_one "$name" "$audit" "$cache" "${BINS[$i]}" "$label"
  done
done

echo
CRYPTO_US=$(awk -v b="$BOUND" 'BEGIN { printf "%.0f", 1e6 / b }')
echo "crypto bound: $BOUND verify+sign/s per core ($CRYPTO_US CPU µs each); $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk: 1 thread, $CONNS connections, ${SECS}s per run; binary: ${BINS[*]}"
echo
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' configuration binary exchanges/s "÷ crypto bound" \
  "broker CPU µs/exchange" "p50 / p99 ms" "max ms" "RSS MiB" "syscalls/exchange" "non-2xx"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for row in "${ROWS[@]}"; do
  IFS='|' read -r a b c d e f g h i j <<<"$row"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j"
done
