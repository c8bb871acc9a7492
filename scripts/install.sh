# Installs what the patpush tests and benchmarks need when it is missing:
# the npm packages, and Debian's packages when running as root with apt-get.
# Sourced by scripts/test.sh and scripts/bench.sh; messages start with
# $install_log_prefix.
install_log_prefix="${install_log_prefix:-install}"

chromium_path="${PATPUSH_CHROMIUM:-/usr/bin/chromium}"

# Installs Debian packages "$2..." with apt-get when running as root with
# apt-get; "$1" names them in the messages. A failed install is reported, and
# the caller's own check decides what happens next.
apt_install() {
  local label=$1
  shift
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    return
  fi
  echo "$install_log_prefix: installing Debian's $label"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }; then
    echo "$install_log_prefix: apt-get could not install $label" >&2
  fi
}

install_npm_packages() {
  if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    return
  fi
  echo "$install_log_prefix: installing npm packages"
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
  apt_install "chromium package" chromium
  if [ ! -x "$chromium_path" ]; then
    echo "$install_log_prefix: Chromium not found at $chromium_path." >&2
    echo "$install_log_prefix: install Debian's package as root: apt-get install chromium" >&2
    echo "$install_log_prefix: or set PATPUSH_CHROMIUM to the path of a Chromium binary." >&2
    exit 1
  fi
}

install_redis() {
  if command -v "${PATPUSH_REDIS_SERVER:-redis-server}" >/dev/null; then
    return
  fi
  apt_install "redis-server package" redis-server
  if ! command -v "${PATPUSH_REDIS_SERVER:-redis-server}" >/dev/null; then
    echo "$install_log_prefix: redis-server not found; tests start their own on a free port." >&2
    echo "$install_log_prefix: install Debian's package as root: apt-get install redis-server" >&2
    echo "$install_log_prefix: or set PATPUSH_REDIS_SERVER to the path of a redis-server binary." >&2
    exit 1
  fi
}

# The Python producer example is tested with Debian's python3 and python3-redis.
install_python_redis() {
  local python="${PATPUSH_PYTHON:-/usr/bin/python3}"
  if "$python" -c "import redis" 2>/dev/null; then
    return
  fi
  apt_install "python3-redis package" python3 python3-redis
  if ! "$python" -c "import redis" 2>/dev/null; then
    echo "$install_log_prefix: $python cannot import redis." >&2
    echo "$install_log_prefix: install Debian's packages as root: apt-get install python3 python3-redis" >&2
    echo "$install_log_prefix: or set PATPUSH_PYTHON to a Python 3 that has the redis package." >&2
    exit 1
  fi
}

# The task benchmark compares with Celery, from Debian's python3-celery and
# python3-requests. Without them that comparison is skipped, not failed.
install_python_celery() {
  # Celery reaches its Redis broker through redis-py, so the comparison needs python3-redis too.
  local python="${PATPUSH_PYTHON:-/usr/bin/python3}"
  if "$python" -c "import celery, redis, requests" 2>/dev/null; then
    return
  fi
  apt_install "python3-celery, python3-redis and python3-requests packages" python3 python3-celery python3-redis python3-requests
  if ! "$python" -c "import celery, redis, requests" 2>/dev/null; then
    echo "$install_log_prefix: $python cannot import celery, redis and requests; the Celery comparison is skipped." >&2
    echo "$install_log_prefix: install Debian's packages as root: apt-get install python3-celery python3-redis python3-requests" >&2
  fi
}
