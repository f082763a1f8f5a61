#!/usr/bin/env bash
# Regenerates engine/tests/fixtures/corrupt (or writes the set to OUT_DIR):
# builds and runs scripts/corrupt-fixtures.rs, an example of mqlab-engine.
# The stores hold wall-clock timestamps, so a new set differs from the
# checked-in one in those bytes only; engine/tests/corruption.rs passes on
# either.
#
# Usage: scripts/gen-corrupt-fixtures.sh [OUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo run -q -p mqlab-engine --example corrupt-fixtures -- "$@"
