#!/usr/bin/env bash
# Render a suite's report.html in headless Chromium (Debian package `chromium`) to a PNG,
# to look at the page as a reader would:  bash scripts/screenshot.sh results/quick [out.png]
set -euo pipefail
dir=$(cd "$1" && pwd)
out=${2:-$dir/report_screenshot.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1200,2200 --screenshot="$out" \
    "file://$dir/report.html" 2>/dev/null
echo "wrote $out"
