#!/bin/bash
# stack.sh: devstack-rs's stack (builds the binary when needed, then runs
# `devstack stack`). Arguments are passed through.
# shellcheck source=tools/devstack-bin.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools/devstack-bin.sh" stack "$@"
