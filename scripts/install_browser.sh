#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the browser test of the web page
# (tests/test_browser.py). Without root it prints the command to run; the browser
# test then skips, saying why.
set -euo pipefail
exec bash "$(dirname "$0")/apt_install.sh" browser chromium chromium-driver
