#!/bin/bash
# unstack.sh: devstack-rs's unstack (builds the binary when needed, then runs
# `devstack unstack`). Arguments are passed through (--all / -a: also stop the
# database and message queue).
# shellcheck source=tools/devstack-bin.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools/devstack-bin.sh" unstack "$@"
