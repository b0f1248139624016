#!/bin/bash
# Install the build dependencies (Debian 12), build, install, and run vcgate
# on its embedded default configuration.  Uses sudo only when not root.
# Extra arguments are passed to vcgate (e.g. -l debug).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
mapfile -t PKGS < <(grep -v '^#' contrib/debian-packages.txt | grep .)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"
$SUDO make install
$SUDO ldconfig
exec /usr/local/bin/vcgate "$@"
