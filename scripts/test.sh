#!/usr/bin/env bash
# Runs every patpush test: type check, unit and integration tests, then the
# end-to-end tests in Chromium. Installs what is missing first: the npm
# packages, and Debian's chromium and redis-server packages when running as
# root with apt-get. Tests that need Redis start their own redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

install_log_prefix=test
# shellcheck source=install.sh
source scripts/install.sh

install_npm_packages
install_chromium
install_redis
install_python_redis
install_python_celery

echo "test: type check"
npx tsc --noEmit -p tsconfig.json

echo "test: browser bundle"
node scripts/build-browser.mjs

mapfile -t test_files < <(
  find protocol common server tasks client patterns examples cli security bench -name '*.test.ts' 2>/dev/null | sort
  find e2e -name '*.spec.ts' | sort
)

echo "test: running ${#test_files[@]} test files"
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${test_files[@]}"
