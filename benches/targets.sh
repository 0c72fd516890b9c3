#!/usr/bin/env bash
# Many targets in one process: N targets (default 50) from one --config.file, all polling the
# simulator in another process, every 10 s for SECONDS (default 120) after their first polls.
# Prints the exporter's CPU per poll round (every target polled once), its memory, the rows per
# poll, and the time and size of a scrape of /metrics. Not part of CI.
#
#   cargo build --release && benches/targets.sh [TARGETS] [SECONDS] [CALLS_PER_MINUTE]
#
# The simulator's window is the day so far (UTC): 20 calls a minute at peak gives about 10k rows
# per target in the early afternoon; the script prints the rows it measured.
set -euo pipefail
targets=${1:-50}
seconds=${2:-120}
rate=${3:-20}
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/crocodial-exporter
dir=$(mktemp -d)
trap 'kill $sim $exp 2>/dev/null || true; rm -rf "$dir"' EXIT

"$bin" simulate --listen 127.0.0.1:19841 --timezone UTC --sim.calls-per-minute "$rate" \
  >"$dir/sim.log" 2>&1 &
sim=$!
echo demo >"$dir/password"
{
  echo "targets:"
  for ((i = 1; i <= targets; i++)); do
    printf '  - name: t%02d\n    api: {url: http://127.0.0.1:19841/goAPIv2/goReports/goAPI.php, user: demo, password_file: %s, timezone: UTC}\n' "$i" "$dir/password"
  done
} >"$dir/targets.yml"
sleep 1
"$bin" --config.file "$dir/targets.yml" --poll.interval 10s --state.file "$dir/state.db" \
  --web.listen-address 127.0.0.1:19842 >"$dir/exporter.log" 2>&1 &
exp=$!

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$exp/stat"; }
polls() { curl -s http://127.0.0.1:19842/metrics | awk '/^crocodial_polls_total/ {s += $2} END {print s}'; }
# The first polls mark each window as seen; measure from after them.
until curl -sf http://127.0.0.1:19842/-/ready >/dev/null; do sleep 1; done
sleep 5
echo "peak RSS after the first polls: $(awk '/VmHWM/ {print $2}' "/proc/$exp/status") kB"
echo 5 >"/proc/$exp/clear_refs" # resets the peak RSS (VmHWM)
cpu0=$(cpu)
polls0=$(polls)
sleep "$seconds"
cpu1=$(cpu)
polls1=$(polls)
rounds=$(awk -v p0="$polls0" -v p1="$polls1" -v n="$targets" 'BEGIN {print (p1 - p0) / n}')
rows=$(curl -s http://127.0.0.1:19842/metrics |
  awk '/^crocodial_cdr_rows_total/ {s += $2} /^crocodial_polls_total/ {p += $2} END {printf "%.0f", s / p}')
echo "targets: $targets, rows per poll: $rows, poll rounds: $rounds in $seconds s"
awk -v c0="$cpu0" -v c1="$cpu1" -v t="$ticks" -v r="$rounds" -v s="$seconds" \
  'BEGIN {printf "CPU: %.3f s per poll round (%.1f%% of one core)\n", (c1 - c0) / t / r, 100 * (c1 - c0) / t / s}'
echo "RSS: $(awk '/VmRSS/ {print $2}' "/proc/$exp/status") kB, peak $(awk '/VmHWM/ {print $2}' "/proc/$exp/status") kB"
for _ in 1 2; do curl -s -o /dev/null http://127.0.0.1:19842/metrics; done
curl -s -o /dev/null -w "scrape of /metrics: %{time_total} s, %{size_download} bytes, " \
  http://127.0.0.1:19842/metrics
curl -s http://127.0.0.1:19842/metrics | grep -vc '^#' | sed 's/$/ series/'
