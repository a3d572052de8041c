#!/usr/bin/env bash
# Runs a private ejabberd 23.01 instance (Debian package) for syncside:
# development, tests and CI. Several instances can run side by side as long
# as each has its own EJABBERD_HOME and ports.
#
# Usage: scripts/ejabberd.sh <command> [args]
#   install              install ejabberd + erlang-p1-pgsql with apt if missing
#   build                compile ejabberd/mod_syncside.erl into $EJABBERD_HOME/ebin
#   start                build, render config, start, wait until ready,
#                        register the observer account (no-op if running)
#   stop                 stop the instance and wait until it is down
#   status               exit 0 if the instance is running
#   register JID PASS    register an account (no-op if it exists)
#   ctl ARGS...          run ejabberdctl ARGS against the instance
#
# Environment (defaults in brackets):
#   EJABBERD_HOME            instance dir: conf/ spool/ logs/ ebin/
#                            [<repo>/.ejabberd/local]
#   XMPP_DOMAIN              the served XMPP domain [localhost]
#   EJABBERD_C2S_PORT        client listener, plain text, 127.0.0.1 [5222]
#   EJABBERD_HTTP_PORT       HTTP listener with /api (mod_http_api) [5280]
#   EJABBERD_COMPONENT_PORT  component listener for push.$XMPP_DOMAIN [5347]
#   EJABBERD_DIST_PORT       Erlang distribution port; no epmd is used [4371]
#   EJABBERD_NODE            Erlang node name [syncside-$EJABBERD_DIST_PORT@127.0.0.1]
#   OBSERVER_JID             account that receives the message copies
#                            [observer@$XMPP_DOMAIN]
#   OBSERVER_PASSWORD        its password [observer-dev-password]
#   PUSH_COMPONENT_SECRET    secret of the push.$XMPP_DOMAIN component
#                            [push-dev-secret]
#   EJABBERD_START_TIMEOUT   seconds to wait for start/stop [60]
#   EJABBERD_SQL             postgres://user[:password]@host[:port]/database: keep
#                            ejabberd's data (archives included) in PostgreSQL; the
#                            database is created and given ejabberd's schema if
#                            missing [unset: Mnesia in the spool dir]
#
# Must run as root (or as user ejabberd): Debian's ejabberdctl runs the node
# as user ejabberd.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

EJABBERD_HOME="${EJABBERD_HOME:-$REPO_DIR/.ejabberd/local}"
XMPP_DOMAIN="${XMPP_DOMAIN:-localhost}"
EJABBERD_C2S_PORT="${EJABBERD_C2S_PORT:-5222}"
EJABBERD_HTTP_PORT="${EJABBERD_HTTP_PORT:-5280}"
EJABBERD_COMPONENT_PORT="${EJABBERD_COMPONENT_PORT:-5347}"
EJABBERD_DIST_PORT="${EJABBERD_DIST_PORT:-4371}"
# A dot in the host part makes ejabberdctl use long names (-name), which
# works with a numeric loopback address and needs no resolvable host name.
EJABBERD_NODE="${EJABBERD_NODE:-syncside-${EJABBERD_DIST_PORT}@127.0.0.1}"
OBSERVER_JID="${OBSERVER_JID:-observer@$XMPP_DOMAIN}"
OBSERVER_PASSWORD="${OBSERVER_PASSWORD:-observer-dev-password}"
PUSH_COMPONENT_SECRET="${PUSH_COMPONENT_SECRET:-push-dev-secret}"
EJABBERD_START_TIMEOUT="${EJABBERD_START_TIMEOUT:-60}"
EJABBERD_SQL="${EJABBERD_SQL:-}"

EJABBERD_USER=ejabberd
EJABBERDCTL="${EJABBERDCTL:-/usr/sbin/ejabberdctl}"
MODULE_SRC="$REPO_DIR/ejabberd/mod_syncside.erl"
CONFIG_TPL="$REPO_DIR/ejabberd/ejabberd.yml.tpl"

