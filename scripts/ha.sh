#!/usr/bin/env bash
# Issue 14's experiment: what each replication mode loses when the master
# dies (mqlab ha). Every mode of {ASYNC_MASTER, SYNC_MASTER} x {sync,
# group, async flush} x {1, 2 slaves}, three sets:
#   results/ha/pass          KILLS kills per mode, the slaves' HA links
#                            straight through the fault proxy (loopback:
#                            the slaves keep up), the slave as survivor;
#   results/ha/delay-<D>ms   DELAY_KILLS kills, DELAY ms added per chunk on
#                            the HA links (a slow link: the slaves lag);
#   results/ha/failover      FAILOVER_KILLS kills with a controller: the
#                            slave elected, the producer follows the
#                            route, failover time measured;
#   results/ha/failover-sync SYNC_FAILOVER_KILLS kills per SYNC_MASTER mode
#                            with a controller (default 200 each: 1,200
#                            failovers, about 4 hours on 2 cores); every
#                            acknowledged message must be on the new
#                            master (0 = skip);
#   results/ha/partition     PARTITION_SCHEDULES seeded schedules of
#                            replication faults (issue 16: partitions,
#                            flapping and slow links, failovers) against a
#                            controller-mode group, every broker link
#                            through a fault proxy; acked loss on the final
#                            master, dual-master epochs (0 = skip).
# Each: summary.json, trials.csv, lag.csv, charts, run.log, the first
# kill's ack log per mode. Niced; roughly 12 x (KILLS x 1.3 s +
# DELAY_KILLS x 1.5 s + FAILOVER_KILLS x 8 s) + 6 x SYNC_FAILOVER_KILLS x 12 s.
#
#   KILLS=40 DELAY_KILLS=20 DELAY=10 FAILOVER_KILLS=8 PARTITION_SCHEDULES=200 SEED=1 scripts/ha.sh
#
# Only the partition set: KILLS=0 DELAY_KILLS=0 FAILOVER_KILLS=0 SYNC_FAILOVER_KILLS=0 scripts/ha.sh
# (PARTITION_ROLES, PARTITION_SLAVES: the lists it cycles through;
# PARTITION_KINDS, e.g. all eight with split: the kinds drawn, default
# mqlab ha's seven.)
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS="${KILLS:-40}"
DELAY_KILLS="${DELAY_KILLS:-20}"
DELAY="${DELAY:-10}"
FAILOVER_KILLS="${FAILOVER_KILLS:-8}"
SYNC_FAILOVER_KILLS="${SYNC_FAILOVER_KILLS:-200}"
PARTITION_SCHEDULES="${PARTITION_SCHEDULES:-200}"
PARTITION_ROLES="${PARTITION_ROLES:-SYNC_MASTER,SYNC_MASTER,ASYNC_MASTER}"
PARTITION_SLAVES="${PARTITION_SLAVES:-2,1}"
PARTITION_KINDS="${PARTITION_KINDS:-}"
SEED="${SEED:-1}"
OUT="${OUT:-results/ha}"
mkdir -p "$OUT"
nice cargo build --release -p mqlab
run() { # dir, mqlab ha flags...
    local dir="$1"
    shift
    rm -rf "$dir"
    # A kill that fails to run is reported in summary.json's failures and
    # makes mqlab ha exit 1; the other sets still run.
    nice -n 10 ./target/release/mqlab ha --seed "$SEED" --out "$dir" "$@" | tee "$dir.log" ||
        echo "mqlab ha $*: some kills failed to run (see $dir/summary.json)"
    mv "$dir.log" "$dir/run.log"
}
[ "$KILLS" = 0 ] || run "$OUT/pass" --kills "$KILLS" --fault pass
[ "$DELAY_KILLS" = 0 ] || run "$OUT/delay-${DELAY}ms" --kills "$DELAY_KILLS" --fault "delay:$DELAY"
[ "$FAILOVER_KILLS" = 0 ] || run "$OUT/failover" --kills "$FAILOVER_KILLS" --failover
[ "$SYNC_FAILOVER_KILLS" = 0 ] || run "$OUT/failover-sync" --kills "$SYNC_FAILOVER_KILLS" --failover --roles SYNC_MASTER
[ "$PARTITION_SCHEDULES" = 0 ] || run "$OUT/partition" --partition --schedules "$PARTITION_SCHEDULES" \
    --roles "$PARTITION_ROLES" --slaves "$PARTITION_SLAVES" ${PARTITION_KINDS:+--kinds "$PARTITION_KINDS"}
