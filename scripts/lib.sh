# Shared by scripts/demo and scripts/test. Everything the project needs is installed
# from here, so a fresh machine needs nothing but these scripts.

CI_ENVS="lint,typecheck,py311-django52-sqlite,py311-django52-postgres,py311-django52-mariadb,py313-django61-sqlite,py313-django61-postgres,py313-django61-mariadb"

install_system_packages() {
  # mysqlclient compiles against Debian's MariaDB client headers, found by pkg-config.
  # The PgBouncer tests start Debian's pgbouncer themselves, on a free port.
  if pkg-config --exists mysqlclient 2>/dev/null && [ -x /usr/sbin/pgbouncer ]; then return; fi
  echo "Installing default-libmysqlclient-dev and pkg-config (to build mysqlclient) and pgbouncer (its tests)..."
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq default-libmysqlclient-dev pkg-config build-essential \
    pgbouncer >/dev/null
  # The package starts its own pgbouncer on 6432 where it can; the tests need none.
  $sudo service pgbouncer stop >/dev/null 2>&1 || true
}

put_pythons_on_path() {
  # tox looks for python3.11 / 3.12 / 3.13 on PATH; pyenv keeps them out of it.
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for version in 3.11 3.12 3.13; do
    # A pyenv shim answers `command -v` even when it cannot run that version.
    "python$version" -c "" >/dev/null 2>&1 && continue
    local found
    found=$(ls -d "$root"/versions/"$version".* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && PATH="$found/bin:$PATH"
  done
  export PATH
}

require_database_servers() {
  local python; python=$(command -v python3.11 || command -v python3)
  "$python" - <<'PY'
import os, socket, sys
servers = {"PostgreSQL": (os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", 5432))),
           "MariaDB": (os.environ.get("MYSQL_HOST", "127.0.0.1"), int(os.environ.get("MYSQL_PORT", 3306)))}
missing = []
for name, address in servers.items():
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as error:
        missing.append(f"{name} at {address[0]}:{address[1]} ({error})")
if missing:
    sys.exit("Database server(s) unreachable: " + "; ".join(missing) + ". Start them; the suite needs all three databases.")
PY
}

ensure_tool_venv() {
  # tox lives in its own venv, so nothing is installed into the system Python.
  if [ ! -x .tools/bin/tox ]; then
    python3 -m venv .tools
    .tools/bin/pip install -q --disable-pip-version-check "tox>=4.11,<5"
  fi
}