CONF_DIR="$EJABBERD_HOME/conf"
SPOOL_DIR="$EJABBERD_HOME/spool"
LOGS_DIR="$EJABBERD_HOME/logs"
EBIN_DIR="$EJABBERD_HOME/ebin"
CONFIG_FILE="$CONF_DIR/ejabberd.yml"
CTL_CONFIG_FILE="$CONF_DIR/ejabberdctl.cfg"

log() { echo "ejabberd.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# First existing match of a glob, so another packaged version still works.
first_match() {
  local pattern="$1" path
  for path in $pattern; do
    [ -e "$path" ] && { echo "$path"; return 0; }
  done
  return 1
}

ejabberd_ebin() { first_match "/usr/lib/x86_64-linux-gnu/ejabberd-*/ebin /usr/lib/*/ejabberd-*/ebin /usr/lib/ejabberd-*/ebin /usr/lib/erlang/lib/ejabberd-*/ebin"; }
ejabberd_include() { first_match "/usr/lib/x86_64-linux-gnu/ejabberd-*/include /usr/lib/*/ejabberd-*/include /usr/lib/ejabberd-*/include /usr/lib/erlang/lib/ejabberd-*/include"; }
xmpp_include() { first_match "/usr/lib/erlang/lib/p1_xmpp-*/include /usr/lib/*/p1_xmpp-*/include"; }
pgsql_lib() { first_match "/usr/lib/erlang/lib/p1_pgsql-* /usr/lib/*/p1_pgsql-*"; }

require_privileges() {
  case "$(id -un)" in
    root | "$EJABBERD_USER") ;;
    *) die "must run as root or as user $EJABBERD_USER (Debian's ejabberdctl runs the node as $EJABBERD_USER)" ;;
  esac
}

# ejabberdctl with this instance's paths and node name.
ctl() {
  "$EJABBERDCTL" \
    --config-dir "$CONF_DIR" \
    --config "$CONFIG_FILE" \
    --ctl-config "$CTL_CONFIG_FILE" \
    --spool "$SPOOL_DIR" \
    --logs "$LOGS_DIR" \
    --node "$EJABBERD_NODE" \
    "$@"
}

