#!/usr/bin/env bash
# Every measurement in README.md, one line each; files under /tmp/store-candidates.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-store}"
nice -n 15 cargo build --release -q
bin="$CARGO_TARGET_DIR/release/store-candidates"
run() { nice -n 15 "$bin" "$@"; }
for store in fjall redb sqlite; do
  for clients in 1 10; do
    for sync in sync nosync; do
      for batch in 1 16 256; do run bench "$store" "$batch" "$sync" "$clients"; done
    done
  done
  run restart "$store"
  run kill "$store" sync
  run kill "$store" nosync
done
run torn fjall main 300
run torn redb main 300
run torn sqlite main 300
run torn sqlite wal 300
