#!/usr/bin/env bash
# with-pgbouncer.sh: run a command with PgBouncer installed, for the tests
# that run the relay and producers through it in transaction pooling mode
# (cmd/relay TestPgBouncer; internal/pgtest.StartPgBouncer starts one per
# test).
#
#   scripts/with-pgbouncer.sh CMD [ARG...]
#
# Uses $PGBOUNCER, pgbouncer on PATH or /usr/sbin/pgbouncer when one is
# installed. Otherwise, running as root with apt-get, it installs Debian's
# pgbouncer package (the service it ships is not started); else it says how
# to install it and runs CMD anyway (the PgBouncer tests then fail, naming
# what is missing).
set -euo pipefail

have_pgbouncer() {
  [[ -n "${PGBOUNCER:-}" ]] && [[ -x "$PGBOUNCER" ]] && return 0
  command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]
}

if ! have_pgbouncer; then
  if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
    echo "with-pgbouncer: installing Debian's pgbouncer package for the PgBouncer tests" >&2
    (
      flock 9
      have_pgbouncer || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer
      }
    ) 9>/tmp/relay-pgbouncer-install.lock >/dev/null
  else
    echo "with-pgbouncer: no pgbouncer found; install it (apt-get install pgbouncer) or set PGBOUNCER, or the PgBouncer tests fail" >&2
  fi
fi
exec "$@"
