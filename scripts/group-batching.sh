#!/usr/bin/env bash
# Group commit with one write per batch (the default, `group_batch_writes`)
# against one write per put (RocketMQ's GroupCommitService), on pwrite and
# io_uring, at 16 and 256 puts in flight, 1 KiB messages. Every run is a
# `mqlab run` that measures the device in its own data directory first, so
# each figure comes with its own-run device ratio; configurations are
# interleaved round by round and the report quotes medians over rounds.
#
#   scripts/group-batching.sh [ROUNDS]        default 3 rounds
#   env: SECS (measured seconds per run, default 3), OUT (default
#        results/group-batching), MQLAB_DATA_PARENT (where the scratch data
#        directories go; default the system temp dir)
#
# Writes OUT/summary.json, OUT/README.md and OUT/runs/<round>-<config>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${SECS:-3}
OUT=${OUT:-results/group-batching}
case "$ROUNDS" in ''|*[!0-9]*) echo "ROUNDS must be a number" >&2; exit 2 ;; esac
export CARGO_TERM_COLOR=never
cargo build --release -p mqlab >&2
BIN=target/release/mqlab
rm -rf "$OUT/runs"
mkdir -p "$OUT/runs"
COMMAND="scripts/group-batching.sh $ROUNDS (SECS=$SECS)"
for r in $(seq 1 "$ROUNDS"); do
    for backend in pwrite uring; do
        for c in 16 256; do
            for batch in true false; do
                name="r$r-$backend-c$c-$([ $batch = true ] && echo batched || echo unbatched)"
                echo "group-batching: round $r/$ROUNDS $name" >&2
                # 16 producers x (c / 16) outstanding puts each.
                if ! "$BIN" run --flush group --backend "$backend" --producers 16 \
                    --inflight $((c / 16)) --msg-size 1024 --duration "$SECS" --warmup 0.5 \
                    --group-batch-writes "$batch" --name "$name" \
                    --out "$OUT/runs/$name" > "$OUT/runs/$name.log" 2>&1; then
                    echo "group-batching: $name failed (see $OUT/runs/$name.log)" >&2
                fi
            done
        done
    done
done

python3 - "$OUT" "$COMMAND" <<'PY'
import json, os, statistics, sys, platform
out, command = sys.argv[1:]
runs = {}
for name in sorted(os.listdir(os.path.join(out, "runs"))):
    p = os.path.join(out, "runs", name, "summary.json")
    if not os.path.isfile(p):
        continue
    s = json.load(open(p))
    cfg = name.split("-", 1)[1]
    b = s.get("baseline") or {}
    runs.setdefault(cfg, []).append({
        "msgs_per_s": s["throughput_msgs_per_s"],
        "p50_us": s["ack_latency_us"]["p50"],
        "p99_us": s["ack_latency_us"]["p99"],
        "device_fdatasync_per_s": b.get("fdatasync_per_s"),
        "device_fdatasync_p99_us": b.get("fdatasync_p99_us"),
        "msgs_per_fdatasync": (s.get("ratios") or {}).get("msgs_per_fdatasync"),
    })
med = lambda xs: statistics.median(xs) if xs else None
rows = {}
for cfg, rs in runs.items():
    # Per-run ratio to that run's device, then the median of the ratios.
    r = {k: med([x[k] for x in rs if x[k] is not None]) for k in rs[0]}
    r["rounds"] = len(rs)
    r["ratio_to_device_fdatasync"] = med([x["msgs_per_s"] / x["device_fdatasync_per_s"]
                                          for x in rs if x["device_fdatasync_per_s"]])
    r["p99_vs_device_p99"] = med([x["p99_us"] / x["device_fdatasync_p99_us"]
                                  for x in rs if x["device_fdatasync_p99_us"]])
    rows[cfg] = r
def ratio(a, b, key="msgs_per_s"):
    return round(rows[a][key] / rows[b][key], 2) if a in rows and b in rows and rows[b][key] else None
comparisons = {}
for backend in ("pwrite", "uring"):
    for c in (16, 256):
        comparisons[f"{backend} C={c}: batched / unbatched"] = ratio(
            f"{backend}-c{c}-batched", f"{backend}-c{c}-unbatched")
for mode in ("batched", "unbatched"):
    for c in (16, 256):
        comparisons[f"uring / pwrite, {mode}, C={c}"] = ratio(f"uring-c{c}-{mode}", f"pwrite-c{c}-{mode}")
summary = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
           "configs": rows, "comparisons": comparisons}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
fmt = lambda v, d=0: "-" if v is None else (f"{v:,.{d}f}")
table = "\n".join(
    f"| {cfg} | {r['rounds']} | {fmt(r['msgs_per_s'])} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} | "
    f"{fmt(r['msgs_per_fdatasync'], 1)} | {fmt(r['device_fdatasync_per_s'])} | {fmt(r['ratio_to_device_fdatasync'], 2)} | "
    f"{fmt(r['p99_vs_device_p99'], 2)} |" for cfg, r in sorted(rows.items()))
comp = "\n".join(f"| {k} | {fmt(v, 2)} |" for k, v in comparisons.items())
md = f"""# Group commit: one write per batch vs one write per put

Command: `{command}` on {summary['machine']}. Every run is `mqlab run --flush group --producers 16
--inflight C/16 --msg-size 1024` and measured the device (4 KiB pwrite+fdatasync, qd1) in its own data
directory just before; configurations interleaved round by round; medians over rounds (ratios are
medians of per-run ratios). Raw runs: `runs/`.

| config | rounds | msgs/s | p50 us | p99 us | msgs per fdatasync | device fdatasync/s | msgs/s / device fdatasync/s | p99 / device p99 |
|---|--:|--:|--:|--:|--:|--:|--:|--:|
{table}

| comparison (same rounds) | ratio of msgs/s |
|---|--:|
{comp}
"""
open(os.path.join(out, "README.md"), "w").write(md)
print(md)
PY
