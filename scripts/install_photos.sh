#!/usr/bin/env bash
# Install the Debian packages that ship the real photographs listed in
# src/gmtrace/zoo/photo_catalog.csv (see docs/photos.md). Without root it prints
# the command to run; the photo loader then uses whatever is present.
set -euo pipefail

PACKAGES=(
  afterstep-data
  coreboot-utils-doc
  endless-sky-data
  forensics-samples-files
  gem-doc
  gnome-control-center-data
  hugin-data
  kalzium-data
  krank
  labelme-examples
  libdlib19.1
  libelementary-data
  libjs-jquery-backstretch
  libjs-jquery-colorbox
  libjs-jquery-slides
  libjs-jquery-ui-docs
  librust-jpeg-decoder-dev
  libsixel-examples
  lifeograph
  lirc-doc
  lomiri-wallpapers-16.04
  lomiri-wallpapers-20.04
  lxqt-themes
  mrpt-common
  opencv-doc
  palapeli-data
  plasma-workspace-wallpapers
  projectm-data
  ruby-rmagick-doc
  scratch
  scribus-template
  sddm-theme-maldives
  stellarium-data
  tagua-data
  tuxpaint-data
  tuxtype-data
)

exec bash "$(dirname "$0")/apt_install.sh" photos "${PACKAGES[@]}"
