#!/bin/bash
# Install the build dependencies (Debian 12), build, install, and run vcgate
# on its embedded default configuration.  Uses sudo only when not root.
# Extra arguments are passed to vcgate (e.g. -l debug).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
bash contrib/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
$SUDO make install
$SUDO ldconfig
exec /usr/local/bin/vcgate "$@"
