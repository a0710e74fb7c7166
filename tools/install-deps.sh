#!/bin/sh
# Install the Debian 12 packages needed to build bitcpm-check and run its tests
# (xxhash and sqlite3 provide the command-line tools some tests compare with).
# Run as root (or through sudo). PyTorch is not needed for the tests; it is only
# used by the fixture and benchmark generators, see tools/README.md.
set -eu

packages="gcc meson ninja-build pkg-config
  libsqlite3-dev zlib1g-dev libyaml-dev libjansson-dev libxxhash-dev libssl-dev
  libcmocka-dev sqlite3 libxml2-utils xxhash"

if [ "${1:-}" = "--with-torch" ]; then
    packages="$packages python3-torch python3-numpy time"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $packages
