#!/usr/bin/env bash
# Copy the dashboard's front-end packages from node_modules into src/suanli/web/static/vendor/,
# with their licence files, so the server serves them itself (no CDN: the network may have no
# internet). Versions are pinned in package.json / package-lock.json; the copies are committed.
#   npm ci --ignore-scripts && bash scripts/vendor_web.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NM=node_modules
OUT=src/suanli/web/static/vendor
if [[ ! -d $NM/htmx.org || ! -d $NM/echarts ]]; then
  echo "node_modules is missing: run 'npm ci --ignore-scripts' first" >&2
  exit 1
fi
version() { node -p "require('./$NM/$1/package.json').version"; }
rm -rf "$OUT"
mkdir -p "$OUT/htmx" "$OUT/echarts"
cp "$NM/htmx.org/dist/htmx.min.js" "$NM/htmx.org/LICENSE" "$OUT/htmx/"
# The "common" build: line, bar, pie and scatter charts with legend, tooltip and zoom (2/3 of the full build).
cp "$NM/echarts/dist/echarts.common.min.js" "$NM/echarts/LICENSE" "$NM/echarts/NOTICE" "$OUT/echarts/"
cp "$NM/echarts/licenses/LICENSE-d3" "$OUT/echarts/"
cp "$NM/zrender/LICENSE" "$OUT/echarts/LICENSE-zrender"
{
  echo "Vendored by scripts/vendor_web.sh from the npm registry; do not edit by hand."
  echo "htmx.org $(version htmx.org)  (0BSD: see htmx/LICENSE)"
  echo "echarts $(version echarts)  (Apache-2.0: see echarts/LICENSE, NOTICE)"
  echo "zrender $(version zrender)  (BSD-3-Clause: see echarts/LICENSE-zrender), bundled in echarts"
} > "$OUT/VERSIONS.txt"
echo "vendored into $OUT:"
cat "$OUT/VERSIONS.txt"
