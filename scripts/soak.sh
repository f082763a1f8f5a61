#!/usr/bin/env bash
# Soak (issue 16): `mqlab broker` (release) as a process under many
# producer and consumer connections over loopback for a while, then every
# consumer group drains its backlog. Runs workloads/tests/soak_quick.rs
# (release, nice -n 10) with its MQLAB_SOAK_* variables and writes
# OUT/summary.json (throughput, send and end-to-end latency percentiles,
# the broker's RSS every second, what was acked and consumed), OUT/rss.csv
# and OUT/soak.log. Self-stopping: the broker exits after the run's
# duration + drain + 300 s at the latest, and the run is killed after
# duration + drain + 900 s.
#
#   scripts/soak.sh               full: 1,000 producer + 1,000 consumer
#                                 connections, 10 minutes, group flush
#   scripts/soak.sh --secs 60     the same for 60 s
#   options: --producers N (1000) --consumers N (1000) --queues N (50;
#     groups = consumers / queues, each reads every queue) --rate N (2000
#     msgs/s over all producers) --secs N (600) --drain-secs N (120)
#     --flush sync|group|async|pool (group) --long-poll-ms N (1000; 0
#     polls every 50 ms) --seed N --rss-bound-mib N (2048) --out DIR
#     (results/soak)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PRODUCERS=1000; CONSUMERS=1000; QUEUES=50; RATE=2000; SECS=600; DRAIN=120
FLUSH=group; LONG_POLL=1000; SEED=; RSS_BOUND=2048; OUT="$ROOT/results/soak"
while [ $# -gt 0 ]; do
    case "$1" in
        --producers) PRODUCERS=$2; shift 2 ;;
        --consumers) CONSUMERS=$2; shift 2 ;;
        --queues) QUEUES=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --drain-secs) DRAIN=$2; shift 2 ;;
        --flush) FLUSH=$2; shift 2 ;;
        --long-poll-ms) LONG_POLL=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --rss-bound-mib) RSS_BOUND=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "soak: unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export CARGO_TERM_COLOR=never
echo "soak: building (release)" >&2
nice -n 10 cargo test --release -p mqlab --test soak_quick --no-run >&2 || exit 1
echo "soak: $PRODUCERS producers + $CONSUMERS consumers, $RATE msgs/s, $SECS s, $FLUSH flush" >&2
env MQLAB_SOAK_PRODUCERS="$PRODUCERS" MQLAB_SOAK_CONSUMERS="$CONSUMERS" \
    MQLAB_SOAK_QUEUES="$QUEUES" MQLAB_SOAK_RATE="$RATE" MQLAB_SOAK_SECS="$SECS" \
    MQLAB_SOAK_DRAIN_SECS="$DRAIN" MQLAB_SOAK_FLUSH="$FLUSH" \
    MQLAB_SOAK_LONG_POLL_MS="$LONG_POLL" MQLAB_SOAK_RSS_BOUND_MIB="$RSS_BOUND" \
    ${SEED:+MQLAB_SOAK_SEED=$SEED} MQLAB_SOAK_OUT="$OUT" \
    timeout $((SECS + DRAIN + 900)) nice -n 10 \
    cargo test --release -p mqlab --test soak_quick -- --nocapture --test-threads=1 \
    > "$OUT/soak.log" 2>&1
RC=$?
python3 - "$OUT" "$RC" <<'PY'
import json, os, sys
out, rc = sys.argv[1], int(sys.argv[2])
p = os.path.join(out, "summary.json")
if not os.path.exists(p):
    print("soak: no summary (exit %d); see %s" % (rc, os.path.join(out, "soak.log")))
    sys.exit(0)
s = json.load(open(p))
s["command_exit"] = rc
s["passed"] = rc == 0
json.dump(s, open(p, "w"), indent=2)
l, e = s["send_latency_us"], s["end_to_end_latency_ms"]
print(json.dumps({
    "passed": s["passed"], "connections": s["connections"], "acked": s["acked"],
    "send_tps": round(s["send_tps"]), "busy_retries": s["busy_retries"], "errors": s["errors"],
    "send_p50_us": l["p50"], "send_p99_us": l["p99"], "send_max_us": l["max"],
    "e2e_p50_ms": e["p50"], "e2e_p99_ms": e["p99"], "drained": s["drained"],
    "drain_s": round(s["drain_s"], 1), "acked_not_consumed": s["acked_not_consumed"],
    "rss_max_mib": s["rss_max_bytes"] >> 20, "rss_anon_max_mib": s.get("rss_anon_max_bytes", 0) >> 20,
    "problems": s["problems"][:5]}, indent=1))
PY
exit $RC
