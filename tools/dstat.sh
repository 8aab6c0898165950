#!/bin/bash
# shellcheck shell=bash
#
# tools/dstat.sh LOGDIR: the `dstat` service (DevStack's name): the machine's
# resource usage once a second, for the whole life of the stack. Two dstat
# processes, as DevStack runs them: one writes a CSV to $LOGDIR/dstat-csv.log
# (for tools; see dstat_csv), the other a readable table to this script's output (the service's
# log, $LOGDIR/dstat.log), with the top CPU, I/O and memory process where this
# dstat has those plugins (Debian 12's dstat 0.7.4 does; pcp's dstat does not).
# Stopping the service stops the script's process group, both dstats with it.

set -o nounset

LOGDIR=${1:?usage: dstat.sh LOGDIR}
COLUMNS_SET=(-tcmndrylpg --tcp)
TOP=(--top-cpu-adv --top-io-adv --top-mem)
if dstat --version 2>/dev/null | grep -q pcp; then
    TOP=()
fi

# Debian 12's dstat 0.7.4 writes its CSV rows with Python 2 names (types.ListType,
# TupleType, StringType) that its python3 lacks: `--output` dies at the first row.
# And it never flushes that file. The CSV run gets those names, and a line-buffered
# open(), in the program's globals; pcp's dstat runs as it is.
dstat_csv() {
    if [[ ${#TOP[@]} -eq 0 ]]; then
        exec dstat "$@"
    fi
    # With dstat's own interpreter (its #! line), not a venv's python3 on PATH.
    local program python
    program=$(command -v dstat)
    python=$(sed -n '1s/^#! *\([^ ]*\).*/\1/p' "$program")
    exec "${python:-python3}" - "$program" "$@" <<'PY'
import functools, runpy, sys, types
types.ListType, types.TupleType, types.StringType = list, tuple, str
program = sys.argv[1]
sys.argv = ["dstat"] + sys.argv[2:]
runpy.run_path(program, run_name="__main__", init_globals={
    "types": types, "open": functools.partial(open, buffering=1)})
PY
}

# Its table goes nowhere; its errors to the service's log, beside the other's table.
dstat_csv "${COLUMNS_SET[@]}" --output "$LOGDIR/dstat-csv.log" >/dev/null &
dstat "${COLUMNS_SET[@]}" "${TOP[@]}" --swap &
# The script lives as long as its dstats; a signal to it ends them too.
trap 'kill $(jobs -p) 2>/dev/null' EXIT
trap 'exit 143' TERM INT
wait
