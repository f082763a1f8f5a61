#!/usr/bin/env bash
# Peers on the same wire, same machine, same durability (issue 15).
#
# Starts, on 127.0.0.1 only, one server at a time and stops it again:
#   - mqlab broker (embedded name server) with each flush strategy and backend
#     in PEERS_WIRE_MQLAB,
#   - rocketmq-rust 1.0's name server and broker (crates rocketmq-namesrv and
#     rocketmq-broker, installed with `cargo install --locked` into
#     target/peers/rocketmq-rust when missing) with SYNC_FLUSH and with
#     ASYNC_FLUSH,
#   - Debian's redis-server (apt-get install when missing) with appendonly
#     yes and appendfsync always, then everysec,
# and sends the same workload to each: 1 KiB bodies (PEERS_WIRE_MSG_BYTES),
# each concurrency of PEERS_WIRE_CONC in flight, through mqlab's own client
# (`mqlab run --target rocketmq://...`, the same for both RocketMQ brokers)
# or `mqlab peers-wire redis` (pipelined XADDs, the redis crate), once per
# workload of PEERS_WIRE_WORKLOADS: `produce` (producers only) and
# `produce+consume` (consumers in the same run: `run --target ...
# --consume true`, one pull loop per queue, or `peers-wire redis
# --consumers PEERS_WIRE_REDIS_CONSUMERS`, XREADGROUP in one group). Rounds are interleaved (the order of the servers rotates each
# round) and the device is measured in every round (`mqlab baseline`:
# 4 KiB pwrite+fdatasync rate, buffered write bandwidth). Then
# `mqlab peers-wire report` writes summary.json (`engines`: the median over
# rounds per engine x durability x concurrency x size), table.csv, table.md
# and peers-wire.{svg,png}. Finally, unless PEERS_WIRE_PERF=0, one config
# of mqlab broker runs again under `perf record -g` (perf/).
#
# Usage: scripts/peers-wire.sh
# Environment (defaults in brackets):
#   PEERS_WIRE_ROUNDS     rounds [3]
#   PEERS_WIRE_SECS       measured seconds per point [3]
#   PEERS_WIRE_WARMUP     warmup seconds per point [1]
#   PEERS_WIRE_CONC       sends in flight, space separated [1 16 256 1024]
#   PEERS_WIRE_WORKLOADS  produce and/or produce+consume [produce produce+consume]
#   PEERS_WIRE_REDIS_CONSUMERS  Redis consumer connections in produce+consume [2]
#   PEERS_WIRE_MSG_BYTES  body bytes [1024]
#   PEERS_WIRE_MQLAB      mqlab broker configs, flush-backend[-warm] (-warm: --warm-segments true)
#                         [sync-pwrite group-pwrite async-pwrite pool-pwrite group-uring async-mmap]
#   PEERS_WIRE_ONLY       engines to run: any of mqlab rocketmq-rust redis
#                         [mqlab rocketmq-rust redis]
#   PEERS_WIRE_DIR        scratch data directory, on the disk measured
#                         [/work/tmp-bench/peers-wire]; emptied per server
#   PEERS_WIRE_OUT        output folder [results/peers-wire]
#   PEERS_WIRE_PERF       1: profile one mqlab broker config with perf [1]
#   PEERS_WIRE_PERF_CONFIG  flush-backend and in flight profiled [group-pwrite 256]
#   RMQ_ROOT              where rocketmq-rust is installed [target/peers/rocketmq-rust]
#   PEERS_WIRE_MQLAB_BIN  a built mqlab binary to use instead of building
#                         this tree's (target/release/mqlab)
# Ports (loopback): mqlab broker 29911 (+1 HA, name server 29876),
# rocketmq-rust 19911 (19909 fast, 19912 HA, name server 19876), Redis 26379.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${PEERS_WIRE_ROUNDS:-3}"
SECS="${PEERS_WIRE_SECS:-3}"
WARMUP="${PEERS_WIRE_WARMUP:-1}"
CONC="${PEERS_WIRE_CONC:-1 16 256 1024}"
WORKLOADS="${PEERS_WIRE_WORKLOADS:-produce produce+consume}"
REDIS_CONSUMERS="${PEERS_WIRE_REDIS_CONSUMERS:-2}"
for wl in $WORKLOADS; do
    case "$wl" in produce | produce+consume) ;; *) echo "PEERS_WIRE_WORKLOADS: $wl? (produce, produce+consume)" >&2; exit 2 ;; esac
