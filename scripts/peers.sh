#!/usr/bin/env bash
# Runs mqlab and its peers (rocketmq-store 1.x in-process, RocksDB) back to
# back on the same disk, several rounds interleaved, measures the device in
# every round, and writes results/peers/{summary.json,table.md,peers.svg,
# peers.png,runs.jsonl,device.jsonl,command.txt}.
#
# Usage: scripts/peers.sh [ROUNDS]        (default 3)
# Environment (defaults in brackets):
#   PEERS_SECS      measured seconds per run [3] (plus PEERS_WARMUP [0.5])
#   PEERS_CONC      puts in flight [1 16 256]
#   PEERS_DIR       data directory, on the disk to measure [/work/tmp-bench]
#   PEERS_OUT       output folder [results/peers]
#   CARGO_TARGET_DIR  [/work/peers-target], kept apart from the workspace's
#                   target/ so the light default build never sees RocksDB.
#   PEERS_ONLY      space-separated engine names to keep (all when empty;
#                   mqlab-pwrite keeps both APIs, mqlab-pwrite-put_async
#                   only the put_async runs)
#   PEERS_WARM_SEGMENTS  1: every mqlab run writes zeros over its segments
#                   before use (StoreConfig::warm_segments, RocketMQ's
#                   warmMapedFileEnable; opening writes the 1 GiB first
#                   segment, outside the measured time) [0]
#   PEERS_MQLAB_APIS  put APIs for mqlab's group and async flush configs
#                   ["blocking async"]: blocking = Store::put from C threads
#                   (engine mqlab-<backend>), async = Store::put_async with
#                   C in flight (engine mqlab-<backend>-put_async); sync and
#                   pool configs and the peers run once, blocking/own driver
#
# Installs what the peers need to build (clang and libclang for RocksDB's
# bindgen) with apt-get when missing. The first build compiles RocksDB's C++
# sources and rocketmq-store's tree: many minutes on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
SECS="${PEERS_SECS:-3}"
WARMUP="${PEERS_WARMUP:-0.5}"
CONC="${PEERS_CONC:-1 16 256}"
DATA="${PEERS_DIR:-/work/tmp-bench}"
OUT="${PEERS_OUT:-$ROOT/results/peers}"
ONLY="${PEERS_ONLY:-}"
APIS="${PEERS_MQLAB_APIS:-blocking async}"
WARM="${PEERS_WARM_SEGMENTS:-0}"
WARM_FLAG=()
[ "$WARM" = 1 ] && WARM_FLAG=(--warm-segments)
for a in $APIS; do
    case "$a" in
    blocking | async) ;;
    *)
        echo "peers.sh: PEERS_MQLAB_APIS: $a is not blocking or async" >&2
        exit 2
        ;;
    esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/peers-target}"

# RocksDB: librocksdb-sys runs bindgen (clang, libclang) and, by default
# here, links Debian's librocksdb-dev (7.8.3) instead of compiling RocksDB's
# C++ sources (over an hour on 2 shared cores). PEERS_ROCKSDB_FROM_SOURCE=1
# builds the crate's bundled RocksDB instead.
LIBDIR=/usr/lib/x86_64-linux-gnu
need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ -z "${PEERS_ROCKSDB_FROM_SOURCE:-}" ] && [ ! -e "$LIBDIR/librocksdb.so" ]; then
    need+=(librocksdb-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "peers.sh: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -z "${PEERS_ROCKSDB_FROM_SOURCE:-}" ]; then
    ROCKSDB_LIB_DIR="$LIBDIR" cargo build --release -p mqlab-bench --features system-rocksdb --bin mqlab-peers
    ROCKSDB_VERSION="system librocksdb $(dpkg-query -W -f '${Version}' librocksdb-dev 2>/dev/null || echo '?')"
else
    cargo build --release -p mqlab-bench --features peers --bin mqlab-peers
    ROCKSDB_VERSION="bundled with librocksdb-sys"
fi
BIN="$CARGO_TARGET_DIR/release/mqlab-peers"

mkdir -p "$OUT" "$DATA"
RUNS="$OUT/runs.jsonl"
DEV="$OUT/device.jsonl"
: >"$RUNS"
: >"$DEV"
{
    echo "scripts/peers.sh $ROUNDS"
    echo "PEERS_SECS=$SECS PEERS_WARMUP=$WARMUP PEERS_CONC='$CONC' PEERS_DIR=$DATA PEERS_MQLAB_APIS='$APIS' PEERS_WARM_SEGMENTS=$WARM"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -r), $(nproc) cores"
    echo "filesystem: $(stat -f -c %T "$DATA")"
    echo "rocksdb: $ROCKSDB_VERSION; rocketmq-store: $(grep -A1 'name = "rocketmq-store"' Cargo.lock | sed -n 's/version = //p' | tr -d '"')"
} >"$OUT/command.txt"

