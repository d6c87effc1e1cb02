#!/usr/bin/env bash
# Install the Debian packages that ship the real photographs listed in
# src/gmtrace/zoo/photo_catalog.csv (see docs/photos.md). Without root it prints
# the command to run; the photo loader then uses whatever is present.
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

exec bash "$(dirname "$0")/apt_install.sh" photos "${PACKAGES[@]}"
