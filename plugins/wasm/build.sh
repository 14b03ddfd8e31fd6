#!/usr/bin/env bash
# Builds the first-party WASM plugins and copies each component to dist/<package>.wasm,
# the names pipelines use (`wasm:lead-score`). Needs `rustup target add wasm32-wasip2`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --target wasm32-wasip2 --release --locked "$@"
mkdir -p dist
for manifest in */Cargo.toml hostile/*/Cargo.toml; do
  package=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)
  cp "target/wasm32-wasip2/release/${package//-/_}.wasm" "dist/$package.wasm"
done
ls -l dist
