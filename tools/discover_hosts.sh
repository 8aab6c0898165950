#!/bin/bash
# shellcheck shell=bash
#
# tools/discover_hosts.sh: maps the compute hosts that registered since the last run
# into nova's cells, as DevStack's script of this name (multi-node jobs and plugins
# run it after starting another nova-compute). Needs nova-manage: the stack's venv
# first, then PATH; does nothing without it.

nova_manage=""
for candidate in "${DEVSTACK_VENV:-${DATA_DIR:-${DEST:-/opt/stack}/data}/venv}/bin/nova-manage" \
    "$(command -v nova-manage || true)"; do
    if [[ -n $candidate && -x $candidate ]]; then
        nova_manage=$candidate
        break
    fi
done
if [[ -n $nova_manage ]]; then
    "$nova_manage" cell_v2 discover_hosts --verbose
fi
