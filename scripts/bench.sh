#!/usr/bin/env bash
# Throughput of the real `tessera serve`, driven from outside by wrk, against the
# cryptographic floor of an exchange measured in the same run.
#
#   scripts/bench.sh                      build release, measure every configuration
#   BENCH_BINARY=path scripts/bench.sh    measure another `tessera` binary instead
#   BENCH_BASELINE=path scripts/bench.sh  also measure this binary, each configuration
#                                         right after the measured one (before/after)
#
# The release build goes to CARGO_TARGET_DIR when it is set, as cargo's does.
#
# Settings: BENCH_SECONDS (per run, default 10), BENCH_CONNECTIONS (default 32),
# BENCH_PORT (first of the loopback ports used, default 18080), BENCH_ONLY (a regular
# expression: only the configurations whose name matches), BENCH_KEEP=1 (keep the
# working directory), BENCH_PYTHON (a Python with moto, for the aws_sts configuration;
# default: .venv/bin/python, then TESSERA_PYTHON).
#
# Every configuration is the quickstart's `oidc` -> `jwt` exchange with one fixed RS256
# subject token (the demo issuer's), keep-alive, one wrk thread: JSON-lines audit only;
# the default (embedded SQLite store + JSON lines); PostgreSQL at 127.0.0.1:5432 (a
# database of its own, dropped afterwards) when it answers; and the repeated token with
# the verified-token cache. The other configurations turn that cache off, so that each of
# their exchanges verifies the token. Cost growth: the default with 10 and with 10,000
# rules, with 100 sources (routing by issuer), and with 1,000,000 events and 10,000
# workloads already in the store (then also the time of `GET /v1/audit` and
# `GET /v1/workloads` pages). With moto in BENCH_PYTHON: the repeated token for an
# `aws_sts` target whose credentials are cached (no cryptography at all per exchange).
# After the table: the latency of the default and of JSON lines only at half their
# measured rate, from a paced client (request i due at start + i / rate, latency counted
# from that due time: the `paced_load` example), and what 1,000 idle keep-alive
# connections add to the broker's RSS. The ratio column divides the rate by the one-core
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

RELEASE=${CARGO_TARGET_DIR:-target}/release

