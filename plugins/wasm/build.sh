#!/usr/bin/env bash
# Builds the first-party WASM plugins and copies each component to dist/<package>.wasm,
# the names pipelines use (`wasm:lead-score`). Needs `rustup target add wasm32-wasip2`.
# Honours CARGO_TARGET_DIR (a relative one is taken from where the script is run, as cargo
# would); default plugins/wasm/target.
set -euo pipefail
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  CARGO_TARGET_DIR="$(realpath -m -- "$CARGO_TARGET_DIR")"
  export CARGO_TARGET_DIR
fi
cd "$(dirname "$0")"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --target wasm32-wasip2 --release --locked "$@"
mkdir -p dist
for manifest in */Cargo.toml hostile/*/Cargo.toml; do
  package=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)
  cp "$target_dir/wasm32-wasip2/release/${package//-/_}.wasm" "dist/$package.wasm"
done
ls -l dist
