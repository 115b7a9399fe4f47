#!/usr/bin/env bash
# Private, throwaway PostgreSQL 15 cluster for tests and demos.
#
# Usage: scripts/pgcluster.sh COMMAND DIR [MODE]
#
#   start DIR            initdb DIR/data if needed, start the server on a free
#                        127.0.0.1 port, create database "referral", write
#                        DIR/env and print its path. Idempotent: a running
#                        cluster is left alone (DIR/env is rewritten).
#   stop DIR             pg_ctl -m fast stop; nothing to do if not running.
#   remove DIR           stop (fast, then immediate if that fails) and delete
#                        DIR and any socket directory made for it.
#   restart DIR [MODE]   stop with MODE (fast|immediate, default fast), start
#                        again on the same port, print the env path.
#   pgstop DIR [MODE]    stop the server (MODE fast|immediate, default fast),
#                        keeping data, port and socket directory.
#   pgstart DIR          start a stopped cluster on the same port and socket
#                        directory (fails if the port was taken meanwhile).
#   status DIR           exit 0 if the server is running, 3 if not.
#   standby DIR PORT     make DIR a streaming standby of the cluster on
#                        127.0.0.1:PORT (pg_basebackup -R), start it on a
#                        free port, write DIR/env and print its path. Name
#                        it for synchronous_standby_names with
#                        PGCLUSTER_OPTS="-c cluster_name=NAME".
#   promote DIR          promote a standby to a primary (pg_ctl promote -w).
#
# DIR/env (shell-sourceable) exports PGHOST (socket directory), PGPORT,
# PGUSER=postgres, PGDATABASE=referral, REFERRAL_DSN (TCP on 127.0.0.1),
# PGCLUSTER_DIR, PGCLUSTER_DATA, PGCLUSTER_LOG and PGCLUSTER_BIN.
#
# Environment:
#   PGCLUSTER_OPTS     extra server options for pg_ctl -o, e.g. "-c fsync=off".
#                      Remembered in DIR/opts by "start" and reused by later
#                      starts of the same cluster unless set again.
#   PGCLUSTER_BIN      PostgreSQL binaries (default /usr/lib/postgresql/15/bin).
#   PGCLUSTER_TIMEOUT  seconds pg_ctl waits for start/stop (default 60).
#
# Run as root, every PostgreSQL binary runs through "runuser -u postgres"
# (initdb and postgres refuse root); without a postgres user a system user
# "referral-pg" is created. Run as anyone else, the binaries run directly.

set -euo pipefail

readonly PROG=${0##*/}
BIN=${PGCLUSTER_BIN:-/usr/lib/postgresql/15/bin}
TIMEOUT=${PGCLUSTER_TIMEOUT:-60}
# A unix socket path (DIR/.s.PGSQL.NNNNN) must fit in sun_path (108 bytes
# including the NUL); keep a margin below the 92 bytes the socket name
# leaves for the directory.
readonly MAX_SOCKDIR_LEN=80
readonly FALLBACK_USER=referral-pg

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $PROG start DIR
       $PROG stop DIR
       $PROG remove DIR
       $PROG restart DIR [fast|immediate]
       $PROG pgstop DIR [fast|immediate]
       $PROG pgstart DIR
       $PROG status DIR
       $PROG standby DIR PRIMARY_PORT
       $PROG promote DIR
EOF
    exit 2
}

# Quote a value for a POSIX shell: 'it'\''s'.
shq() {
    local q="'\\''"
    printf "'%s'" "${1//\'/$q}"
}

# Quote a value for postgresql.conf: 'it''s'.
confq() {
    printf "'%s'" "${1//\'/\'\'}"
}

# ---------------------------------------------------------------- identity

RUNAS=""   # empty: run PostgreSQL binaries as ourselves

choose_runas() {
    [[ $(id -u) -eq 0 ]] || return 0
    command -v runuser >/dev/null || die "runuser not found (util-linux)"
    # An existing cluster keeps running as whoever owns its data.
    if [[ -d $DATA ]]; then
        local owner
        owner=$(stat -c %U -- "$DATA")
        if [[ $owner != root && $owner != UNKNOWN ]]; then
            RUNAS=$owner
            return 0
        fi
    fi
    if id -u postgres >/dev/null 2>&1; then
        RUNAS=postgres
    else
        if ! id -u "$FALLBACK_USER" >/dev/null 2>&1; then
            # Another invocation may create it at the same moment: re-check.
            useradd --system --user-group --no-create-home \
                --home-dir /nonexistent --shell /usr/sbin/nologin \
                "$FALLBACK_USER" 2>/dev/null \
                || id -u "$FALLBACK_USER" >/dev/null 2>&1 \
                || die "cannot create system user $FALLBACK_USER"
        fi
        RUNAS=$FALLBACK_USER
    fi
}

