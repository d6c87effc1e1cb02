#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the browser test of the web page
# (tests/test_browser.py). Idempotent: no apt call once installed. Without root it
# prints the command to run and exits 0; the browser test then skips, saying why.
set -euo pipefail

PACKAGES=(chromium chromium-driver)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "browser: not a Debian system; install Chromium and chromedriver by hand"
  exit 0
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "browser: chromium and chromium-driver installed"
  exit 0
fi
if ((EUID != 0)); then
  echo "browser: not root; run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "browser: apt-get failed installing: ${missing[*]}" >&2
  exit 1
fi
echo "browser: installed ${missing[*]}"