done
MSG="${PEERS_WIRE_MSG_BYTES:-1024}"
MQLAB_CONFIGS="${PEERS_WIRE_MQLAB:-sync-pwrite group-pwrite async-pwrite pool-pwrite group-uring async-mmap}"
ONLY="${PEERS_WIRE_ONLY:-mqlab rocketmq-rust redis}"
DATA="${PEERS_WIRE_DIR:-/work/tmp-bench/peers-wire}"
OUT="${PEERS_WIRE_OUT:-$ROOT/results/peers-wire}"
PERF="${PEERS_WIRE_PERF:-1}"
PERF_CONFIG="${PEERS_WIRE_PERF_CONFIG:-group-pwrite 256}"
RMQ_ROOT="${RMQ_ROOT:-$ROOT/target/peers/rocketmq-rust}"
MQLAB="${PEERS_WIRE_MQLAB_BIN:-$ROOT/target/release/mqlab}"
MQ_PORT=29911 MQ_NS=29876 RMQ_PORT=19911 RMQ_NS=19876 REDIS_PORT=26379

log() { echo "peers-wire: $*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# --- Build and install -------------------------------------------------------
if [ -z "${PEERS_WIRE_MQLAB_BIN:-}" ]; then
    nice -n 10 cargo build --release -p mqlab --bin mqlab
fi
if wants rocketmq-rust; then
    if [ ! -x "$RMQ_ROOT/bin/rocketmq-broker-rust" ] || [ ! -x "$RMQ_ROOT/bin/rocketmq-namesrv-rust" ]; then
        log "installing rocketmq-rust's name server and broker into $RMQ_ROOT (about 25 min on 2 cores)"
        nice -n 10 cargo install --locked --root "$RMQ_ROOT" rocketmq-namesrv rocketmq-broker
    fi
fi
# rocketmq-rust's store is writable only while (total - available) / total
# of its filesystem stays under diskSpaceWarningLevelRatio, which it clamps
# to at most 90% (rocketmq-store 1.0, config/message_store_config.rs and
# local_file_message_store/health.rs). On this development machine the
# filesystem reserves most of its free blocks for another uid (mount option
# resv_strict,resuid=65534), so statvfs reports ~97% used and the broker
# rolls its startup back (readiness: message store not writable). The shim
# below, preloaded into rocketmq-rust's two processes only, reports the
# free blocks as available (f_bavail = f_bfree); nothing else changes. A
# run writes at most a few GB, far below what is really available.
SHIM="$ROOT/target/peers/statvfs-free.so"
if wants rocketmq-rust && [ ! -f "$SHIM" ]; then
    mkdir -p "$(dirname "$SHIM")"
    cat >"$SHIM.c" <<'CEOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#define WRAP(name, type, arg)                                                   \
    int name(arg a, struct type *b) {                                           \
        static int (*real)(arg, struct type *);                                 \
        if (!real) real = (int (*)(arg, struct type *))dlsym(RTLD_NEXT, #name); \
        int r = real(a, b);                                                     \
        if (r == 0) b->f_bavail = b->f_bfree;                                   \
        return r;                                                               \
    }
WRAP(statvfs, statvfs, const char *)
WRAP(statvfs64, statvfs64, const char *)
WRAP(fstatvfs, statvfs, int)
WRAP(fstatvfs64, statvfs64, int)
WRAP(statfs, statfs, const char *)
WRAP(statfs64, statfs64, const char *)
WRAP(fstatfs, statfs, int)
WRAP(fstatfs64, statfs64, int)
CEOF
    command -v gcc >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }
    gcc -shared -fPIC -O2 -o "$SHIM" "$SHIM.c" -ldl