# Run a PostgreSQL binary (by name) as the cluster user. fd 9 holds our lock
# on DIR: close it so that the postmaster does not inherit it (and hold the
# lock for its whole life). cd / so that runuser'd binaries do not complain
# about an unreadable working directory such as /root.
pg() {
    local exe=$BIN/$1
    shift
    if [[ -n $RUNAS ]]; then
        (cd / && runuser -u "$RUNAS" -- "$exe" "$@") 9>&-
    else
        "$exe" "$@" 9>&-
    fi
}

# Hand a path we created over to the cluster user (root only).
give() {
    [[ -z $RUNAS ]] || chown "$RUNAS:" -- "$@"
}

# ------------------------------------------------------------------ layout

set_paths() {
    local arg=$1
    [[ -n $arg ]] || usage
    DIR=$(realpath -m -- "$arg")
    [[ $DIR != / ]] || die "refusing to use / as cluster directory"
    DATA=$DIR/data
    LOGF=$DIR/postgres.log
    ENVF=$DIR/env
    CONF=$DATA/pgcluster.conf   # included from postgresql.conf
    SOCKREC=$DIR/socketdir      # records a fallback socket directory
    OPTSF=$DIR/opts             # remembered PGCLUSTER_OPTS
    MARK=$DIR/.pgcluster        # "this directory is ours" (guards remove)
}

have_cluster() {
    [[ -f $DATA/PG_VERSION ]]
}

lock_dir() {
    exec 9>>"$DIR/.lock"
    flock 9
}

is_running() {
    pg pg_ctl status -D "$DATA" >/dev/null 2>&1
}

