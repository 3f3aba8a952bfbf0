# Sourced by the broker scripts: which embedded broker runs, chosen by one variable.
#   BROKER=tansu            tansu 0.6.0 on SQLite (the default)
#   BROKER=nisshi           nisshi 0.7.0-pre.2 (tansu renamed) on SQLite
# (PostgreSQL storage is not offered: see BENCHMARKS.md, "Broker candidates".)
# Sets BROKER_BIN, and BROKER_CRATE, BROKER_FEATURES and BROKER_ROOT (what
# scripts/install-broker.sh installs);
# BROKER_STORAGE still overrides the storage URL (e.g. memory://tansu/).
MPR_TOOLS="${MPR_TOOLS:-$HOME/.cache/mpr}"
BROKER="${BROKER:-tansu}"
case "$BROKER" in
  tansu)
    BROKER_BIN="$MPR_TOOLS/bin/tansu"
    BROKER_CRATE="tansu@0.6.0"; BROKER_FEATURES="libsql,dynostore"; BROKER_ROOT="$MPR_TOOLS" ;;
  nisshi)
    BROKER_BIN="$MPR_TOOLS/nisshi/bin/nisshi"
    BROKER_CRATE="nisshi@0.7.0-pre.2"; BROKER_FEATURES="libsql,dynostore"; BROKER_ROOT="$MPR_TOOLS/nisshi" ;;
  *) echo "BROKER=$BROKER: expected tansu or nisshi" >&2; exit 2 ;;
esac