fi
REDIS_NOTE=""
if wants redis && ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; then
        REDIS_NOTE="apt-get could not install redis-server: Redis skipped"
        log "$REDIS_NOTE"
    fi
fi
if wants redis && ! command -v redis-server >/dev/null 2>&1; then
    ONLY="${ONLY/redis/}"
fi

mkdir -p "$OUT" "$DATA"
rm -rf "$OUT/runs" "$OUT/device" "$OUT/logs"
mkdir -p "$OUT/runs" "$OUT/device" "$OUT/logs"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"
rmq_version() { "$RMQ_ROOT/bin/$1" --version 2>/dev/null | tr '\n' ' ' || echo '?'; }
{
    echo "scripts/peers-wire.sh"
    echo "PEERS_WIRE_ROUNDS=$ROUNDS PEERS_WIRE_SECS=$SECS PEERS_WIRE_WARMUP=$WARMUP PEERS_WIRE_CONC='$CONC' PEERS_WIRE_MSG_BYTES=$MSG"
    echo "PEERS_WIRE_WORKLOADS='$WORKLOADS' PEERS_WIRE_REDIS_CONSUMERS=$REDIS_CONSUMERS"
    echo "PEERS_WIRE_MQLAB='$MQLAB_CONFIGS' PEERS_WIRE_ONLY='$ONLY' PEERS_WIRE_DIR=$DATA"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -r), $(nproc) cores, filesystem $(stat -f -c %T "$DATA")"
    echo "mqlab: $MQLAB, tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine broker client protocol workloads || echo ' + uncommitted changes')"
    wants rocketmq-rust && echo "rocketmq-rust: $(rmq_version rocketmq-broker-rust); $(rmq_version rocketmq-namesrv-rust)"
    command -v redis-server >/dev/null && echo "redis: $(redis-server --version)"
    [ -n "$REDIS_NOTE" ] && echo "$REDIS_NOTE"
    true
} >"$OUT/command.txt"

# --- Servers -----------------------------------------------------------------
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port seconds
    local end=$((SECONDS + $2))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ "$SECONDS" -ge "$end" ] && return 1
        sleep 0.2
    done
}

# Refuses to start a server on a port something else holds (its figures
# would be that process's).
port_free() { # port...
    local p
    for p in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            log "port $p is already in use on 127.0.0.1"
            return 1
        fi
    done
}

# Stops the servers last started first (a broker before its name server,
# so that it can unregister), each within 10 s.
stop_servers() {
    local i p
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        p=${PIDS[$i]}
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}

# Keeps a server's warnings and errors (counted, timestamps dropped) and the
# end of its log, without colour codes: their errors are findings.
keep_log() { # file name
    [ -f "$1" ] || return 0
    {
        echo "== WARN/ERROR lines (count, line without its timestamp)"
        sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E 'WARN|ERROR|[Ee]rror' |
            sed -E 's/^[0-9TZ:.-]+ +//; s/:[0-9]+: /: /; s/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' |
            sort | uniq -c | sort -rn | head -n 60
        echo "== last 60 lines"
        sed 's/\x1b\[[0-9;]*m//g' "$1" | tail -n 60 | cut -c1-400
    } >"$OUT/logs/$2.log" 2>/dev/null || true
}

start_mqlab() { # flush backend dir warm(true|false)
    port_free "$MQ_NS" "$MQ_PORT" $((MQ_PORT + 1)) || return 1
    "$MQLAB" broker --data-dir "$3/store" --listen "127.0.0.1:$MQ_PORT" \
        --namesrv-listen "127.0.0.1:$MQ_NS" --flush "$1" --backend "$2" \
        --warm-segments "${4:-false}" --status-secs 0 >"$3/server.log" 2>&1 &
    PIDS+=($!)
    wait_port "$MQ_NS" 20 && wait_port "$MQ_PORT" 20
}

