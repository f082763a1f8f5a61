#!/usr/bin/env bash
# Smoke-runs every cargo-fuzz target of engine/fuzz under libFuzzer
# (60 s each by default, two at a time on two cores) and writes a JSON
# summary: executions, new corpus entries and crashes per target.
#
#   scripts/fuzz.sh [--secs N] [--out FILE] [TARGET...]
#
# Targets: record_decode cq_units index_file checkpoint open_store (the
# bodies are in engine/fuzz/src/targets.rs). Seeds are checked in under
# engine/fuzz/seeds/<target>/; the growing corpus goes to
# engine/fuzz/corpus/<target>/ and crashes to engine/fuzz/artifacts/<target>/
# (both ignored by git). Replay a crash:
#   cd engine/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, sancov);
# RUSTC_BOOTSTRAP=1 enables them on the stable toolchain. cargo-fuzz is
# installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECS=60
OUT="$ROOT/results/reliability/fuzz.json"
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(record_decode cq_units index_file checkpoint open_store)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    nice -n 10 cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cd "$ROOT/engine/fuzz"
echo "fuzz: building targets (release, address sanitizer)" >&2
nice -n 10 cargo fuzz build -O >&2
LOGS="$ROOT/target/fuzz-logs"
mkdir -p "$LOGS"

run_target() {
    local t=$1
    mkdir -p "corpus/$t" "artifacts/$t"
    ls "artifacts/$t" > "$LOGS/$t.before" 2>/dev/null || true
    # -timeout: an input running 10 s is a hang (reported as a crash);
    # -rss_limit_mb: the store on the simulator keeps files in memory.
    nice -n 10 cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 > "$LOGS/$t.log" 2>&1 || true
    ls "artifacts/$t" > "$LOGS/$t.after" 2>/dev/null || true
    echo "fuzz: $t done: $(grep -h 'stat::number_of_executed_units' "$LOGS/$t.log" | awk '{print $2}') execs" >&2
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
python3 - "$LOGS" "$OUT" "$SECS" "${TARGETS[@]}" <<'PY'
import json, os, re, sys
logs, out, secs, targets = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
res = {"tool": "cargo-fuzz (libFuzzer, address sanitizer, RUSTC_BOOTSTRAP=1)",
       "seconds_per_target": secs, "targets": {}, "execs": 0, "crashes_new": 0}
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
    res["targets"][t] = {
        "execs": stat("number_of_executed_units"),
        "execs_per_s": stat("average_exec_per_sec"),
        "new_corpus_units": stat("new_units_added"),
        "peak_rss_mb": stat("peak_rss_mb"),
        "new_artifacts": new,
        "log": os.path.join(logs, t + ".log"),
    }
    res["execs"] += res["targets"][t]["execs"]
    res["crashes_new"] += len(new)
json.dump(res, open(out, "w"), indent=2)
print(json.dumps({k: res[k] for k in ("execs", "crashes_new")}))
PY
