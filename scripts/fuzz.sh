#!/usr/bin/env bash
# Runs every cargo-fuzz target of engine/fuzz (the store's decoders) and
# protocol/fuzz (the wire's decoders: frames, both header serializations,
# the request headers, heartbeat/route/register/batch bodies, the HA
# streams) under libFuzzer, two at a time on two cores, and writes a JSON
# summary: executions, new corpus entries and crashes per target, and the
# fewest executions of any target.
#
#   scripts/fuzz.sh [--secs N] [--execs N] [--crate engine|protocol|all]
#                   [--out FILE] [TARGET...]
#
# --secs N: stop each target after N seconds (default 60 without --execs).
# --execs N: stop each target after N executions (libFuzzer -runs=N; the
#   issue-16 full run is --execs 1000000 --crate protocol); with both,
#   whichever comes first.
# Targets: engine: record_decode cq_units index_file checkpoint open_store
# (bodies in engine/fuzz/src/targets.rs); protocol: frame header_json
# header_binary headers heartbeat route register batch ha_report
# ha_transfer (bodies in protocol/fuzz/src/targets.rs). Seeds are checked in
# under <crate>/fuzz/seeds/<target>/ (protocol's come from real client
# captures, see protocol/fuzz/README.md); the growing corpus goes to
# <crate>/fuzz/corpus/<target>/ and crashes to <crate>/fuzz/artifacts/<target>/
# (both ignored by git). Replay a crash:
#   cd <crate>/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, sancov);
# RUSTC_BOOTSTRAP=1 enables them on the stable toolchain. cargo-fuzz is
# installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECS=
EXECS=
CRATE=all
OUT="$ROOT/results/reliability/fuzz.json"
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS=$2; shift 2 ;;
        --execs) EXECS=$2; shift 2 ;;
        --crate) CRATE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
if [ -z "$SECS" ] && [ -z "$EXECS" ]; then
    SECS=60
fi
ENGINE_TARGETS=(record_decode cq_units index_file checkpoint open_store)
PROTOCOL_TARGETS=(frame header_json header_binary headers heartbeat route register batch ha_report ha_transfer)
if [ ${#TARGETS[@]} -eq 0 ]; then
    case "$CRATE" in
        engine) TARGETS=("${ENGINE_TARGETS[@]}") ;;
        protocol) TARGETS=("${PROTOCOL_TARGETS[@]}") ;;
        all) TARGETS=("${ENGINE_TARGETS[@]}" "${PROTOCOL_TARGETS[@]}") ;;
        *) echo "fuzz: --crate engine, protocol or all" >&2; exit 2 ;;
    esac
fi
crate_of() {
    local t
    for t in "${PROTOCOL_TARGETS[@]}"; do [ "$t" = "$1" ] && { echo protocol; return; }; done
    for t in "${ENGINE_TARGETS[@]}"; do [ "$t" = "$1" ] && { echo engine; return; }; done
    echo "fuzz: unknown target $1" >&2
    exit 2
}
CRATES=()
for t in "${TARGETS[@]}"; do
    c=$(crate_of "$t")
    case " ${CRATES[*]} " in *" $c "*) ;; *) CRATES+=("$c") ;; esac
done

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    nice -n 10 cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for c in "${CRATES[@]}"; do
    echo "fuzz: building $c/fuzz targets (release, address sanitizer)" >&2
    (cd "$ROOT/$c/fuzz" && nice -n 10 cargo fuzz build -O >&2)
done
LOGS="$ROOT/target/fuzz-logs"
mkdir -p "$LOGS"
LIMITS=()
[ -n "$SECS" ] && LIMITS+=(-max_total_time="$SECS")
[ -n "$EXECS" ] && LIMITS+=(-runs="$EXECS")

run_target() {
    local t=$1
    local dir
    dir="$ROOT/$(crate_of "$t")/fuzz"
    cd "$dir"
    mkdir -p "corpus/$t" "artifacts/$t"
    ls "artifacts/$t" > "$LOGS/$t.before" 2>/dev/null || true
    local t0
    t0=$(date +%s)
    # -timeout: an input running 10 s is a hang (reported as a crash);
    # -rss_limit_mb: the store on the simulator keeps files in memory.
    nice -n 10 cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        "${LIMITS[@]}" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 > "$LOGS/$t.log" 2>&1 || true
    echo $(( $(date +%s) - t0 )) > "$LOGS/$t.secs"
    ls "artifacts/$t" > "$LOGS/$t.after" 2>/dev/null || true
    echo "fuzz: $t done: $(grep -h 'stat::number_of_executed_units' "$LOGS/$t.log" | awk '{print $2}') execs in $(cat "$LOGS/$t.secs") s" >&2
}

# Two at a time: the machine has two cores.
running=0
for t in "${TARGETS[@]}"; do
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge 2 ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

mkdir -p "$(dirname "$OUT")"
PROTO=" ${PROTOCOL_TARGETS[*]} "
python3 - "$LOGS" "$OUT" "${SECS:-0}" "${EXECS:-0}" "$PROTO" "${TARGETS[@]}" <<'PY'
import json, os, re, sys
logs, out, secs, execs_cap, proto, targets = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                              int(sys.argv[4]), sys.argv[5].split(), sys.argv[6:])
res = {"tool": "cargo-fuzz (libFuzzer, address sanitizer, RUSTC_BOOTSTRAP=1)",
       "seconds_per_target": secs, "execs_per_target_cap": execs_cap,
       "targets": {}, "execs": 0, "crashes_new": 0}
for t in targets:
    text = open(os.path.join(logs, t + ".log"), errors="replace").read()
    def stat(name):
        m = re.search(r"stat::%s:\s+(\d+)" % name, text)
        return int(m.group(1)) if m else 0
    def names(suffix):
        try:
            return set(open(os.path.join(logs, t + suffix)).read().split())
        except OSError:
            return set()
    new = sorted(names(".after") - names(".before"))
    try:
        wall = int(open(os.path.join(logs, t + ".secs")).read())
    except (OSError, ValueError):
        wall = 0
    res["targets"][t] = {
        "crate": "protocol" if t in proto else "engine",
        "wall_s": wall,
        "execs": stat("number_of_executed_units"),
        "execs_per_s": stat("average_exec_per_sec"),
        "new_corpus_units": stat("new_units_added"),
        "peak_rss_mb": stat("peak_rss_mb"),
        "new_artifacts": new,
        "log": os.path.join(logs, t + ".log"),
    }
    res["execs"] += res["targets"][t]["execs"]
    res["crashes_new"] += len(new)
res["min_execs_per_target"] = min((v["execs"] for v in res["targets"].values()), default=0)
for c in ("engine", "protocol"):
    ts = [v for v in res["targets"].values() if v["crate"] == c]
    if ts:
        res[c] = {"targets": len(ts), "execs": sum(v["execs"] for v in ts),
                  "min_execs_per_target": min(v["execs"] for v in ts),
                  "crashes_new": sum(len(v["new_artifacts"]) for v in ts),
                  "wall_s_max": max(v["wall_s"] for v in ts)}
json.dump(res, open(out, "w"), indent=2)
print(json.dumps({k: res[k] for k in ("execs", "min_execs_per_target", "crashes_new")}))
PY