start_rmq() { # SYNC_FLUSH|ASYNC_FLUSH dir
    local d="$2"
    port_free "$RMQ_NS" "$RMQ_PORT" $((RMQ_PORT - 2)) $((RMQ_PORT + 1)) || return 1
    mkdir -p "$d/home" "$d/store"
    cat >"$d/broker.toml" <<EOF
[broker]
namesrvAddr = "127.0.0.1:$RMQ_NS"
brokerIp1 = "127.0.0.1"
listenPort = $RMQ_PORT
storePathRootDir = "$d/store"
autoCreateTopicEnable = true

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "broker-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
storePathRootDir = "$d/store"
storePathCommitLog = "$d/store/commitlog"
flushDiskType = "$1"
haListenAddress = "127.0.0.1"
haListenPort = $((RMQ_PORT + 1))
EOF
    (
        cd "$d/home"
        export ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback ROCKETMQ_HOME="$d/home" HOME="$d/home"
        export LD_PRELOAD="$SHIM"
        exec "$RMQ_ROOT/bin/rocketmq-namesrv-rust" --bindAddress 127.0.0.1 --listenPort "$RMQ_NS" \
            --rocketmqHome "$d/home" --kvConfigPath "$d/home/kvConfig.json"
    ) >"$d/namesrv.log" 2>&1 &
    PIDS+=($!)
    wait_port "$RMQ_NS" 30 || return 1
    (
        cd "$d/home"
        export ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback ROCKETMQ_HOME="$d/home" HOME="$d/home"
        export LD_PRELOAD="$SHIM"
        exec "$RMQ_ROOT/bin/rocketmq-broker-rust" -c "$d/broker.toml" -n "127.0.0.1:$RMQ_NS"
    ) >"$d/server.log" 2>&1 &
    PIDS+=($!)
    wait_port "$RMQ_PORT" 60 || return 1
    # Registered with the name server once a route lookup finds TBW102.
    sleep 2
}

start_redis() { # always|everysec dir
    port_free "$REDIS_PORT" || return 1
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --dir "$2" --appendonly yes --appendfsync "$1" --save '' \
        --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$2/server.log" &
    PIDS+=($!)
    wait_port "$REDIS_PORT" 20
}

# --- One point ---------------------------------------------------------------
# run_point round engine durability c kind(rocketmq|redis) target dir workload
# Folders: runs/r<round>/<engine>-<durability>/c<C> (produce),
# .../pc-c<C> (produce+consume).
run_point() {
    local r=$1 engine=$2 dur=$3 c=$4 kind=$5 target=$6 d=$7 wl=$8
    local tag="c$c" consume=false consumers=0
    if [ "$wl" = produce+consume ]; then
        tag="pc-c$c" consume=true consumers=$REDIS_CONSUMERS
    fi
    local rel="runs/r$r/$engine-$dur/$tag" status=ok
    local tmp="$d/run-$tag"
    # Consumers catch up for at most 10 s after the producers stop.
    local limit=$((${SECS%.*} + ${WARMUP%.*} + 70))
    mkdir -p "$OUT/$rel"
    if [ "$kind" = redis ]; then
        local conns=2
        [ "$c" -lt 2 ] && conns=1
        timeout "$limit" "$MQLAB" peers-wire redis --target "$target" --inflight "$c" \
            --connections "$conns" --msg-size "$MSG" --duration "$SECS" --warmup "$WARMUP" \
            --consumers "$consumers" --out "$tmp" >"$tmp.out" 2>&1 || status="exit $?"
    else
        local p=2
        [ "$c" -lt 2 ] && p=1
        timeout "$limit" "$MQLAB" run --target "$target" --producers "$p" --inflight $((c / p)) \
            --msg-size "$MSG" --duration "$SECS" --warmup "$WARMUP" --consume "$consume" \
            --topic pw --status-secs 0 --name "$engine-$tag" --out "$tmp" >"$tmp.out" 2>&1 ||
            status="exit $?"
    fi
    [ -f "$tmp/summary.json" ] && cp "$tmp/summary.json" "$OUT/$rel/"
    cp "$tmp.out" "$OUT/$rel/output.txt" 2>/dev/null || true
    if [ "$status" != ok ]; then
        status="$status: $(tail -n 2 "$tmp.out" 2>/dev/null | tr '\n"\\' "  '" | cut -c1-300)"
    fi
    log "round $r $engine ($dur, $wl) c=$c: $(grep -hoE '[0-9,]+ msgs/s|msgs_per_s=[0-9]+' "$tmp.out" | head -2 | tr '\n' ' ')$status"
    printf '{"round":%d,"engine":"%s","durability":"%s","workload":"%s","concurrency":%d,"msg_bytes":%d,"dir":"%s","status":"%s"}\n' \
        "$r" "$engine" "$dur" "$wl" "$c" "$MSG" "$rel" "$status" >>"$RUNS"
    rm -rf "$tmp"
}

