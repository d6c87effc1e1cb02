#!/usr/bin/env bash
# apt_install.sh LABEL PACKAGE...: install the Debian packages that are missing.
# Idempotent: no apt call when all are installed. Without root it prints the
# command to run and exits 0 (the caller's feature then says what it lacks); not
# on Debian it prints the packages to install by hand and exits 0. Used by
# install_photos.sh, install_codecs.sh and install_browser.sh.
set -euo pipefail

label=$1
shift
packages=("$@")

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "$label: not a Debian system; install these Debian packages by hand: ${packages[*]}"
  exit 0
fi
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "$label: all ${#packages[@]} packages installed"
  exit 0
fi
if ((EUID != 0)); then
  echo "$label: not root; run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "$label: apt-get failed installing: ${missing[*]}" >&2
  exit 1
fi
echo "$label: installed ${missing[*]}"
