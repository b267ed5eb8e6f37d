#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and prints its URL:
#   export TALE_TEST_POSTGRES=$(.ci/postgres.sh start DIR)
#   .ci/postgres.sh stop DIR
# It also serves TLS with a certificate for localhost and 127.0.0.1 signed
# by a throwaway authority, DIR/ca.crt (the TLS tests read it from
# TALE_TEST_POSTGRES_CA).
# Installs the Debian `postgresql` package when no server binaries are
# found. The server runs as the `postgres` user in DIR (initdb), listens on
# 127.0.0.1 on a free port, with fsync off: it is thrown away after.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  return 1
}

case "$cmd" in
  start)
    if ! bindir >/dev/null; then
      echo "installing postgresql" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    fi
    bin=$(bindir)
    mkdir -p "$dir"; chown postgres "$dir"; chmod 700 "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    su postgres -s /bin/sh -c "'$bin/initdb' -D '$dir/data' -U postgres -A trust --no-sync -E UTF8" >/dev/null
    su postgres -s /bin/sh -c "cd '$dir' &&
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=tale-test-ca -keyout ca.key -out ca.crt 2>/dev/null &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout data/server.key -out server.csr 2>/dev/null &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out data/server.crt 2>/dev/null &&
      chmod 600 data/server.key"
    chmod 755 "$dir"
    su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on\" start" >/dev/null
    su postgres -s /bin/sh -c "'$bin/createdb' -h 127.0.0.1 -p $port -U postgres tale_test"
    echo "postgres://postgres@127.0.0.1:$port/tale_test"
    ;;
  stop)
    bin=$(bindir)
    [ -d "$dir/data" ] && su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -m immediate stop" >/dev/null || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