# run_server round name: start it, every concurrency, stop it, clean up.
run_server() {
    local r=$1 name=$2 d="$DATA/server" engine dur kind target ok=1
    rm -rf "$d"
    mkdir -p "$d"
    case "$name" in
        mqlab:*)
            local fb=${name#mqlab:} warm=false
            case "$fb" in *-warm) warm=true fb=${fb%-warm} ;; esac
            local flush=${fb%-*} backend=${fb#*-}
            engine="mqlab-broker-$flush-$backend" kind=rocketmq target="rocketmq://127.0.0.1:$MQ_NS"
            [ "$warm" = true ] && engine="$engine-warm"
            case $flush in sync | group) dur=sync ;; *) dur=async ;; esac
            start_mqlab "$flush" "$backend" "$d" "$warm" || ok=0
            ;;
        rmq:*)
            local ft=${name#rmq:}
            engine=rocketmq-rust-broker kind=rocketmq target="rocketmq://127.0.0.1:$RMQ_NS"
            [ "$ft" = SYNC_FLUSH ] && dur=sync || dur=async
            start_rmq "$ft" "$d" || ok=0
            ;;
        redis:*)
            local fs=${name#redis:}
            engine=redis-streams kind=redis target="redis://127.0.0.1:$REDIS_PORT"
            [ "$fs" = always ] && dur=sync || dur=async
            start_redis "$fs" "$d" || ok=0
            ;;
    esac
    local wl c
    if [ "$ok" = 1 ]; then
        for wl in $WORKLOADS; do
            for c in $CONC; do run_point "$r" "$engine" "$dur" "$c" "$kind" "$target" "$d" "$wl"; done
        done
    else
        log "round $r: $name did not start (logs/r$r-${name//:/-}*.log)"
        for wl in $WORKLOADS; do
            for c in $CONC; do
                printf '{"round":%d,"engine":"%s","durability":"%s","workload":"%s","concurrency":%d,"msg_bytes":%d,"dir":"runs/r%d/%s-%s/c%d","status":"server did not start"}\n' \
                    "$r" "$engine" "$dur" "$wl" "$c" "$MSG" "$r" "$engine" "$dur" "$c" >>"$RUNS"
            done
        done
    fi
    stop_servers
    keep_log "$d/server.log" "r$r-${name//:/-}"
    keep_log "$d/namesrv.log" "r$r-${name//:/-}-namesrv"
    rm -rf "$d"
}

