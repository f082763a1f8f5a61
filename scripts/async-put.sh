#!/usr/bin/env bash
# Issue 15's in-process target for the asynchronous put: with put_async at
# 1,024 in flight, durable 1 KiB throughput >= 0.5 x the device's
# fdatasync bandwidth at the batch size reached.
#
# Runs `cargo bench -p mqlab-bench --bench async_put` (bench/benches/async_put.rs):
# group commit (pwrite, default settings), 1 KiB messages, Store::put_async
# with 16 / 256 / 1024 in flight (one submitting thread) and blocking
# Store::put with as many threads, each point on a fresh store whose
# commit-log fdatasyncs and written bytes are counted; right after each
# point the device does pwrite+fdatasync of exactly the mean bytes per
# fdatasync that point reached, in the same directory. Points interleave
# (the order rotates each round); the summary quotes medians over rounds.
#
#   scripts/async-put.sh                       the full run (3 rounds x 6 points
#                                              x (1 s warmup + 3 s + 2 s device) ~ 2 min)
#   ASYNC_PUT_ROUNDS=5 scripts/async-put.sh    more rounds
# Environment (defaults in brackets):
#   ASYNC_PUT_ROUNDS [3]  ASYNC_PUT_SECS [3]  ASYNC_PUT_WARMUP [1]
#   ASYNC_PUT_DEVICE_SECS [2]  ASYNC_PUT_CONC ['16 256 1024']
#   ASYNC_PUT_MODES ['async blocking']  ASYNC_PUT_BACKENDS [pwrite] (add uring)
#   ASYNC_PUT_SUBMITTERS [1]  ASYNC_PUT_MSG_BYTES [1024]
#   ASYNC_PUT_WARM  1: segments written with zeros before use
#                   (StoreConfig::warm_segments) [0]
#   ASYNC_PUT_DIR   scratch directory on the disk measured [/work/tmp-bench/async-put]
#   ASYNC_PUT_OUT   output folder [results/async-put]
#   ASYNC_PUT_NOTE  a line put at the top of OUT/README.md (e.g. that a run
#                   was a smoke test on a busy machine) [none]
#
# Writes OUT/summary.json (settings, rows: medians per put x backend x in
# flight, comparisons: put_async / blocking), OUT/runs.jsonl (every point of
# every round), OUT/table.md, OUT/table.csv, OUT/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ASYNC_PUT_ROUNDS:-3}"
SECS="${ASYNC_PUT_SECS:-3}"
WARMUP="${ASYNC_PUT_WARMUP:-1}"
DEVICE_SECS="${ASYNC_PUT_DEVICE_SECS:-2}"
CONC="${ASYNC_PUT_CONC:-16 256 1024}"
MODES="${ASYNC_PUT_MODES:-async blocking}"
BACKENDS="${ASYNC_PUT_BACKENDS:-pwrite}"
SUBMITTERS="${ASYNC_PUT_SUBMITTERS:-1}"
MSG="${ASYNC_PUT_MSG_BYTES:-1024}"
WARM="${ASYNC_PUT_WARM:-0}"
DATA="${ASYNC_PUT_DIR:-/work/tmp-bench/async-put}"
OUT="${ASYNC_PUT_OUT:-$ROOT/results/async-put}"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac

mkdir -p "$DATA" "$OUT"
rm -f "$OUT/runs.jsonl" "$OUT/summary.json" "$OUT/table.md" "$OUT/table.csv"
COMMAND="ASYNC_PUT_ROUNDS=$ROUNDS ASYNC_PUT_SECS=$SECS ASYNC_PUT_WARMUP=$WARMUP ASYNC_PUT_DEVICE_SECS=$DEVICE_SECS ASYNC_PUT_CONC='$CONC' ASYNC_PUT_MODES='$MODES' ASYNC_PUT_BACKENDS='$BACKENDS' ASYNC_PUT_SUBMITTERS=$SUBMITTERS ASYNC_PUT_MSG_BYTES=$MSG ASYNC_PUT_WARM=$WARM scripts/async-put.sh"
export CARGO_TERM_COLOR=never
nice -n 10 cargo bench -p mqlab-bench --bench async_put --no-run >&2
START_LOAD="$(cat /proc/loadavg)"
MQLAB_BENCH_DIR="$DATA" MQLAB_BENCH_OUT="$OUT" \
    MQLAB_ASYNC_PUT_ROUNDS="$ROUNDS" MQLAB_ASYNC_PUT_SECS="$SECS" \
    MQLAB_ASYNC_PUT_WARMUP="$WARMUP" MQLAB_ASYNC_PUT_DEVICE_SECS="$DEVICE_SECS" \
    MQLAB_ASYNC_PUT_CONC="$CONC" MQLAB_ASYNC_PUT_MODES="$MODES" \
    MQLAB_ASYNC_PUT_BACKENDS="$BACKENDS" MQLAB_ASYNC_PUT_SUBMITTERS="$SUBMITTERS" \
    MQLAB_ASYNC_PUT_MSG_BYTES="$MSG" MQLAB_ASYNC_PUT_WARM="$WARM" \
    cargo bench -p mqlab-bench --bench async_put 2>&1 | tee "$OUT/output.txt" >&2
END_LOAD="$(cat /proc/loadavg)"

{
    echo "# put_async under group commit vs the device's fdatasync bandwidth (issue 15)"
    echo
    if [ -n "${ASYNC_PUT_NOTE:-}" ]; then printf '**%s**\n\n' "$ASYNC_PUT_NOTE"; fi
    cat <<EOF
Command: \`$COMMAND\`
(\`cargo bench -p mqlab-bench --bench async_put\`, bench/benches/async_put.rs).

Date $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) cores, kernel $(uname -r),
data on $(stat -f -c %T "$DATA") ($DATA), tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine bench || echo ' + uncommitted changes').
Load average at start: $START_LOAD; at end: $END_LOAD.

Each point: a fresh store (flush group, backend as listed, default
settings: one write per batch, no gather wait), ${MSG}-byte bodies
(topic Bench, 8 queues), ${WARMUP} s warmup then ${SECS} s measured, with
\`put_async\` (one submitting thread keeping the window full, woken by the
completions) or blocking \`put\` (one thread per put in flight). An
environment wrapping the backend counts the commit log's fdatasyncs and
written bytes: *bytes per fdatasync* is the batch size reached in the
measured window. Right after the point, in the same directory, the device
does pwrite+fdatasync of exactly that many bytes, repeated for
${DEVICE_SECS} s (\`mqlab_engine::device::pwrite_fdatasync\`: queue depth 1,
sequential offsets in a preallocated file). *ratio* = commit-log MB/s
made durable / device MB/s at that batch (body-only bytes: \`body_ratio\`
in summary.json). The target row: put_async at 1,024 in flight, ratio >= 0.5.
Rows are medians over ${ROUNDS} rounds (the ratio is the median of the
per-round ratios); points interleave, the order rotating each round.

EOF
    cat "$OUT/table.md"
    cat <<EOF

Files: \`summary.json\` (settings, rows, comparisons, load average per
round), \`runs.jsonl\` (every point of every round), \`table.csv\`,
\`output.txt\` (the bench's output).
EOF
} >"$OUT/README.md"
echo "async-put: $OUT/README.md" >&2
