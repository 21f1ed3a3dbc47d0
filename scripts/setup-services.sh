#!/usr/bin/env bash
# Make sure the services the test suite needs exist on this Debian 12 machine:
# mosquitto, Chromium (browser tests), PostgreSQL 15 and the TimescaleDB extension (built
# from Debian trixie's source package, Apache edition; see DEVELOPERS.md). Idempotent and
# quick when done.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache="$here/.cache/timescaledb"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql-15)
[ -x "$PG_CONFIG" ] && [ -d "$($PG_CONFIG --includedir-server 2>/dev/null || echo /nonexistent)" ] \
  || need_pkgs+=(postgresql-server-dev-15)
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v xz >/dev/null 2>&1 || need_pkgs+=(xz-utils)
# Debian's Chromium drives the browser tests (Playwright, executable_path; no download).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup-services: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" postgresql-server-dev-15 \
    build-essential
  # Debian starts the packaged mosquitto on 1883; tests run their own brokers.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto 2>/dev/null || true; fi
fi

pkglib=$($PG_CONFIG --pkglibdir)
sharedir=$($PG_CONFIG --sharedir)
if [ -f "$pkglib/timescaledb.so" ] && ls "$sharedir"/extension/timescaledb--*.sql >/dev/null 2>&1; then
  echo "setup-services: timescaledb present ($(ls "$sharedir"/extension/timescaledb.control))"
  exit 0
fi

echo "setup-services: building timescaledb from Debian trixie's source package"
mkdir -p "$cache/lists/partial" "$cache/src"
list="$cache/trixie-src.list"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$list"
aptopts=(-o "Dir::Etc::sourcelist=$list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$cache/lists")
tarball=$(ls "$cache"/src/timescaledb_2.19.*orig.tar.* 2>/dev/null | head -n1 || true)
if [ -z "$tarball" ]; then
  apt-get "${aptopts[@]}" update -q
  (cd "$cache/src" && apt-get "${aptopts[@]}" source --download-only timescaledb)
  tarball=$(ls "$cache"/src/timescaledb_*orig.tar.* | head -n1)
fi
build="$cache/build"
rm -rf "$build" && mkdir -p "$build"
tar -xf "$tarball" -C "$build" --strip-components=1
cd "$build"
./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DAPACHE_ONLY=ON -DWARNINGS_AS_ERRORS=OFF \
  -DPG_CONFIG="$PG_CONFIG" >/dev/null
cd build && make -j"$(nproc)" >/dev/null && $SUDO make install >/dev/null
echo "setup-services: timescaledb installed into $pkglib"