SERVERS=()
if wants mqlab; then for m in $MQLAB_CONFIGS; do SERVERS+=("mqlab:$m"); done; fi
if wants rocketmq-rust; then SERVERS+=("rmq:SYNC_FLUSH" "rmq:ASYNC_FLUSH"); fi
if wants redis; then SERVERS+=("redis:always" "redis:everysec"); fi
[ "${#SERVERS[@]}" -gt 0 ] || { log "nothing to run (PEERS_WIRE_ONLY='$ONLY')"; exit 1; }

START=$SECONDS
n=${#SERVERS[@]}
for r in $(seq 1 "$ROUNDS"); do
    # The machine is shared: the load average says how quiet it was.
    echo "round $r start: $(cat /proc/loadavg)" >>"$OUT/device/loadavg.txt"
    "$MQLAB" baseline --data-dir "$DATA" --json >"$OUT/device/round-$r.json"
    for i in $(seq 0 $((n - 1))); do
        run_server "$r" "${SERVERS[$(((i + r - 1) % n))]}"
    done
    echo "round $r end: $(cat /proc/loadavg)" >>"$OUT/device/loadavg.txt"
    log "round $r done after $((SECONDS - START)) s"
done

"$MQLAB" peers-wire report "$OUT"

# --- Profile -----------------------------------------------------------------
if [ "$PERF" = 1 ] && wants mqlab && command -v perf >/dev/null 2>&1; then
    set -- $PERF_CONFIG
    fb=$1 c=$2 d="$DATA/server"
    rm -rf "$d" "$OUT/perf"
    mkdir -p "$d" "$OUT/perf"
    port_free "$MQ_NS" "$MQ_PORT" $((MQ_PORT + 1)) || exit 1
    # The broker runs under perf for its whole (bounded) life: attaching
    # with -p fails here when one of its threads exits during the attach.
    perf record -e cpu-clock -F 999 -g -o "$d/perf.data" -- \
        "$MQLAB" broker --data-dir "$d/store" --listen "127.0.0.1:$MQ_PORT" \
        --namesrv-listen "127.0.0.1:$MQ_NS" --flush "${fb%-*}" --backend "${fb#*-}" \
        --status-secs 0 --duration $((${SECS%.*} + ${WARMUP%.*} + 4)) >"$d/perf.out" 2>&1 &
    PIDS+=($!)
    if wait_port "$MQ_NS" 20 && wait_port "$MQ_PORT" 20; then
        p=2
        [ "$c" -lt 2 ] && p=1
        "$MQLAB" run --target "rocketmq://127.0.0.1:$MQ_NS" --producers "$p" --inflight $((c / p)) \
            --msg-size "$MSG" --duration "$SECS" --warmup "$WARMUP" --consume false --topic pw \
            --status-secs 0 --out "$d/run" >"$OUT/perf/run.txt" 2>&1 || true
        wait "${PIDS[-1]}" || true
        PIDS=()
        {
            echo "# perf record -e cpu-clock -F 999 -g -- mqlab broker --flush ${fb%-*} --backend ${fb#*-} (its whole life), while"
            echo "# mqlab run --target ... --producers $p --inflight $((c / p)) --msg-size $MSG (warmup $WARMUP s + $SECS s)"
            echo "# perf report --no-children --sort comm,dso,sym --stdio"
            perf report -i "$d/perf.data" --no-children --sort comm,dso,sym --stdio 2>/dev/null |
                grep -v '^$' | head -n 200
        } >"$OUT/perf/report.txt" || true
        perf report -i "$d/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
            grep -E '^ +[0-9]' | head -n 40 >"$OUT/perf/top-symbols.txt" || true
        perf report -i "$d/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null |
            grep -E '^ +[0-9]' | head -n 20 >"$OUT/perf/threads.txt" || true
        cat "$d/perf.out" >>"$OUT/perf/run.txt"
    else
        stop_servers
        log "perf: the broker did not start"
    fi
    rm -rf "$d"
fi
log "done in $((SECONDS - START)) s: $OUT"
