#!/usr/bin/env bash
# Scale figure: one exporter polling a large window every 5 s for 5 minutes, against the
# simulator in another process; prints CPU share and RSS. Not part of CI.
#
#   cargo build --release && benches/scale.sh [CALLS_PER_MINUTE] [SECONDS]
#
# The window grows through the day: 370 calls a minute at peak gives about 200k rows by mid
# afternoon (UTC), 525 about 280k.
set -euo pipefail
rate=${1:-370}
seconds=${2:-300}
bin=$(cd "$(dirname "$0")/.." && pwd)/target/release/crocodial-exporter
dir=$(mktemp -d)
trap 'kill $sim $exp 2>/dev/null || true; rm -rf "$dir"' EXIT

"$bin" simulate --listen 127.0.0.1:19839 --timezone UTC --sim.calls-per-minute "$rate" \
  >"$dir/sim.log" 2>&1 &
sim=$!
sleep 1
CROCODIAL_API_PASSWORD=demo "$bin" \
  --api.url http://127.0.0.1:19839/goAPIv2/goReports/goAPI.php --api.user demo \
  --api.timezone UTC --poll.interval 5s --state.file "$dir/state.db" \
  --web.listen-address 127.0.0.1:19840 >"$dir/exporter.log" 2>&1 &
exp=$!

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$exp/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$exp/status"; }
# The first poll marks the whole window as seen; measure from after it.
sleep 10
echo "peak RSS of the first poll: $(awk '/VmHWM/ {print $2}' "/proc/$exp/status") kB"
echo 5 >"/proc/$exp/clear_refs" # resets the peak RSS (VmHWM)
cpu0=$(cpu)
t0=$(date +%s)
echo "seconds  rss_kB"
for ((i = 0; i < seconds / 10; i++)); do
  sleep 10
  echo "$(($(date +%s) - t0))  $(rss)"
done
cpu1=$(cpu)
t1=$(date +%s)
echo "cpu: $((cpu1 - cpu0)) ticks of $ticks/s over $((t1 - t0)) s: $(((cpu1 - cpu0) * 1000 / ticks / (t1 - t0)))‰ of one core"
echo "peak RSS during polls: $(awk '/VmHWM/ {print $2}' "/proc/$exp/status") kB"
curl -s 127.0.0.1:19840/metrics |
  grep -E '^crocodial_(polls_total|api_response_bytes|dedup_entries|cdr_rows_total)'
