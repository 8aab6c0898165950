//! Every environment variable the program itself reads, by name. (Shell variables that
//! plugins share live in the settings, not here.)

/// The DevStack tree to act on.
pub(crate) const DEVSTACK_TOP_DIR: &str = "DEVSTACK_TOP_DIR";
/// Log filter for the program's own tracing output (`tracing_subscriber` syntax).
pub(crate) const DEVSTACK_LOG: &str = "DEVSTACK_LOG";
/// Set by CI systems; forces plain (non-interactive) output.
pub(crate) const CI: &str = "CI";
/// Seconds a single hook may run before it is reported as hung.
pub(crate) const DEVSTACK_HOOK_TIMEOUT: &str = "DEVSTACK_HOOK_TIMEOUT";
/// Set (non-empty) to let this tree take over a DEST another tree stacked into.
pub(crate) const DEVSTACK_TAKEOVER: &str = "DEVSTACK_TAKEOVER";
/// A login shell's identity: filled in for the plugin shell when the run started
/// without them (CI runners, cron, `env -i`), from the account of the running user.
pub(crate) const USER: &str = "USER";
pub(crate) const LOGNAME: &str = "LOGNAME";
pub(crate) const HOME: &str = "HOME";
/// Where `devstack cluster` keeps ansible-core's venv (default: the user's cache).
pub(crate) const DEVSTACK_ANSIBLE_VENV: &str = "DEVSTACK_ANSIBLE_VENV";
/// The user's cache directory (XDG), for that venv.
pub(crate) const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
