#!/usr/bin/env bash
# Runs every patpush test: type check, unit and integration tests, then the
# end-to-end tests in Chromium. Installs what is missing first: the npm
# packages, and Debian's chromium package when running as root with apt-get.
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

install_npm_packages
install_chromium

echo "test: type check"
npx tsc --noEmit -p tsconfig.json

echo "test: browser bundle"
node scripts/build-browser.mjs

mapfile -t test_files < <(
  find protocol common server tasks client patterns examples -name '*.test.ts' | sort
  find e2e -name '*.spec.ts' | sort
)

echo "test: running ${#test_files[@]} test files"
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${test_files[@]}"
