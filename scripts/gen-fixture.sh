#!/usr/bin/env bash
# Regenerates engine/tests/fixtures/rocketmq-store-1: a small RocketMQ store
# written by the rocketmq-store crate 1.x (an implementation independent of
# mqlab), plus manifest.json describing every message in it.
#
# Builds scripts/fixture-gen (a standalone cargo project, not part of the root
# workspace; versions pinned by its own Cargo.lock) and runs it. Installs
# nothing else. Then cross-checks the bytes with check_fixture.py (python3,
# standard library only) when python3 is available.
#
# Environment: CARGO_TARGET_DIR (default /work/fixture-target, kept away from
# the main target dir; the first release build takes several minutes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GEN="$ROOT/scripts/fixture-gen"
OUT="$ROOT/engine/tests/fixtures/rocketmq-store-1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/fixture-target}"

cargo build --release --locked --manifest-path "$GEN/Cargo.toml"

# Wipe the old store and manifest; README.md is kept.
rm -rf "$OUT/store" "$OUT/manifest.json"
mkdir -p "$OUT"
"$CARGO_TARGET_DIR/release/fixture-gen" "$OUT"

# The crate leaves a `lock` file holding the generator's pid: drop it so the
# checked-in store looks like a cleanly shut down, unlocked store directory.
rm -f "$OUT/store/lock"

if command -v python3 >/dev/null 2>&1; then
    python3 "$GEN/check_fixture.py" "$OUT"
fi
find "$OUT" -type f -printf "%10s %P\n" | sort -k2
