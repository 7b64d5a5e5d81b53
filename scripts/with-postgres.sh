#!/usr/bin/env bash
# with-postgres.sh: run a command against a real PostgreSQL.
#
#   scripts/with-postgres.sh [--keep] [--] CMD [ARG...]
#   scripts/with-postgres.sh --keep          start one, print its URL, leave it up
#   scripts/with-postgres.sh --stop DIR      stop a cluster left by --keep
#
# Uses TEST_DATABASE_URL, then DATABASE_URL, when one of them answers.
# Otherwise it starts a throwaway cluster: initdb/pg_ctl from the newest
# /usr/lib/postgresql/*/bin (installing Debian's postgresql package when
# absent and running as root), in a fresh /tmp/relay-pg.XXXXXX, on the first
# free port from PG_PORT (default 55432), listening on 127.0.0.1 with trust
# auth and durability off (pg_stat_statements preloaded when the server has
# it). CMD runs with DATABASE_URL and TEST_DATABASE_URL
# exported; on exit (also on failure or Ctrl-C) the throwaway cluster is
# stopped and its directory removed, and CMD's exit code is returned.
#
# Environment: PG_PORT first port to try (55432); PG_BINDIR server binaries
# to use instead of the newest /usr/lib/postgresql/*/bin; PG_SHARED_BUFFERS
# the throwaway cluster's shared_buffers (PostgreSQL's default, 128MB, when
# unset; make bench sets 1GB).
set -euo pipefail

prog=with-postgres
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { log "$*"; exit 1; }

# redact hides a password in a URL before it is printed.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# usage prints the comment block at the top of this file.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; }

# shq quotes a word for a POSIX shell.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

