#!/bin/bash
# Install the Debian 12 packages vcgate needs, only those missing.
#   contrib/install-deps.sh          build dependencies
#   contrib/install-deps.sh test     build and test dependencies
# Uses sudo only when not root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
lists=(debian-packages.txt)
[ "${1:-}" = test ] && lists+=(debian-test-packages.txt)
mapfile -t PKGS < <(cat "${lists[@]}" | grep -v '^#' | grep .)
if [ "${1:-}" = test ] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  PKGS+=(nodejs npm)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && { echo "install-deps: all ${#PKGS[@]} packages present"; exit 0; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
