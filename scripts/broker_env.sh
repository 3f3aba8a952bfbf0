# Sourced by the broker scripts: which embedded broker runs, chosen by one variable.
#   BROKER=tansu            tansu 0.6.0 on SQLite (the default)
#   BROKER=nisshi           nisshi 0.7.0-pre.2 (tansu renamed) on SQLite
#   BROKER=tansu-postgres   tansu 0.6.0 on PostgreSQL 17 (a server per broker data dir,
#                           started and stopped with the broker: scripts/pg.sh)
# Sets BROKER_BIN, BROKER_DB (sqlite or postgres), and BROKER_CRATE, BROKER_FEATURES and
# BROKER_ROOT (what scripts/install-broker.sh installs);
# BROKER_STORAGE still overrides the storage URL (e.g. memory://tansu/).
MPR_TOOLS="${MPR_TOOLS:-$HOME/.cache/mpr}"
BROKER="${BROKER:-tansu}"
# The PostgreSQL server BROKER=tansu-postgres runs (scripts/install-broker.sh installs it).
PG_ROOT="$MPR_TOOLS/postgresql-17.10"
PG_BINDIR="$PG_ROOT/bin"
case "$BROKER" in
  tansu)
    BROKER_BIN="$MPR_TOOLS/bin/tansu"
    BROKER_CRATE="tansu@0.6.0"; BROKER_FEATURES="libsql,dynostore"; BROKER_ROOT="$MPR_TOOLS"
    BROKER_DB=sqlite ;;
  nisshi)
    BROKER_BIN="$MPR_TOOLS/nisshi/bin/nisshi"
    BROKER_CRATE="nisshi@0.7.0-pre.2"; BROKER_FEATURES="libsql,dynostore"; BROKER_ROOT="$MPR_TOOLS/nisshi"
    BROKER_DB=sqlite ;;
  tansu-postgres)
    BROKER_BIN="$MPR_TOOLS/tansu-pg/bin/tansu"
    BROKER_CRATE="tansu@0.6.0"; BROKER_FEATURES="postgres"; BROKER_ROOT="$MPR_TOOLS/tansu-pg"
    BROKER_DB=postgres ;;
  *) echo "BROKER=$BROKER: expected tansu, nisshi or tansu-postgres" >&2; exit 2 ;;
esac
