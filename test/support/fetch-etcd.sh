#!/usr/bin/env bash
# Fetches etcd 3.5 (etcd and etcdctl) from Debian's trixie suite and prints
# the directory holding the two binaries, for ETCD_BIN_DIR.
#
# Nothing is installed system-wide: apt runs with its own sources list, lists
# and cache under the cache directory, downloads the two .deb files, and
# dpkg-deb unpacks them there. A second run finds the binaries and reuses them.
#
# The cache is ETCD35_CACHE_DIR if set, else /var/cache/etcd-cache-proxy/etcd-3.5
# when that can be written (root, as on CI), else node_modules/.cache/etcd-3.5.
# Exits non-zero, with one line on stderr, when the packages cannot be had.
set -euo pipefail
cd "$(dirname "$0")/../.."

suite=trixie
# ETCD35_DEBIAN_MIRROR: another Debian mirror (a local one, or an unreachable one to try the offline path).
mirror=${ETCD35_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

pick_cache() {
  if [ -n "${ETCD35_CACHE_DIR:-}" ]; then echo "$ETCD35_CACHE_DIR"; return; fi
  if mkdir -p /var/cache/etcd-cache-proxy 2>/dev/null && [ -w /var/cache/etcd-cache-proxy ]; then
    echo /var/cache/etcd-cache-proxy/etcd-3.5
  else
    echo "$PWD/node_modules/.cache/etcd-3.5"
  fi
}
cache=$(pick_cache)
bin="$cache/root/usr/bin"

# Whether the etcd in the cache says it is 3.5 (read whole: grep -q would cut the pipe under pipefail).
is_35() {
  local version
  version=$("$bin/etcd" --version 2>/dev/null || true)
  [[ "$version" == *"etcd Version: 3.5."* ]]
}

# Reuse: both binaries present and etcd says it is 3.5.
if [ -x "$bin/etcd" ] && [ -x "$bin/etcdctl" ] && is_35; then
  echo "$bin"
  exit 0
fi

fail() {
  echo "test/support/fetch-etcd.sh: cannot fetch etcd 3.5 from Debian $suite: $1" >&2
  exit 1
}
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found"
command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb not found"
[ -r "$keyring" ] || fail "$keyring missing (package debian-archive-keyring)"

mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/apt/parts" "$cache/debs" || fail "cannot write $cache"
arch=$(dpkg --print-architecture)
echo "deb [arch=$arch signed-by=$keyring] $mirror $suite main" >"$cache/apt/sources.list"
: >"$cache/apt/status"
# Only the private list, no system preferences or sources.list.d, one architecture, and an empty
# package status: what this machine has installed (bookworm's etcd 3.4) is no candidate.
apt_opts=(
  -o "Dir::Etc::SourceList=$cache/apt/sources.list"
  -o "Dir::Etc::SourceParts=$cache/apt/parts"
  -o "Dir::Etc::PreferencesParts=$cache/apt/parts"
  -o "Dir::Etc::Preferences=$cache/apt/parts/none"
  -o "Dir::State::Lists=$cache/apt/lists"
  -o "Dir::State::status=$cache/apt/status"
  -o "Dir::Cache=$cache/apt/cache"
  -o "APT::Architectures::=$arch"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
  -o "Acquire::Retries=2"
  -o "Acquire::http::Timeout=20"
)
log="$cache/apt.log"
# --error-on=any: an index that failed to download is a failure, not a warning over an old list.
apt-get "${apt_opts[@]}" -qq --error-on=any update >"$log" 2>&1 || fail "apt-get update failed ($(tail -1 "$log"))"
rm -f "$cache/debs/"*.deb
(cd "$cache/debs" && apt-get "${apt_opts[@]}" -qq download "etcd-server/$suite" "etcd-client/$suite") >>"$log" 2>&1 || fail "apt-get download failed ($(tail -1 "$log"))"

# Unpack into a fresh tree, then move it into place, so a half-done run is never reused.
rm -rf "$cache/root.new"
mkdir -p "$cache/root.new"
for deb in "$cache/debs/"*.deb; do
  dpkg-deb -x "$deb" "$cache/root.new" || fail "dpkg-deb -x $deb failed"
done
rm -rf "$cache/root"
mv "$cache/root.new" "$cache/root"
is_35 || fail "the unpacked etcd is not 3.5: $("$bin/etcd" --version 2>&1 | head -1)"
[ -x "$bin/etcdctl" ] || fail "etcdctl missing from etcd-client"
echo "$bin"
