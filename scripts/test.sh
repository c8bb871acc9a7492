#!/usr/bin/env bash
# Runs every patpush test: type check, unit and integration tests, then the
# end-to-end tests in Chromium. Installs what is missing first: the npm
# packages, and Debian's chromium and redis-server packages when running as
# root with apt-get. Tests that need Redis start their own redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium_path="${PATPUSH_CHROMIUM:-/usr/bin/chromium}"

install_npm_packages() {
  if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    return
  fi
  echo "test: installing npm packages"
  if [ "${CI:-}" = "true" ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
}

install_chromium() {
  if [ -x "$chromium_path" ]; then
    return
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's chromium package"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      echo "test: apt-get could not install chromium" >&2
    fi
  fi
  if [ ! -x "$chromium_path" ]; then
    echo "test: Chromium not found at $chromium_path." >&2
    echo "test: install Debian's package as root: apt-get install chromium" >&2
    echo "test: or set PATPUSH_CHROMIUM to the path of a Chromium binary." >&2
    exit 1
  fi
}

install_redis() {
  if command -v "${PATPUSH_REDIS_SERVER:-redis-server}" >/dev/null; then
    return
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's redis-server package"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; then
      echo "test: apt-get could not install redis-server" >&2
    fi
  fi
  if ! command -v "${PATPUSH_REDIS_SERVER:-redis-server}" >/dev/null; then
    echo "test: redis-server not found; tests start their own on a free port." >&2
    echo "test: install Debian's package as root: apt-get install redis-server" >&2
    echo "test: or set PATPUSH_REDIS_SERVER to the path of a redis-server binary." >&2
    exit 1
  fi
}

# The Python producer example is tested with Debian's python3 and python3-redis.
install_python_redis() {
  local python="${PATPUSH_PYTHON:-/usr/bin/python3}"
  if "$python" -c "import redis" 2>/dev/null; then
    return
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's python3-redis package"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-redis >/dev/null; }; then
      echo "test: apt-get could not install python3-redis" >&2
    fi
  fi
  if ! "$python" -c "import redis" 2>/dev/null; then
    echo "test: $python cannot import redis." >&2
    echo "test: install Debian's packages as root: apt-get install python3 python3-redis" >&2
    echo "test: or set PATPUSH_PYTHON to a Python 3 that has the redis package." >&2
    exit 1
  fi
}

install_npm_packages
install_chromium
install_redis
install_python_redis

echo "test: type check"
npx tsc --noEmit -p tsconfig.json

echo "test: browser bundle"
node scripts/build-browser.mjs

mapfile -t test_files < <(
  find protocol common server tasks client patterns examples cli security -name '*.test.ts' 2>/dev/null | sort
  find e2e -name '*.spec.ts' | sort
)

echo "test: running ${#test_files[@]} test files"
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${test_files[@]}"
