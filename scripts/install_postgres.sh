#!/usr/bin/env bash
# Install Debian's PostgreSQL server for the tests of the fingerprint index's
# PostgreSQL store (tests/test_index.py starts a throwaway cluster of it as the
# `postgres` user; the system's own cluster is not used). Without root it prints
# the command to run; those tests then skip, saying why.
set -euo pipefail
exec bash "$(dirname "$0")/apt_install.sh" postgres postgresql
