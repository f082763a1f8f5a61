#!/usr/bin/env bash
# What the wire costs: the same workload in process (`mqlab run`, the
# store called directly) and over loopback TCP (`mqlab run --target`
# against `mqlab broker` with the same flush strategy, sends through
# mqlab's own asynchronous client), for each flush strategy at 1 and 64
# sends in flight, 1 KiB messages. The in-process figure is the baseline
# of the same round on the same machine, so each wire figure is quoted as
# a ratio to it; configurations are interleaved round by round and the
# report quotes medians over rounds.
#
#   scripts/wire-cost.sh [ROUNDS]             default 3 rounds
#   env: SECS (measured seconds per run, default 3), INFLIGHT (default
#        "1 64"), FLUSHES (default "sync group async pool"), OUT (default
#        results/wire-cost), MQLAB_BIN (a built mqlab to use instead of
#        building target/release/mqlab)
#
# Writes OUT/summary.json, OUT/README.md and OUT/runs/<round>-<mode>-<flush>-<c>/.
# Everything on 127.0.0.1; every broker is started here and stopped here.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${SECS:-3}
INFLIGHT=${INFLIGHT:-"1 64"}
FLUSHES=${FLUSHES:-"sync group async pool"}
OUT=${OUT:-results/wire-cost}
case "$ROUNDS" in ''|*[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2 ;; esac
export CARGO_TERM_COLOR=never
if [ -n "${MQLAB_BIN:-}" ]; then
    BIN=$(realpath "$MQLAB_BIN")
else
    cargo build --release -p mqlab >&2
    BIN=$PWD/target/release/mqlab
fi
rm -rf "$OUT/runs"
mkdir -p "$OUT/runs"
SCRATCH=$(mktemp -d)
BROKER_PID=
cleanup() {
    [ -n "$BROKER_PID" ] && kill -TERM "$BROKER_PID" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# Starts `mqlab broker --flush $1` on ports the system chooses; sets NS.
start_broker() {
    local log="$SCRATCH/broker.out"
    # Removed here, not only truncated by the redirect below: the child
    # may not have truncated it yet when the loop first reads it.
    rm -rf "$SCRATCH/data" "$log"
    "$BIN" broker --data-dir "$SCRATCH/data" --listen 127.0.0.1:0 \
        --namesrv-listen 127.0.0.1:0 --flush "$1" --duration 600 \
        --status-secs 0 > "$log" 2> "$SCRATCH/broker.err" &
    BROKER_PID=$!
    NS=
    for _ in $(seq 1 200); do
        NS=$(sed -n 's/^mqlab namesrv (embedded) listening on \([0-9.:]*\).*/\1/p' "$log" 2>/dev/null || true)
        [ -n "$NS" ] && return 0
        sleep 0.05
    done
    echo "mqlab broker did not start:" >&2; cat "$log" "$SCRATCH/broker.err" >&2
    exit 1
}

stop_broker() {
    kill -TERM "$BROKER_PID"
    wait "$BROKER_PID" || { echo "mqlab broker exited non-zero" >&2; exit 1; }
    BROKER_PID=
}

COMMON=(--producers 1 --msg-size 1024 --duration "$SECS" --warmup 1 --no-baseline)
for r in $(seq 1 "$ROUNDS"); do
    for f in $FLUSHES; do
        for c in $INFLIGHT; do
            echo "round $r/$ROUNDS: $f, $c in flight" >&2
            "$BIN" run "${COMMON[@]}" --flush "$f" --inflight "$c" \
                --out "$OUT/runs/$r-inproc-$f-$c" > /dev/null
            start_broker "$f"
            "$BIN" run "${COMMON[@]}" --target "rocketmq://$NS" --inflight "$c" \
                --consume false --status-secs 0 \
                --out "$OUT/runs/$r-wire-$f-$c" > /dev/null
            stop_broker
        done
    done
done

python3 - "$OUT" "$ROUNDS" "$SECS" "$INFLIGHT" "$FLUSHES" <<'EOF'
import json, os, statistics, sys, subprocess, platform
out, rounds, secs, inflight, flushes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(), sys.argv[5].split()
def load(r, mode, f, c):
    with open(os.path.join(out, "runs", f"{r}-{mode}-{f}-{c}", "summary.json")) as fh:
        return json.load(fh)
rows = []
for f in flushes:
    for c in inflight:
        row = {"flush": f, "inflight": int(c), "msg_bytes": 1024, "rounds": rounds}
        for mode in ("inproc", "wire"):
            s = [load(r, mode, f, c) for r in range(1, rounds + 1)]
            row[f"{mode}_msgs_per_s"] = statistics.median(x["throughput_msgs_per_s"] for x in s)
            row[f"{mode}_p50_us"] = statistics.median(x["ack_latency_us"]["p50"] for x in s)
            row[f"{mode}_p99_us"] = statistics.median(x["ack_latency_us"]["p99"] for x in s)
            row[f"{mode}_errors"] = sum(sum((x.get("errors") or {}).values()) if isinstance(x.get("errors"), dict) else 0 for x in s)
        # Ratio per round (same round, same machine state), then the median.
        per_round = [load(r, "wire", f, c)["throughput_msgs_per_s"] / max(load(r, "inproc", f, c)["throughput_msgs_per_s"], 1e-9)
                     for r in range(1, rounds + 1)]
        row["wire_over_inproc"] = round(statistics.median(per_round), 3)
        rows.append(row)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
summary = {
    "command": f"scripts/wire-cost.sh {rounds} (SECS={secs})",
    "commit": commit,
    "machine": f"{platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}",
    "configs": rows,
}
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=2)
lines = ["| flush | in flight | in process msg/s | over TCP msg/s | TCP / in process | in process p50 / p99 us | TCP p50 / p99 us |", "|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['flush']} | {r['inflight']} | {r['inproc_msgs_per_s']:.0f} | {r['wire_msgs_per_s']:.0f} | {r['wire_over_inproc']:.2f} | {r['inproc_p50_us']:.0f} / {r['inproc_p99_us']:.0f} | {r['wire_p50_us']:.0f} / {r['wire_p99_us']:.0f} |")
with open(os.path.join(out, "table.md"), "w") as fh:
    fh.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