keep=
stop_dir=
while (($#)); do
  case $1 in
    --keep) keep=1; shift ;;
    --stop) [[ $# -ge 2 ]] || die "--stop needs the directory --keep printed"; stop_dir=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) usage; die "unknown option $1" ;;
    *) break ;;
  esac
done
if [[ -z $stop_dir && -z $keep && $# -eq 0 ]]; then
  usage
  die "no command given"
fi

# ---- helpers ---------------------------------------------------------------

# find_bindir prints the newest PostgreSQL server bin directory.
find_bindir() {
  local d
  if [[ -n ${PG_BINDIR:-} ]]; then
    [[ -x $PG_BINDIR/initdb && -x $PG_BINDIR/pg_ctl ]] || return 1
    echo "$PG_BINDIR"
    return 0
  fi
  d=$(for f in /usr/lib/postgresql/*/bin/initdb; do [[ -x $f ]] && dirname "$f"; done | sort -V | tail -n 1)
  [[ -n $d && -x $d/pg_ctl ]] || return 1
  echo "$d"
}

# client prints the path of a PostgreSQL client program (psql, pg_isready).
client() {
  local p
  p=$(command -v "$1" 2>/dev/null) && { echo "$p"; return 0; }
  p=$(for f in /usr/lib/postgresql/*/bin/"$1"; do [[ -x $f ]] && echo "$f"; done | sort -V | tail -n 1)
  [[ -n $p ]] && echo "$p"
}

# tcp_answers is the tiny check used when no client program is at hand:
# something accepts TCP connections at the URL's host and port.
tcp_answers() {
  local url=$1 hostport host port
  [[ $url =~ ^postgres(ql)?:// ]] || { log "no psql to check a non-URL DSN; using it as given"; return 0; }
  hostport=${url#*://}
  hostport=${hostport%%[/?]*}
  hostport=${hostport##*@}
  if [[ $hostport =~ ^\[(.*)\](:([0-9]+))?$ ]]; then
    host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]}
  else
    host=${hostport%%:*} port=
    [[ $hostport == *:* ]] && port=${hostport##*:}
  fi
  [[ -n $host ]] || host=localhost
  # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "${port:-5432}" 2>/dev/null
}

# answers reports whether a database URL accepts a query (or, lacking psql,
# at least a connection).
answers() {
  local url=$1 psql isready err
  if psql=$(client psql); then
    if err=$(PGCONNECT_TIMEOUT=5 "$psql" -X -w -A -t -q -d "$url" -c 'select 1' 2>&1 >/dev/null); then
      return 0
    fi
    log "$(redact "$url") did not answer: ${err//$'\n'/ }"
    return 1
  fi
  if isready=$(client pg_isready); then
    "$isready" -q -t 5 -d "$url"
    return
  fi
  tcp_answers "$url"
}

# port_busy reports whether something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# as_pg runs a command as the owner of the throwaway cluster: the postgres
# user when we are root (initdb refuses to run as root), else ourselves. It
# runs from / so that postgres can always read its working directory.
as_pg() {
  if ((EUID != 0)); then
    (cd / && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
  fi
}

install_postgres() {
  ((EUID == 0)) || die "no PostgreSQL server under /usr/lib/postgresql: install Debian's postgresql package or set DATABASE_URL"
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL server under /usr/lib/postgresql and no apt-get to install one; set DATABASE_URL"
  log "installing Debian's postgresql package"
  # One install at a time when several runs start together.
  (
    command -v flock >/dev/null 2>&1 && flock 9
    find_bindir >/dev/null && exit 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql
  ) 9>/tmp/relay-pg-install.lock >&2
}

# stop_cluster stops the cluster in DIR/data and removes DIR.
stop_cluster() {
  local dir=$1 data=$1/data pid
  if [[ -f $data/postmaster.pid ]]; then
    pid=$(head -n 1 "$data/postmaster.pid")
    as_pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
      { [[ $pid =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null; } || true
  fi
  rm -rf -- "$dir"
}

# cleanup runs on exit: it stops the throwaway cluster and removes its
# directory (unless --keep left a running one behind), keeping the exit code.
# shellcheck disable=SC2317 # invoked by trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  [[ -n $keep && -n $ready ]] || stop_cluster "$tmp"
  exit "$rc"
}

if [[ -n ${PG_BINDIR:-} ]] && ! find_bindir >/dev/null; then
  die "PG_BINDIR=$PG_BINDIR has no initdb and pg_ctl"
fi

# ---- --stop DIR ----------------------------------------------------------

if [[ -n $stop_dir ]]; then
  [[ $stop_dir == /tmp/relay-pg.* && -d $stop_dir/data ]] || die "$stop_dir is not a cluster started by $prog --keep"
  bindir=$(find_bindir) || die "no PostgreSQL server binaries found"
  stop_cluster "$stop_dir"
  log "stopped and removed $stop_dir"
  exit 0
fi

# ---- a database that answers, given or throwaway -------------------------

url=
for var in TEST_DATABASE_URL DATABASE_URL; do
  if [[ -n ${!var:-} ]] && answers "${!var}"; then
    url=${!var}
    log "using $var ($(redact "$url"))"
    break
  fi
done

tmp=
ready=
if [[ -z $url ]]; then
  bindir=$(find_bindir) || { install_postgres; bindir=$(find_bindir) || die "no PostgreSQL server binaries after installing"; }
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user to own the cluster"
  fi

  tmp=$(mktemp -d /tmp/relay-pg.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  ((EUID != 0)) || chown postgres: "$tmp"

  data=$tmp/data
  if ! as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync >"$tmp/initdb.log" 2>&1; then
    cat "$tmp/initdb.log" >&2
    die "initdb failed"
  fi
  cat >>"$data/postgresql.conf" <<CONF

# with-postgres.sh: a throwaway cluster for tests; durability is off.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
timezone = 'UTC'
CONF
  if [[ -n ${PG_SHARED_BUFFERS:-} ]]; then
    [[ $PG_SHARED_BUFFERS =~ ^[0-9]+(kB|MB|GB)$ ]] || die "PG_SHARED_BUFFERS=$PG_SHARED_BUFFERS: want a size such as 1GB"
    echo "shared_buffers = '$PG_SHARED_BUFFERS'" >>"$data/postgresql.conf"
  fi
  # pg_stat_statements, when the server has it, lets make bench count the
  # statements the relay runs per row (it changes nothing else).
  if [[ -f $bindir/../lib/pg_stat_statements.so ]]; then
    echo "shared_preload_libraries = 'pg_stat_statements'" >>"$data/postgresql.conf"
  fi

  first=${PG_PORT:-55432}
  port=
  for ((p = first; p < first + 100; p++)); do
    port_busy "$p" && continue
    rm -f "$tmp/postgres.log"
    if as_pg "$bindir/pg_ctl" -D "$data" -l "$tmp/postgres.log" -o "-p $p" -w -t 60 start >/dev/null 2>&1; then
      port=$p
      break
    fi
    # Another run may have taken the port since we looked: try the next.
    grep -qE 'could not bind|could not create any TCP/IP sockets|in use' "$tmp/postgres.log" 2>/dev/null && continue
    cat "$tmp/postgres.log" >&2 2>/dev/null || true
    die "pg_ctl start failed on port $p"
  done
  [[ -n $port ]] || die "no free port in $first..$((first + 99))"

  url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  answers "$url" || die "the throwaway cluster started but does not answer at $url"
  ready=1
  log "started throwaway PostgreSQL $("$bindir/postgres" -V | awk '{print $3}') at $url (data in $tmp)"
fi

export DATABASE_URL=$url TEST_DATABASE_URL=$url

if [[ -n $keep ]]; then
  printf 'export DATABASE_URL=%s TEST_DATABASE_URL=%s\n' "$(shq "$url")" "$(shq "$url")"
  [[ -z $tmp ]] || log "left running; stop it with: $0 --stop $tmp"
fi

rc=0
if (($#)); then
  "$@" || rc=$?
fi
exit "$rc"
