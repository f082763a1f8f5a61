#!/usr/bin/env bash
# Runs the five messaging experiments (issue 6) with their spec files and
# writes results/messaging/<experiment>/ (one folder per variant, plus
# charts). About 2-3 minutes. Pass extra flags through, e.g. --duration 3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mqlab
for e in peak-shaving ordered transactions retry broadcast; do
    ./target/release/mqlab run --spec "workloads/specs/$e.toml" \
        --out "results/messaging/$e" "$@"
done
