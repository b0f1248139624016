#!/bin/bash
# Build the vcgate OCI image without a container engine, from Debian
# packages only: mmdebstrap makes a minbase Debian 12 root filesystem with
# the runtime libraries of runtime-packages.txt and the vcgate user, the
# vcgate of a finished build tree goes in with `make install DESTDIR=`, and
# umoci turns the tree into an OCI image layout with the configuration the
# Containerfile gives (user, ports, entrypoint).  OCI image configs have no
# health check (that is a Docker extension): the Containerfile's HEALTHCHECK
# and the Helm chart's probes carry it.
#
#   build-oci.sh [-c CACHE] [-o LAYOUT] [-t TAG] [-s STAGE] BUILDDIR
#   build-oci.sh -r [-c CACHE]        only make (or find) the cached rootfs
#   build-oci.sh -n [-c CACHE]        print the cached rootfs's path; exit 1
#                                     when it is not built yet
#
#   BUILDDIR  a configured and built vcgate tree (prefix /usr/local is usual)
#   -c CACHE  where root filesystem tarballs are kept, keyed by the package
#             list, this script and the host's apt sources (default
#             _build-image in the source tree); a hit skips mmdebstrap
#   -o LAYOUT the OCI image layout to (re)create (default CACHE/oci)
#   -t TAG    the image tag (default the package version)
#   -s STAGE  keep the image's file tree in STAGE (default: a temporary
#             directory, removed), e.g. to chroot into it
#
# Needs root (mmdebstrap's root mode; the tree keeps its owners), network
# access to the Debian mirror for a cold build, mmdebstrap and umoci
# (Debian packages of the same names).  Prints the layout and tag at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
CACHE=$TOP/_build-image
LAYOUT="" TAG="" STAGE="" ROOTFS_ONLY=0 PROBE=0
# The image's user: numeric, so that Kubernetes' runAsNonRoot can check it.
VCG_UID=10001
while getopts c:o:t:s:rn opt; do
  case $opt in
    c) CACHE=$OPTARG ;;
    o) LAYOUT=$OPTARG ;;
    t) TAG=$OPTARG ;;
    s) STAGE=$OPTARG ;;
    r) ROOTFS_ONLY=1 ;;
    n) ROOTFS_ONLY=1 PROBE=1 ;;
    *) sed -n '/^#   build-oci/,/^#   -s/p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ "$ROOTFS_ONLY" = 0 ]; then
  [ $# -eq 1 ] || { echo "usage: $0 [-c CACHE] [-o LAYOUT] [-t TAG] [-s STAGE] BUILDDIR" >&2; exit 2; }
  BUILD=$(cd "$1" && pwd)
  [ -x "$BUILD/core/vcgate" ] || { echo "build-oci: $BUILD/core/vcgate is not built" >&2; exit 1; }
fi
for tool in mmdebstrap umoci; do
  command -v $tool >/dev/null || { echo "build-oci: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
LAYOUT=${LAYOUT:-$CACHE/oci}

# --- the root filesystem, cached ------------------------------------------
mapfile -t PKGS < <(grep -v '^#' "$HERE/runtime-packages.txt" | grep .)
# The machine's apt sources and the apt settings that change what can be
# fetched (a mirror whose Release files are past Valid-Until, a clock
# ahead of the archive) are the host's, so that the build works wherever
# apt-get does; they are part of the cache key.
SOURCES=()
APTOPTS=()
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  SOURCES=(/etc/apt/sources.list.d/debian.sources)
fi
while read -r line; do
  APTOPTS+=(--aptopt="$line")
done < <(apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date) ' || true)
# mmdebstrap into $ROOTFS (a tarball).  Its text is part of the cache key.
build_rootfs() {
  echo "build-oci: building $ROOTFS (mmdebstrap, ${#PKGS[@]} packages)" >&2
  t0=$(date +%s)
  # minbase: Essential and Priority: required only.  No docs, man pages or
  # locales in the image; apt's lists are dropped after the install.
  mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
    --include="$(IFS=,; echo "${PKGS[*]}")" \
    "${APTOPTS[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="chroot \"\$1\" useradd --system -K SYS_UID_MAX=$VCG_UID -K SYS_GID_MAX=$VCG_UID --uid $VCG_UID --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vcgate" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
    bookworm "$ROOTFS.tmp" "${SOURCES[@]}"
  mv "$ROOTFS.tmp" "$ROOTFS"
  # Only the current key is worth keeping.
  find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "${ROOTFS##*/}" -delete
  echo "build-oci: rootfs built in $(( $(date +%s) - t0 )) s" >&2
}
KEY=$( { cat "$HERE/runtime-packages.txt"; declare -f build_rootfs; cat "${SOURCES[@]}" /dev/null; printf '%s\n' "${APTOPTS[@]}"; } |
       sha256sum | cut -c1-16)
ROOTFS=$CACHE/rootfs-$KEY.tar
if [ "$PROBE" = 1 ]; then
  echo "$ROOTFS"
  [ -f "$ROOTFS" ]
  exit
fi
if [ ! -f "$ROOTFS" ]; then
  build_rootfs
fi
if [ "$ROOTFS_ONLY" = 1 ]; then
  echo "$ROOTFS"
  exit 0
fi

# --- the image's file tree: rootfs + make install -------------------------
if [ -z "$STAGE" ]; then
  STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
  trap 'rm -rf "$STAGE"' EXIT
else
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
fi
# Device nodes belong to the runtime, which mounts its own /dev.
tar -C "$STAGE" --exclude='./dev/*' -xf "$ROOTFS"
make -s -C "$BUILD" install DESTDIR="$STAGE" >"$CACHE/make-install.log" 2>&1 ||
  { tail -n 30 "$CACHE/make-install.log" >&2; exit 1; }
# Development files and systemd's files have no use in a container.
rm -rf "$STAGE"/usr/local/include "$STAGE"/usr/local/lib/pkgconfig \
  "$STAGE"/lib/systemd/system/vcgate.service "$STAGE"/usr/lib/sysusers.d/vcgate.conf
find "$STAGE"/usr/local/lib/vcgate -name '*.la' -delete
install -D -m 0644 "$HERE/vcgate.conf" "$STAGE/etc/vcgate/vcgate.conf"
install -D -m 0755 "$HERE/vcgate-healthcheck" "$STAGE/usr/local/bin/vcgate-healthcheck"
BIN=$(cd "$STAGE" && find . -path '*/bin/vcgate' -type f | sed 's|^\.||')
[ -n "$BIN" ] || { echo "build-oci: make install put no bin/vcgate in $STAGE" >&2; exit 1; }
VERSION=$("$BUILD/core/vcgate" -V | awk '{print $2}')
TAG=${TAG:-$VERSION}

# --- the OCI image ---------------------------------------------------------
rm -rf "$LAYOUT"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$TAG"
umoci insert --image "$LAYOUT:$TAG" --history.comment "Debian 12 minbase + vcgate $VERSION" "$STAGE" /
umoci config --image "$LAYOUT:$TAG" --history.comment "vcgate configuration" \
  --os linux --architecture "$(dpkg --print-architecture)" \
  --config.user "$VCG_UID:$VCG_UID" \
  --config.exposedports 8080/tcp --config.exposedports 4433/udp --config.exposedports 9090/tcp \
  --config.entrypoint "$BIN" --config.cmd -c --config.cmd /etc/vcgate/vcgate.conf \
  --config.workingdir / --config.stopsignal SIGTERM \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.label org.opencontainers.image.title=vcgate \
  --config.label org.opencontainers.image.version="$VERSION" \
  --config.label org.opencontainers.image.base.name=debian:12-minbase
umoci gc --layout "$LAYOUT"
echo "$LAYOUT:$TAG"