step() { printf '==> %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null 2>&1; then
  step "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >&2; else sudo apt-get install -y wrk >&2; fi
fi

if [ -n "${BENCH_BINARY:-}" ]; then
  step "building the crypto bound (release)"
  cargo build --release --locked -p tessera-broker --example crypto_bound --example paced_load >&2
  BIN=$(realpath "$BENCH_BINARY")
else
  step "building tessera and the crypto bound (release)"
  cargo build --release --locked -p tessera-broker --bin tessera --example crypto_bound --example paced_load >&2
  BIN=$(realpath "$RELEASE/tessera")
fi
BINS=("$BIN")
if [ -n "${BENCH_BASELINE:-}" ]; then BINS+=("$(realpath "$BENCH_BASELINE")"); fi

WORK=$(mktemp -d /tmp/tessera-bench.XXXXXX)
BROKER_PID=
MOTO_PID=
PG_DB=
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql -h 127.0.0.1 -p 5432 -d postgres -Atqc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step "crypto bound (one thread, CPU time)"
"$RELEASE/examples/crypto_bound" 3 670 >"$WORK/crypto.txt"
cat "$WORK/crypto.txt" >&2
BOUND=$(awk '$1 == "crypto_bound_per_core" { print $2 }' "$WORK/crypto.txt")

POSTGRES=no
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  PG_DB="tessera_bench_$$_$(date +%s)"
  psql -h 127.0.0.1 -p 5432 -d postgres -Atqc "CREATE DATABASE $PG_DB" >/dev/null && POSTGRES=yes
  PG_USER=$(psql -h 127.0.0.1 -p 5432 -d postgres -Atqc "SELECT current_user")
fi

# moto's STS for the aws_sts configuration, when a Python with moto is at hand.
MOTO=no
for py in "${BENCH_PYTHON:-}" .venv/bin/python "${TESSERA_PYTHON:-}"; do
  if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import moto.server' 2>/dev/null; then
    "$py" -m moto.server -H 127.0.0.1 -p "$((PORT + 3))" >"$WORK/moto.log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 100); do
      if curl -s -o /dev/null "http://127.0.0.1:$((PORT + 3))/"; then MOTO=yes; break; fi
      sleep 0.1
    done
    break
  fi
done

# The configurations: name, the audit block, whether verified tokens are cached, and what
# else the run has (rules10, rules10k, sources100, store1m, aws; - for nothing).
DEFAULT_AUDIT="audit: { sink: file, path: audit.jsonl }"
CONFIGS=(
  "JSON lines only (store off)|audit: { sink: file, path: audit.jsonl, store: { enabled: false } }|off|-"
  "default: SQLite + JSON lines|$DEFAULT_AUDIT|off|-"
)
if [ "$POSTGRES" = yes ]; then
  CONFIGS+=("PostgreSQL + JSON lines|audit: { sink: file, path: audit.jsonl, store: { url: 'postgres://$PG_USER@127.0.0.1:5432/$PG_DB' } }|off|-")
fi
CONFIGS+=("repeated token, jwt (default + cache)|$DEFAULT_AUDIT|on|-")
if [ "$MOTO" = yes ]; then
  CONFIGS+=("repeated token, aws_sts cached (default + cache)|$DEFAULT_AUDIT|on|aws")
fi
CONFIGS+=(
  "default, 10 rules|$DEFAULT_AUDIT|off|rules10"
  "default, 10,000 rules|$DEFAULT_AUDIT|off|rules10k"
  "default, 100 sources|$DEFAULT_AUDIT|off|sources100"
  "default, 1M events and 10k workloads stored, 10k rules|$DEFAULT_AUDIT|off|store1m"
)

# A mapping file of $1 rules: the bench rule, and others each for a workload of its own.
write_rules() {
  printf 'version: 1\nrules:\n  - name: bench\n    match: { source: demo }\n    grant: { target: internal-api }\n'
  for i in $(seq 2 "$1"); do
    printf '  - { name: rule-%d, match: { source: demo, subject: svc-%d }, grant: { target: internal-api } }\n' "$i" "$i"
  done
}

# 99 more sources, each trusting an issuer of its own, all with the demo issuer's keys.
write_sources() {
  for i in $(seq 2 100); do
    printf "  - { name: src-%d, type: oidc, issuer: 'https://idp-%d.example', jwks_uri: 'http://127.0.0.1:%d/.well-known/jwks.json', audiences: [tessera], insecure_http: true }\n" \
      "$i" "$i" "$((PORT + 1))"
  done
}

# 1,000,000 events of 10,000 workloads, and those workloads, in the store at $1 (migrated
# by a broker that ran once). Each issued token in the segment the broker's writer would
# give it: its rowid (here i, the table being empty) shifted right by 8.
fill_store() {
  sqlite3 "$1" <<'SQL'
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO tessera_audit_events (event_id, time_ms, event_time, request_id, decision, reason, source,
  identity_id, identity, target, rule, issued_ttl, subject_token_fingerprint, issued_token_fingerprint,
  client_addr, latency_ms, issued_segment)
SELECT printf('00000000-0000-7000-8000-%012d', i), 1700000000000 + i * 10, '2023-11-14T22:13:20Z', 'fill-' || i,
  'allow', 'TS-OK', 'demo', 'oidc://demo/w-' || (i % 10000), '{"id":"oidc://demo/w-' || (i % 10000) || '"}',
  'internal-api', 'bench', 900, 'sha256:s' || i, 'sha256:i' || i, '127.0.0.1', 1.0, i >> 8
FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
INSERT INTO tessera_workloads (identity_id, source, identity, first_seen_ms, last_seen_ms, allowed, denied, errors)
SELECT 'oidc://demo/w-' || i, 'demo', '{"id":"oidc://demo/w-' || i || '"}', 1700000000000, 1700010000000 + i, 100, 0, 0
FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
INSERT INTO tessera_workload_outcomes (identity_id, target, decision, reason, exchanges, first_ms, last_ms)
SELECT 'oidc://demo/w-' || i, 'internal-api', 'allow', 'TS-OK', 100, 1700000000000, 1700010000000 + i
FROM n;
COMMIT;
SQL
}

# broker.yaml for one run in directory $1 with audit block $2, token cache $3, binary $4
# and extra $5.
write_config() {
  local dir=$1 audit=$2 cache=$3 extra=$5
  mkdir -p "$dir/mappings"
  case $extra in
    rules10) write_rules 10 >"$dir/mappings/bench.yaml" ;;
    rules10k | store1m) write_rules 10000 >"$dir/mappings/bench.yaml" ;;
    aws) printf 'version: 1\nrules:\n  - name: bench\n    match: { source: demo }\n    grant: { target: aws, role_arn: "arn:aws:iam::123456789012:role/bench" }\n' \
      >"$dir/mappings/bench.yaml" ;;
    *) write_rules 1 >"$dir/mappings/bench.yaml" ;;
  esac
  local sources="" targets=""
  if [ "$extra" = sources100 ]; then sources=$(write_sources); fi
  if [ "$extra" = aws ]; then
    targets="  - { name: aws, type: aws_sts, endpoint: 'http://127.0.0.1:$((PORT + 3))', insecure_http: true, algorithm: ES256, max_ttl: 1h, default_ttl: 15m }"
  fi
  cat >"$dir/broker.yaml" <<EOF
version: 1
listen: 127.0.0.1:$PORT
issuer: { url: 'http://127.0.0.1:$PORT', key_dir: keys, algorithms: [ES256] }
sources:
  - { name: demo, type: oidc, issuer: 'http://127.0.0.1:$((PORT + 1))', audiences: [tessera], insecure_http: true, max_token_lifetime: 1h }
