#!/bin/bash
# clean.sh: devstack-rs's clean (builds the binary when needed, then runs
# `devstack clean`). Arguments are passed through.
# shellcheck source=tools/devstack-bin.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools/devstack-bin.sh" clean "$@"
