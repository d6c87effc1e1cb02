#!/usr/bin/env bash
# Install the Debian packages that ship the real photographs listed in
# src/gmtrace/zoo/photo_catalog.csv (see docs/photos.md). Idempotent: when every
# package is installed it makes no apt call at all. Without root it prints the
# command to run and exits 0; the photo loader then uses whatever is present.
set -euo pipefail

PACKAGES=(
  lomiri-wallpapers-16.04
  lomiri-wallpapers-20.04
  opencv-doc
  palapeli-data
  plasma-workspace-wallpapers
  sddm-theme-maldives
  stellarium-data
  tuxpaint-data
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "photos: not a Debian system; install these Debian packages by hand: ${PACKAGES[*]}"
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "photos: all ${#PACKAGES[@]} photo packages installed"
  exit 0
fi

if ((EUID != 0)); then
  echo "photos: not root; run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "photos: apt-get failed installing: ${missing[*]}" >&2
  exit 1
fi
echo "photos: installed ${missing[*]}"
