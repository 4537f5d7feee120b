#!/usr/bin/env bash
# Renders a report.html in headless Chromium (Debian's chromium-headless-shell) and writes a PNG.
#
#   infra/local/report-screenshot.sh [REPORT_HTML] [OUT_PNG]
#
# Defaults: the demo's first run (the newest report under target/demo-report whose summary counts
# created rows; run `make demo` first) and docs/report-screenshot.png. Installs the browser with
# apt-get when it is missing and this runs as root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${2:-$ROOT/docs/report-screenshot.png}"
say() { echo "report-screenshot: $*" >&2; }

page="${1:-}"
if [[ -z "$page" ]]; then
    page="$(python3 - "$ROOT/target/demo-report" <<'PY'
import json, pathlib, sys
runs = []
for summary in pathlib.Path(sys.argv[1]).glob("*/summary.json"):
    s = json.loads(summary.read_text())
    html = summary.with_name("report.html")
    if s["counts"].get("created", 0) > 0 and html.exists():
        runs.append((s.get("finished_at", ""), str(html)))
print(max(runs)[1] if runs else "")
PY
)"
    [[ -n "$page" ]] || { say "no demo report with created rows under target/demo-report: run 'make demo' first"; exit 1; }
fi
[[ -f "$page" ]] || { say "$page not found"; exit 1; }

browser="$(command -v chromium-headless-shell || command -v chromium || true)"
if [[ -z "$browser" ]]; then
    [[ "$(id -u)" == 0 ]] || { say "needs chromium-headless-shell (apt-get install chromium-headless-shell)"; exit 1; }
    say "installing chromium-headless-shell (Debian package) ..."
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell fonts-dejavu-core >/dev/null
    browser="$(command -v chromium-headless-shell)"
fi
mkdir -p "$(dirname "$OUT")"
# --no-sandbox: root in a container has no user namespace for Chromium's sandbox; the page is our own
# file, self-contained, with no scripts.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1500 \
    --screenshot="$OUT" "file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")" 2>/dev/null
[[ -s "$OUT" ]] || { say "no screenshot written"; exit 1; }
say "$page -> $OUT"