is_running() {
  [ -f "$CTL_CONFIG_FILE" ] || return 1
  ctl status >/dev/null 2>&1
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() {
  local f
  for f in "$LOGS_DIR/ejabberd.log" "$LOGS_DIR/error.log" "$LOGS_DIR"/erl_crash_*.dump; do
    [ -f "$f" ] || continue
    log "--- tail of $f"
    tail -n 40 "$f" >&2
  done
}

# Debian's system service (node ejabberd@localhost on the default ports)
# must not keep running after an install: it would take port 5222/5280.
stop_system_service() {
  if "$EJABBERDCTL" status >/dev/null 2>&1; then
    log "stopping the system's ejabberd service started by the package"
    if command -v invoke-rc.d >/dev/null 2>&1; then
      invoke-rc.d ejabberd stop >/dev/null 2>&1 || true
    fi
    "$EJABBERDCTL" status >/dev/null 2>&1 && "$EJABBERDCTL" stop >/dev/null 2>&1 || true
  fi
}

cmd_install() {
  if command -v "$EJABBERDCTL" >/dev/null 2>&1 && ejabberd_ebin >/dev/null && pgsql_lib >/dev/null; then
    log "ejabberd and p1_pgsql are installed"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "ejabberd or erlang-p1-pgsql is missing; run as root: apt-get install -y ejabberd erlang-p1-pgsql"
  # Keep the package's postinst from starting the system service; restore
  # whatever policy was there before.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then
    backup="$(mktemp)"
    cp -p "$policy" "$backup"
  fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd erlang-p1-pgsql || rc=$?
  if [ -n "$backup" ]; then mv "$backup" "$policy"; else rm -f "$policy"; fi
  stop_system_service
  [ "$rc" -eq 0 ] || die "apt-get failed ($rc)"
}

cmd_build() {
  command -v erlc >/dev/null 2>&1 || die "erlc not found (run: $0 install)"
  local ebin inc xinc
  ebin="$(ejabberd_ebin)" || die "ejabberd ebin directory not found"
  inc="$(ejabberd_include)" || die "ejabberd include directory not found"
  xinc="$(xmpp_include)" || die "p1_xmpp include directory not found"
  mkdir -p "$EBIN_DIR"
  erlc -o "$EBIN_DIR" -I "$xinc" -I "$inc" -pa "$ebin" +debug_info "$MODULE_SRC"
  if [ "$(id -u)" -eq 0 ]; then chown -R "$EJABBERD_USER:" "$EBIN_DIR"; fi
}

# Splits EJABBERD_SQL into SQL_USER SQL_PASSWORD SQL_HOST SQL_PORT SQL_DB.
parse_sql_url() {
  local re='^postgres(ql)?://([^:@/]+)(:([^@/]*))?@([^:/]+)(:([0-9]+))?/([A-Za-z0-9_]+)$'
  [[ "$EJABBERD_SQL" =~ $re ]] || die "EJABBERD_SQL must look like postgres://user[:password]@host[:port]/database"
  SQL_USER="${BASH_REMATCH[2]}"
  SQL_PASSWORD="${BASH_REMATCH[4]}"
  SQL_HOST="${BASH_REMATCH[5]}"
  SQL_PORT="${BASH_REMATCH[7]:-5432}"
  SQL_DB="${BASH_REMATCH[8]}"
}

# Creates the database and loads ejabberd's own PostgreSQL schema when it is not there yet.
prepare_sql() {
  parse_sql_url
  command -v psql >/dev/null 2>&1 || die "psql not found (apt-get install -y postgresql-client)"
  local admin="postgres://$SQL_USER${SQL_PASSWORD:+:$SQL_PASSWORD}@$SQL_HOST:$SQL_PORT/postgres"
  if ! psql "$admin" -Atqc "select 1 from pg_database where datname = '$SQL_DB'" | grep -q 1; then
    psql "$admin" -qc "create database $SQL_DB" >/dev/null
    log "created database $SQL_DB"
  fi
  if ! psql "$EJABBERD_SQL" -Atqc "select to_regclass('public.archive') is not null" | grep -q t; then
    psql "$EJABBERD_SQL" -q -v ON_ERROR_STOP=1 -f "$(sql_schema)" >/dev/null
    log "loaded ejabberd's schema into $SQL_DB"
  fi
}

sql_schema() {
  local f
  for f in /usr/share/ejabberd/sql/pg.sql /usr/lib/x86_64-linux-gnu/ejabberd-*/priv/sql/pg.sql; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  die "ejabberd's pg.sql schema not found"
}

storage_block() {
  if [ -z "$EJABBERD_SQL" ]; then
    printf 'default_db: mnesia\n'
    return
  fi
  parse_sql_url
  printf 'default_db: sql\nsql_type: pgsql\nsql_server: "%s"\nsql_port: %s\nsql_database: "%s"\nsql_username: "%s"\n' \
    "$SQL_HOST" "$SQL_PORT" "$SQL_DB" "$SQL_USER"
  [ -n "$SQL_PASSWORD" ] && printf 'sql_password: "%s"\n' "$SQL_PASSWORD"
  printf 'sql_pool_size: 10\n'
}

# Replaces ${VAR} for the variables documented above, nothing else.
render_config() {
  local text var
  text="$(<"$CONFIG_TPL")"
  EJABBERD_STORAGE="$(storage_block)"
  for var in XMPP_DOMAIN EJABBERD_C2S_PORT EJABBERD_HTTP_PORT EJABBERD_COMPONENT_PORT \
    OBSERVER_JID PUSH_COMPONENT_SECRET EJABBERD_STORAGE; do
    text="${text//"\${$var}"/"${!var}"}"
  done
  if [[ "$text" =~ \$\{[A-Z_]+\} ]]; then
    die "config template uses an unknown variable: ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text" >"$CONFIG_FILE.tmp"
  mv "$CONFIG_FILE.tmp" "$CONFIG_FILE"

  # ERL_DIST_PORT makes the node listen on a fixed port and makes
  # ejabberdctl connect to it directly: no epmd is started or contacted
  # (another one may own 4369 on the machine).
  cat >"$CTL_CONFIG_FILE" <<EOF
# Generated by scripts/ejabberd.sh; edits are overwritten at start.
ERLANG_NODE=$EJABBERD_NODE
ERL_DIST_PORT=$EJABBERD_DIST_PORT
INET_DIST_INTERFACE=127.0.0.1
ERL_OPTIONS="-pa $EBIN_DIR"
EJABBERD_BYPASS_WARNINGS=true
EOF
  # ejabberdctl points ERL_INETRC at the config dir.
  printf '{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n' >"$CONF_DIR/inetrc"
}

register_account() {
  local jid="$1" password="$2" user host
  [[ "$jid" == *@* ]] || die "not a bare JID: $jid"
  user="${jid%@*}"
  host="${jid#*@}"
  if ctl check_account "$user" "$host" >/dev/null 2>&1; then
    return 0
  fi
  ctl register "$user" "$host" "$password" >/dev/null
  log "registered $user@$host"
}

cmd_start() {
  require_privileges
  command -v "$EJABBERDCTL" >/dev/null 2>&1 || die "ejabberdctl not found (run: $0 install)"
  # A node started from this home with other ports: its config would be overwritten below, and
  # it could be neither reached nor stopped any more (nor is it this instance, already running).
  local owner
  if [ -f "$CTL_CONFIG_FILE" ]; then
    owner="$(sed -n 's/^ERL_DIST_PORT=//p' "$CTL_CONFIG_FILE")"
    if [ -n "$owner" ] && [ "$owner" != "$EJABBERD_DIST_PORT" ] && port_open "$owner"; then
      die "$EJABBERD_HOME is in use by the ejabberd on distribution port $owner: stop it, or set another EJABBERD_HOME"
    fi
  fi
  if is_running; then
    log "already running: $EJABBERD_NODE ($EJABBERD_HOME)"
    register_account "$OBSERVER_JID" "$OBSERVER_PASSWORD"
    return 0
  fi
  local port
  for port in "$EJABBERD_C2S_PORT" "$EJABBERD_HTTP_PORT" "$EJABBERD_COMPONENT_PORT" "$EJABBERD_DIST_PORT"; do
    port_open "$port" && die "port $port on 127.0.0.1 is already in use"
  done
  mkdir -p "$CONF_DIR" "$SPOOL_DIR" "$LOGS_DIR" "$EBIN_DIR"
  [ -n "$EJABBERD_SQL" ] && prepare_sql
  cmd_build
  render_config
  if [ "$(id -u)" -eq 0 ]; then chown -R "$EJABBERD_USER:" "$EJABBERD_HOME"; fi

  log "starting $EJABBERD_NODE (c2s $EJABBERD_C2S_PORT, http $EJABBERD_HTTP_PORT, home $EJABBERD_HOME)"
  ctl start || { log_tail; die "ejabberdctl start failed"; }

  local deadline=$((SECONDS + EJABBERD_START_TIMEOUT))
  until port_open "$EJABBERD_C2S_PORT" && is_running; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail
      die "ejabberd did not become ready within ${EJABBERD_START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  register_account "$OBSERVER_JID" "$OBSERVER_PASSWORD"
  log "ready"
}

cmd_stop() {
  require_privileges
  if ! is_running; then
    log "not running: $EJABBERD_NODE"
    return 0
  fi
  ctl stop >/dev/null || true
  local deadline=$((SECONDS + EJABBERD_START_TIMEOUT))
  while is_running || port_open "$EJABBERD_C2S_PORT" || port_open "$EJABBERD_DIST_PORT"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail
      die "ejabberd did not stop within ${EJABBERD_START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "stopped $EJABBERD_NODE"
}

cmd_status() {
  require_privileges
  if is_running; then
    ctl status
  else
    echo "not running: $EJABBERD_NODE ($EJABBERD_HOME)"
    return 3
  fi
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    install) cmd_install ;;
    build) cmd_build ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    register)
      [ $# -eq 2 ] || die "usage: $0 register JID PASSWORD"
      require_privileges
      is_running || die "not running: $EJABBERD_NODE"
      register_account "$1" "$2"
      ;;
    ctl)
      require_privileges
      [ -f "$CTL_CONFIG_FILE" ] || die "no instance at $EJABBERD_HOME (run: $0 start)"
      ctl "$@"
      ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