# The socket directory: DIR itself when short enough, else a directory
# under /tmp made once and recorded in DIR/socketdir.
socket_dir() {
    local s
    if [[ -f $SOCKREC ]]; then
        s=$(<"$SOCKREC")
        if [[ ! -d $s ]]; then          # e.g. cleaned out of /tmp
            mkdir -p -- "$s"
            chmod 755 -- "$s"
            give "$s"
        fi
        printf '%s\n' "$s"
    elif (( ${#DIR} <= MAX_SOCKDIR_LEN )); then
        printf '%s\n' "$DIR"
    else
        s=$(mktemp -d /tmp/pgsock.XXXXXX)
        chmod 755 -- "$s"                # let other users reach the socket
        give "$s"
        printf '%s\n' "$s" >"$SOCKREC"
        printf '%s\n' "$s"
    fi
}

conf_port() {
    [[ -f $CONF ]] || return 0
    sed -n 's/^port = \([0-9][0-9]*\)$/\1/p' -- "$CONF"
}

write_conf() {
    local port=$1 sock=$2
    {
        echo "# Written by scripts/pgcluster.sh on every start; do not edit."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = $(confq "$sock")"
    } >"$CONF.tmp"
    give "$CONF.tmp"
    mv -f -- "$CONF.tmp" "$CONF"
}

write_env() {
    local port sock
    port=$(conf_port)
    sock=$(socket_dir)
    {
        echo "# PostgreSQL cluster managed by scripts/pgcluster.sh"
        echo "export PGHOST=$(shq "$sock")"
        echo "export PGPORT=$port"
        echo "export PGUSER=postgres"
        echo "export PGDATABASE=referral"
        echo "export REFERRAL_DSN='host=127.0.0.1 port=$port user=postgres dbname=referral'"
        echo "export PGCLUSTER_DIR=$(shq "$DIR")"
        echo "export PGCLUSTER_DATA=$(shq "$DATA")"
        echo "export PGCLUSTER_LOG=$(shq "$LOGF")"
        echo "export PGCLUSTER_BIN=$(shq "$BIN")"
    } >"$ENVF.tmp"
    mv -f -- "$ENVF.tmp" "$ENVF"   # readers never see a half-written file
}

# ------------------------------------------------------------------- ports

port_free() {
    # SO_REUSEADDR like the postmaster, so that TIME_WAIT leftovers do not
    # count as busy; a listening socket on the port still does.
    python3 - "$1" 2>/dev/null <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
}

# Pick a free port below the kernel's ephemeral range: a port from that
# range (what bind(port 0) returns) may be taken by some outgoing
# connection while the server is down for a pgstop/pgstart test.
pick_port() {
    local lo=10000 hi eph port try
    eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    hi=$((eph - 1))
    if ((hi - lo < 1000)); then
        lo=1024
    fi
    for try in $(seq 1 100); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        if ! command -v python3 >/dev/null || port_free "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "no free TCP port found after $try tries"
}

# --------------------------------------------------------------- the server

server_opts() {
    if [[ -n ${PGCLUSTER_OPTS+set} ]]; then
        printf '%s' "$PGCLUSTER_OPTS"
    elif [[ -f $OPTSF ]]; then
        cat -- "$OPTSF"
    fi
}

# pg_ctl start; on failure return 10 when the cause was a busy port, else 1.
try_start() {
    local opts off
    opts=$(server_opts)
    off=0
    [[ ! -f $LOGF ]] || off=$(stat -c %s -- "$LOGF")
    if [[ -n $opts ]]; then
        pg pg_ctl start -w -t "$TIMEOUT" -D "$DATA" -l "$LOGF" -o "$opts" >/dev/null 2>&1 && return 0
    else
        pg pg_ctl start -w -t "$TIMEOUT" -D "$DATA" -l "$LOGF" >/dev/null 2>&1 && return 0
    fi
    if tail -c +"$((off + 1))" -- "$LOGF" 2>/dev/null |
        grep -q -e 'could not bind IPv4 address' -e 'could not create any TCP/IP sockets'; then
        return 10
    fi
    return 1
}

start_failed() {
    printf '%s: server in %s did not start; end of %s:\n' "$PROG" "$DIR" "$LOGF" >&2
    tail -n 20 -- "$LOGF" >&2 2>/dev/null || true
    exit 1
}

# Start on the recorded port; if it is busy and we may move (start), pick
# another one, a few times (another process can grab it between the check
# and the postmaster's bind).
start_server() {
    local may_move=$1 port sock rc try
    sock=$(socket_dir)
    port=$(conf_port)
    [[ -n $port ]] || port=$(pick_port)
    for try in 1 2 3 4 5 6 7 8; do
        write_conf "$port" "$sock"
        rc=0
        try_start || rc=$?
        case $rc in
        0) return 0 ;;
        10)
            [[ $may_move == yes ]] || die "port $port is in use; cannot restart $DIR on the same port"
            port=$(pick_port)
            ;;
        *) start_failed ;;
        esac
    done
    die "could not find a usable port after $try attempts"
}

create_db() {
    local port sock exists
    port=$(conf_port)
    sock=$(socket_dir)
    exists=$(pg psql -X -A -t -q -h "$sock" -p "$port" -U postgres -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = 'referral'")
    [[ $exists == 1 ]] || pg createdb -h "$sock" -p "$port" -U postgres -E UTF8 referral
}

stop_server() {
    local mode=$1
    have_cluster || return 0
    is_running || return 0
    pg pg_ctl stop -w -t "$TIMEOUT" -D "$DATA" -m "$mode" >/dev/null
}

check_mode() {
    case $1 in
    fast | immediate) ;;
    *) die "stop mode must be fast or immediate, not '$1'" ;;
    esac
}

# ---------------------------------------------------------------- commands

# The directory, locked and owned by the cluster user; options remembered.
prepare_dir() {
    if [[ -e $DIR && ! -d $DIR ]]; then
        die "$DIR exists and is not a directory"
    fi
    mkdir -p -- "$DIR"
    lock_dir
    choose_runas
    if [[ -n $RUNAS ]]; then
        chown "$RUNAS:" -- "$DIR"
        runuser -u "$RUNAS" -- test -w "$DIR" -a -x "$DIR" 9>&- ||
            die "user $RUNAS cannot write $DIR: a parent directory is not searchable by it (chmod o+x it, or use another DIR)"
    fi
    : >"$MARK"
    if [[ -n ${PGCLUSTER_OPTS+set} ]]; then
        printf '%s' "$PGCLUSTER_OPTS" >"$OPTSF"
    fi
}