# engine flush msg_bytes; every line runs at every concurrency.
CONFIGS=(
    "mqlab-pwrite sync 1024"
    "mqlab-pwrite group 1024"
    "mqlab-pwrite async 1024"
    "mqlab-pwrite pool 1024"
    "mqlab-uring group 1024"
    "mqlab-uring async 1024"
    "mqlab-mmap group 1024"
    "mqlab-mmap async 1024"
    "rocketmq-store group 1024"
    "rocketmq-store async 1024"
    "rocketmq-store-nobatch group 1024"
    "rocketmq-store-nobatch async 1024"
    "rocksdb group 1024"
    "rocksdb async 1024"
)
# The >= 1M msg/s target is at 128 B.
SMALL=(
    "mqlab-pwrite async 128"
    "mqlab-pwrite pool 128"
    "mqlab-mmap async 128"
)

# Each config line with the put API it runs with as a 4th field: mqlab's
# group and async flush lines once per API of PEERS_MQLAB_APIS, every other
# line once, blocking (the peers have their own drivers).
with_apis() {
    local line e f
    for line in "$@"; do
        read -r e f _ <<<"$line"
        if [[ $e == mqlab-* && ($f == group || $f == async) ]]; then
            for a in $APIS; do echo "$line $a"; done
        else
            echo "$line blocking"
        fi
    done
}
mapfile -t PLAN < <(with_apis "${CONFIGS[@]}")
mapfile -t SMALL_PLAN < <(with_apis "${SMALL[@]}")

keep() {
    [ -z "$ONLY" ] && return 0
    for e in $ONLY; do [ "$e" = "$1" ] && return 0; done
    return 1
}

run() { # engine flush bytes api conc round
    local name="$1"
    [ "$4" = async ] && name="$1-put_async"
    keep "$1" || keep "$name" || return 0
    echo "round $6: $name $2 ${3} B C=$5"
    local warm=()
    case "$1" in mqlab-*) warm=("${WARM_FLAG[@]}") ;; esac
    "$BIN" run --engine "$1" --flush "$2" --msg-bytes "$3" --api "$4" --concurrency "$5" "${warm[@]}" \
        --secs "$SECS" --warmup-secs "$WARMUP" --dir "$DATA" --round "$6" --out "$RUNS" \
        >/dev/null || echo "  failed: $name $2 $3 C=$5 (see stderr above)"
}

for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r: device"
    "$BIN" device --dir "$DATA" --out "$OUT/device-round.json" --msg-bytes 128,1024 --concurrency "$(echo $CONC | tr ' ' ',')"
    tr -d '\n' <"$OUT/device-round.json" >>"$DEV"
    echo >>"$DEV"
    rm -f "$OUT/device-round.json"
    # Interleave: rotate the order each round so no engine always runs
    # first (fresh page cache, cool disk) or last.
    n=${#PLAN[@]}
    for ((i = 0; i < n; i++)); do
        cfg=(${PLAN[$(((i + r) % n))]})
        for c in $CONC; do
            run "${cfg[0]}" "${cfg[1]}" "${cfg[2]}" "${cfg[3]}" "$c" "$r"
        done
    done
    for s in "${SMALL_PLAN[@]}"; do
        cfg=($s)
        run "${cfg[0]}" "${cfg[1]}" "${cfg[2]}" "${cfg[3]}" 16 "$r"
    done
done

"$BIN" report --runs "$RUNS" --device "$DEV" --out "$OUT"
