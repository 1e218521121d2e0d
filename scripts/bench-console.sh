#!/usr/bin/env bash
# The console's latency under load: p50/p99 of the dashboard and of an account page at 20
# concurrent users (wrk), on an instance holding a synthetic, analysed tenant.
#
#   scripts/bench-console.sh [--interactions N] [--dir DIR] [--duration 30s] [--connections 20]
#
# The first run builds the instance with `rapport bench dataset` (1,000,000 interactions take a
# while: they are imported and analysed with the `off` backend); later runs reuse DIR. The baseline
# is /healthz measured the same way in the same run, so the printed ratios hold on a noisy machine.
# Needs wrk and curl (Debian packages `wrk`, `curl`).
set -euo pipefail

interactions=1000000
dir=target/bench-console
duration=30s
connections=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --interactions) interactions="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
rapport=target/release/rapport
[[ -x $rapport ]] || cargo build --release --locked
listen=127.0.0.1:9443
base="https://$listen"

# DIR holds the instance (in DIR/instance, which `bench dataset` wants new or empty), the
# analyst's password, the dataset's report and the server's log.
instance=$dir/instance
if [[ ! -e $instance/rapport.toml ]]; then
  rm -rf "$instance"
  mkdir -p "$dir"
  umask 077
  head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/password"
  $rapport bench dataset --interactions "$interactions" --dir "$instance" --listen "$listen" \
    <"$dir/password" | tee "$dir/dataset.txt"
fi
account=$(grep -o '/t/bench/accounts/[0-9A-Z]*' "$dir/dataset.txt" | head -n 1)

$rapport serve --config "$instance/rapport.toml" >"$dir/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -ksf "$base/healthz" >/dev/null && break
  sleep 0.2
done

# Sign in as the analyst: the login form's CSRF token is double-submitted with its cookie.
jar=$(mktemp)
csrf=$(curl -ks -c "$jar" "$base/login" | grep -o 'name="csrf" value="[^"]*"' | cut -d'"' -f4)
curl -ks -b "$jar" -c "$jar" -o /dev/null \
  --data-urlencode "csrf=$csrf" --data-urlencode "email=analyst@bench.example" \
  --data-urlencode "password@$dir/password" "$base/login"
cookie=$(awk '{ sub(/^#HttpOnly_/, "") } !/^#/ && NF >= 7 { printf "%s%s=%s", sep, $6, $7; sep="; " }' "$jar")
rm -f "$jar"
status=$(curl -ks -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "$base/t/bench/dashboard")
[[ $status == 200 ]] || { echo "the dashboard answered $status after signing in" >&2; exit 1; }

# One wrk run: prints "p50 p99 req/s errors" (milliseconds); fails on any non-2xx answer. wrk
# leaves requests that time out (after 2 s) or fail on the socket out of its percentiles, so they
# are counted and printed beside them.
measure() {
  local out
  out=$(wrk -t2 -c"$connections" -d"$duration" --latency -H "Cookie: $cookie" "$base$1")
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "$1: some answers were not 2xx:" >&2
    echo "$out" >&2
    exit 1
  fi
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    /Requests\/sec/ { rps = $2 }
    /Socket errors/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
    END { printf "%.1f %.1f %.0f %d\n", p50, p99, rps, errors }' <<<"$out"
}

printf '%-48s %9s %9s %9s %12s %8s\n' route p50_ms p99_ms req/s p99/baseline errors
read -r b50 b99 brps berrors < <(measure /healthz)
printf '%-48s %9s %9s %9s %12s %8s\n' "/healthz (baseline)" "$b50" "$b99" "$brps" 1.0 "$berrors"
for route in "/t/bench/dashboard" "/t/bench/dashboard?from=2026-01-01&to=2026-12-31" "$account"; do
  read -r p50 p99 rps errors < <(measure "$route")
  printf '%-48s %9s %9s %9s %12s %8s\n' "$route" "$p50" "$p99" "$rps" \
    "$(awk -v a="$p99" -v b="$b99" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')" "$errors"
done
echo "($connections connections, $duration each, $(nproc) cores; instance in $dir)"
