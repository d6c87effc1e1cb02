#!/usr/bin/env bash
# Install Debian's libturbojpeg, with which a scan cuts a large JPEG's crops out of
# the file without decoding the whole photograph (src/gmtrace/data/jpegcrop.py; the
# same pixels). Without root it prints the command to run; scans then decode every
# JPEG whole, as fast as before.
set -euo pipefail
exec bash "$(dirname "$0")/apt_install.sh" codecs libturbojpeg0
