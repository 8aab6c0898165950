//! Ctrl-C and SIGTERM: a flag the long waits check, so an interrupted run stops its
//! children (the plugin shell's group, apt, uv), saves its state and says how to go on,
//! instead of leaving a half-stacked machine nobody knows about.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once; later calls are harmless no-ops).
pub(crate) fn install() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

/// Has the user (or a supervisor) asked us to stop?
pub(crate) fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
