#!/usr/bin/env bash
# Runs the patpush benchmarks: every scenario against patpush and its peers,
# writing JSON to bench/results/ and the report to docs/benchmarks.md.
# Installs what is missing first, like the tests. Arguments go to bench/run.ts
# (--quick, --only S2,S3; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

install_log_prefix=bench
# shellcheck source=install.sh
source scripts/install.sh

install_npm_packages
install_chromium
install_redis
install_python_celery

node scripts/build-browser.mjs
exec node --import tsx bench/run.ts "$@"
