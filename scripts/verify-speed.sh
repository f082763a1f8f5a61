#!/usr/bin/env bash
# How fast `mqlab verify --acked` and `mqlab inspect` check a store with
# RocketMQ's default geometry (1 GiB segments, 420 MB index files) left as
# a kill would leave it (abort marker, no clean shutdown), against the
# baseline of reading the same commit-log bytes sequentially in the same
# run (the page cache is warm for both: they measure CPU and syscalls, not
# the disk).
#
#   scripts/verify-speed.sh [ROUNDS]         default 3 rounds
#   env: SECS (seconds of async-flush load that make the store, default 2),
#        MSG (message bytes, default 1024), OUT (default results/verify-speed),
#        MQLAB_DATA_PARENT (where the store goes; default the system temp dir)
#
# Writes OUT/summary.json, OUT/README.md (table with the command) and
# OUT/rounds.csv. Medians over rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${SECS:-2}
MSG=${MSG:-1024}
OUT=${OUT:-results/verify-speed}
case "$ROUNDS" in ''|*[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2 ;; esac
export CARGO_TERM_COLOR=never
cargo build --release -p mqlab >&2
BIN=$PWD/target/release/mqlab
WORK=$(mktemp -d "${MQLAB_DATA_PARENT:-${TMPDIR:-/tmp}}/mqlab-verify-speed.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
echo "verify-speed: writing a default-geometry store (async flush, ${SECS}s, ${MSG} B messages)" >&2
"$BIN" run --flush async --duration "$SECS" --warmup 0 --msg-size "$MSG" --no-baseline \
    --data-dir "$WORK/data" --ack-log "$WORK/acks.csv" --no-shutdown --out "$WORK/run" \
    > "$WORK/run.log" 2>&1
echo "round,log_bytes,acked,read_ms,verify_ms,verify_acks_ms,inspect_ms" > "$OUT/rounds.csv"
for r in $(seq 1 "$ROUNDS"); do
    echo "verify-speed: round $r/$ROUNDS" >&2
    t0=$(date +%s%N)
    cat "$WORK"/data/commitlog/* > /dev/null
    t1=$(date +%s%N)
    "$BIN" verify --data-dir "$WORK/data" --acked "$WORK/acks.csv" --json > "$WORK/verify.json"
    t2=$(date +%s%N)
    "$BIN" inspect --data-dir "$WORK/data" --json > "$WORK/inspect.json"
    t3=$(date +%s%N)
    python3 - "$WORK/verify.json" "$r" $(( (t1 - t0) / 1000000 )) $(( (t2 - t1) / 1000000 )) \
        $(( (t3 - t2) / 1000000 )) >> "$OUT/rounds.csv" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
assert v["ok"], "verify failed on the store it measures"
r, read_ms, verify_ms, inspect_ms = sys.argv[2:6]
log_bytes = v["raw_end_offset"]
print(f'{r},{log_bytes},{v["acked"]["lines"]},{read_ms},{verify_ms},{v["timings"]["acks_ms"]},{inspect_ms}')
EOF
done
python3 - "$OUT" "$ROUNDS" "$SECS" "$MSG" <<'EOF'
import csv, json, statistics, subprocess, sys
out, rounds, secs, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = list(csv.DictReader(open(f"{out}/rounds.csv")))
med = lambda k: statistics.median(float(r[k]) for r in rows)
log_mb = float(rows[0]["log_bytes"]) / 1e6
acked = int(rows[0]["acked"])
s = {
    "command": f"scripts/verify-speed.sh {rounds} (SECS={secs} MSG={msg})",
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "rounds": rounds,
    "log_mb": round(log_mb, 1),
    "acked": acked,
    "read_mb_per_s": round(log_mb / (med("read_ms") / 1e3), 1),
    "verify_mb_per_s": round(log_mb / (med("verify_ms") / 1e3), 1),
    "verify_acked_per_s": round(acked / (med("verify_ms") / 1e3)),
    "verify_ack_phase_acked_per_s": round(acked / (max(med("verify_acks_ms"), 1) / 1e3)),
    "inspect_mb_per_s": round(log_mb / (med("inspect_ms") / 1e3), 1),
}
s["verify_over_read"] = round(s["verify_mb_per_s"] / s["read_mb_per_s"], 3)
s["inspect_over_read"] = round(s["inspect_mb_per_s"] / s["read_mb_per_s"], 3)
json.dump(s, open(f"{out}/summary.json", "w"), indent=2)
with open(f"{out}/README.md", "w") as f:
    f.write(f"""# verify and inspect speed on a default-geometry store

`{s['command']}` at {s['commit']}: a store with RocketMQ's default geometry
(1 GiB segments, 420 MB index files), {s['log_mb']} MB of commit log and
{acked:,} acknowledged {msg}-byte messages, left unclean (`mqlab run
--no-shutdown`, as a kill leaves it), then {rounds} rounds of `mqlab verify
--acked` and `mqlab inspect`. Medians over rounds; the page cache is warm, so
this measures CPU and system calls, and the baseline is reading the same
commit-log files sequentially (`cat > /dev/null`) in the same round.

| what | figure | vs sequential read |
|---|--:|--:|
| sequential read of the commit log | {s['read_mb_per_s']:,.0f} MB/s | 1 |
| `verify --acked`, whole command | {s['verify_mb_per_s']:,.0f} MB/s, {s['verify_acked_per_s']:,} acked msgs/s | {s['verify_over_read']} |
| `verify --acked`, the ack checks alone | {s['verify_ack_phase_acked_per_s']:,} acked msgs/s | - |
| `inspect` | {s['inspect_mb_per_s']:,.0f} MB/s | {s['inspect_over_read']} |

Per-round figures: rounds.csv. Targets (issue 11): verify and inspect at
>= 200 MB/s of commit log, >= 500,000 acknowledged messages checked per
second.
""")
print(json.dumps(s, indent=2))
EOF
