#!/usr/bin/env bash
# Fetch and unpack Debian's linux-source-7.3 (trixie-backports) into the user's cache, with a private
# apt configuration: the system's sources are never edited. Prints the unpacked tree's path.
# Idempotent: a tree that is already unpacked is reused.
set -euo pipefail
CACHE="${IOASID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ioasid}"
PKG="${IOASID_KERNEL_PKG:-linux-source-7.3}"
APTDIR="$CACHE/apt"
SRCDIR="$CACHE/src"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d" "$SRCDIR"

tree=$(ls -d "$SRCDIR"/linux-source-7.3*/ 2>/dev/null | grep -v '\.tar' | head -n1 || true)
if [ -n "$tree" ] && [ -f "$tree/Makefile" ]; then echo "${tree%/}"; exit 0; fi

# Derive a trixie-backports entry from the system's Debian entry (URIs + Signed-By).
sys=/etc/apt/sources.list.d/debian.sources
uri=http://deb.debian.org/debian; key=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -f "$sys" ]; then
  u=$(awk '/^URIs:/{print $2; exit}' "$sys"); [ -n "$u" ] && uri=$u
  k=$(awk '/^Signed-By:/{print $2; exit}' "$sys"); [ -n "$k" ] && key=$k
fi
cat > "$APTDIR/sources.list.d/trixie-backports.sources" <<SRC
Types: deb
URIs: $uri
Suites: trixie-backports
Components: main
Signed-By: $key
SRC
cat > "$APTDIR/apt.conf" <<CONF
Dir::State::Lists "$APTDIR/lists";
Dir::State::status "/var/lib/dpkg/status";
Dir::Cache "$APTDIR/cache";
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$APTDIR/sources.list.d";
APT::Get::List-Cleanup "false";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$APTDIR/apt.conf"
apt-get -q update >&2
deb=$(ls "$SRCDIR"/${PKG}_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  (cd "$SRCDIR" && apt-get -q download "$PKG" >&2)
  deb=$(ls "$SRCDIR"/${PKG}_*.deb | head -n1)
fi
ver=$(dpkg-deb -f "$deb" Version)
stage="$SRCDIR/stage"; rm -rf "$stage"; mkdir -p "$stage"
dpkg-deb -x "$deb" "$stage"
tarball=$(ls "$stage"/usr/src/linux-source-*.tar.* | head -n1)
tar -C "$SRCDIR" -xf "$tarball"
rm -rf "$stage"
tree=$(ls -d "$SRCDIR"/linux-source-7.3*/ | head -n1)
echo "$ver" > "${tree%/}/.debian-version"
echo "${tree%/}"