cmd_start() {
    prepare_dir

    if have_cluster && is_running; then
        write_env
        printf '%s\n' "$ENVF"
        return 0
    fi
    if ! have_cluster; then
        if [[ -e $DATA ]] && [[ -n $(ls -A -- "$DATA") ]]; then
            die "$DATA exists, is not empty and holds no cluster"
        fi
        if ! pg initdb -D "$DATA" --nosync -A trust -U postgres -E UTF8 --locale=C \
            >"$DIR/initdb.log" 2>&1; then
            cat -- "$DIR/initdb.log" >&2
            die "initdb failed"
        fi
        # Port and socket settings live in a file of their own so that they
        # can be rewritten without touching postgresql.conf.
        printf "\ninclude 'pgcluster.conf'\n" >>"$DATA/postgresql.conf"
    fi
    start_server yes
    create_db
    write_env
    printf '%s\n' "$ENVF"
}

cmd_standby() {
    local primary_port=$1
    [[ $primary_port =~ ^[0-9]+$ ]] || die "PRIMARY_PORT must be a port number, not '$primary_port'"
    prepare_dir
    have_cluster && die "$DIR already holds a cluster"
    # A fast checkpoint: the default one is spread over minutes.
    if ! pg pg_basebackup -h 127.0.0.1 -p "$primary_port" -U postgres -D "$DATA" \
        --write-recovery-conf --wal-method=stream --checkpoint=fast --no-sync \
        >"$DIR/basebackup.log" 2>&1; then
        cat -- "$DIR/basebackup.log" >&2
        die "pg_basebackup from port $primary_port failed"
    fi
    # The copy holds the primary's port and socket settings: choose anew.
    rm -f -- "$CONF"
    start_server yes
    write_env
    printf '%s\n' "$ENVF"
}

cmd_promote() {
    [[ -d $DIR ]] || die "no cluster in $DIR"
    lock_dir
    choose_runas
    pg pg_ctl promote -w -t "$TIMEOUT" -D "$DATA" >/dev/null
}

cmd_stop() {
    local mode=$1
    check_mode "$mode"
    [[ -d $DIR ]] || return 0
    lock_dir
    choose_runas
    stop_server "$mode"
}

cmd_pgstart() {
    [[ -d $DIR ]] || die "no cluster in $DIR (use start)"
    lock_dir
    choose_runas
    have_cluster || die "no cluster in $DIR (use start)"
    if ! is_running; then
        start_server no
    fi
    write_env
}

cmd_restart() {
    cmd_stop "$1"
    cmd_pgstart
    printf '%s\n' "$ENVF"
}

cmd_remove() {
    [[ -e $DIR ]] || return 0
    [[ -d $DIR ]] || die "$DIR is not a directory"
    # Never rm -rf a directory this script did not make (a typo in DIR).
    if [[ ! -e $MARK ]] && [[ -n $(ls -A -- "$DIR") ]]; then
        die "$DIR does not look like a pgcluster directory; not removing it"
    fi
    lock_dir
    choose_runas
    if have_cluster && is_running; then
        stop_server fast || stop_server immediate
    fi
    local sock=""
    [[ ! -f $SOCKREC ]] || sock=$(<"$SOCKREC")
    rm -rf -- "$DIR"
    if [[ -n $sock && $sock == /tmp/pgsock.* ]]; then
        rm -rf -- "$sock"
    fi
}

cmd_status() {
    [[ -d $DIR ]] || return 3
    choose_runas
    have_cluster || return 3
    is_running || return 3
}

main() {
    (($# >= 2)) || usage
    local cmd=$1 mode=${3:-fast}
    set_paths "$2"
    case $cmd in
    start) (($# == 2)) || usage; cmd_start ;;
    stop) (($# == 2)) || usage; cmd_stop fast ;;
    remove) (($# == 2)) || usage; cmd_remove ;;
    restart) (($# <= 3)) || usage; check_mode "$mode"; cmd_restart "$mode" ;;
    pgstop) (($# <= 3)) || usage; cmd_stop "$mode" ;;
    pgstart) (($# == 2)) || usage; cmd_pgstart ;;
    status) (($# == 2)) || usage; cmd_status ;;
    standby) (($# == 3)) || usage; cmd_standby "$3" ;;
    promote) (($# == 2)) || usage; cmd_promote ;;
    *) usage ;;
    esac
}

main "$@"