$sources
targets:
  - { name: internal-api, type: jwt, audience: 'https://internal-api.example', max_ttl: 1h, default_ttl: 15m }
$targets
mappings: mappings
data_dir: data
$audit
admin: { listen: '127.0.0.1:$((PORT + 2))' }
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
ADMIN="http://127.0.0.1:$((PORT + 2))"
ROWS=()
NOTES=()

# Milliseconds one admin GET of $1 takes (the median of five), or what it answered instead.
admin_ms() {
  for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$ADMIN$1"; done |
    sort -k2 -n | awk '$1 != 200 { bad = "HTTP " $1 } NR == 3 { ms = sprintf("%.1f", $2 * 1000) }
      END { print (bad != "" ? bad : ms) }'
}

# The pages an operator reads, timed against the filled store.
page_times() {
  local label=$1 q
  for q in "/v1/audit?limit=100" "/v1/audit?identity=oidc://demo/w-42&limit=100" \
    "/v1/audit?issued_token=sha256:i500000" "/v1/audit?decision=deny&limit=100" "/v1/workloads?limit=100"; do
    NOTES+=("$label: GET $q with 1M events: $(admin_ms "$q") ms")
  done
}

# Latency at half of rate $2 from the paced client, with body file $3.
paced() {
  local label=$1 rate=$2 body=$3 out
  out=$("$RELEASE/examples/paced_load" "127.0.0.1:$PORT" /v1/token "$body" "$((rate / 2))" "$SECS" "$CONNS")
  NOTES+=("$label at half its rate ($((rate / 2))/s asked, $(awk '$2 == "rate_reached" { print $3 }' <<<"$out")/s sent): \
p50 $(awk '$2 == "p50_ms" { print $3 }' <<<"$out") / p99 $(awk '$2 == "p99_ms" { print $3 }' <<<"$out") / \
p99.9 $(awk '$2 == "p999_ms" { print $3 }' <<<"$out") / max $(awk '$2 == "max_ms" { print $3 }' <<<"$out") ms, \
non-200: $(awk '$2 == "not_ok" { print $3 }' <<<"$out")")
}

# What 1,000 idle keep-alive connections (each after one request) add to the RSS.
idle_connections() {
  local label=$1 before after
  before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$BROKER_PID/status")
  python3 - "$PORT" "$BROKER_PID" <<'PY' >"$WORK/idle.txt"
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
conns = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:
    s.recv(4096)
time.sleep(1)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
print(rss)
for s in conns:
    s.close()
PY
  after=$(cat "$WORK/idle.txt")
  NOTES+=("$label: 1,000 idle keep-alive connections: RSS $((before / 1024)) -> $((after / 1024)) MiB \
($(((after - before) / 1000)) KiB each)")
}

run_one() {
  local name=$1 audit=$2 cache=$3 bin=$4 label=$5 extra=$6
  local dir="$WORK/run-${#ROWS[@]}"
  write_config "$dir" "$audit" "$cache" "$bin" "$extra"
  (cd "$dir" && exec "$bin" --log-format json serve --config broker.yaml 2>broker.log) &
  BROKER_PID=$!
  if ! wait_ready; then
    echo "broker did not start for '$name' ($label):" >&2; tail -n 20 "$dir/broker.log" >&2 || true
    kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=
    ROWS+=("$name|$label|failed to start|||||||")
    return
  fi
  if [ "$extra" = store1m ]; then fill_store "$dir/data/audit.db"; fi
  local token audience=internal-api
  if [ "$extra" = aws ]; then audience=aws; fi
  token=$(curl -fs -X POST "http://127.0.0.1:$((PORT + 1))/token" -d sub=payments-api -d ttl=3600 | tr -d '\n')
  local body="grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=$audience&subject_token=$token"
  printf '%s' "$body" >"$dir/body"
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
  case $extra in
    store1m) page_times "$name ($label)" ;;
    -) if [ "$cache" = off ] && [ -n "$rate" ]; then paced "$name ($label)" "$rate" "$dir/body"; fi ;;
  esac
  if [ "$name" = "default: SQLite + JSON lines" ]; then idle_connections "$name ($label)"; fi
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
  IFS='|' read -r name audit cache extra <<<"$config"
  if ! grep -Eq -- "$ONLY" <<<"$name"; then continue; fi
  for i in "${!BINS[@]}"; do
    label=$([ "$i" = 0 ] && echo measured || echo baseline)
    step "$name ($label: ${BINS[$i]})"
    run_one "$name" "$audit" "$cache" "${BINS[$i]}" "$label" "$extra"
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
if [ "${#NOTES[@]}" -gt 0 ]; then
  echo
  printf -- '- %s\n' "${NOTES[@]}"
fi
