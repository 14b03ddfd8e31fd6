#!/usr/bin/env bash
# Saves the web console's screenshots for docs/console.md from a real run: the browser test
# of tests/e2e/console.rs (headless Chromium through chromedriver) with HOOKLINE_SCREENSHOTS
# set. Needs `apt-get install chromium chromium-driver` (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/docs/img"
mkdir -p "$out"
HOOKLINE_SCREENSHOTS="$out" cargo nextest run -p hookline --test e2e \
  console::the_console_logs_in_shows_events_live_replays_and_works_on_a_phone
ls -l "$out"/console-*.png
