#!/bin/bash
# shellcheck shell=bash
#
# tools/devstack-bin.sh: shared by stack.sh, unstack.sh and clean.sh. Builds the
# release binary when it is missing or older than any source, then execs it with the
# given subcommand. Sourced, not executed: it ends the calling script with exec.

set -o errexit -o nounset -o pipefail

TOP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVSTACK_BIN=$TOP_DIR/target/release/devstack

# True when the binary is missing or a source file is newer than it.
_needs_build() {
    [[ -x $DEVSTACK_BIN ]] || return 0
    [[ -n $(find "$TOP_DIR/src" "$TOP_DIR/Cargo.toml" "$TOP_DIR/Cargo.lock" -newer "$DEVSTACK_BIN" -print -quit 2>/dev/null) ]]
}

if _needs_build; then
    if ! command -v cargo >/dev/null 2>&1; then
        # shellcheck source=/dev/null
        [[ -f $HOME/.cargo/env ]] && source "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo is not installed; install Rust (rustup) to build devstack" >&2
        exit 1
    fi
    echo "Building devstack (release)..." >&2
    (cd "$TOP_DIR" && cargo build --release --locked --quiet --bin devstack)
fi

exec "$DEVSTACK_BIN" --top-dir "$TOP_DIR" "$@"
