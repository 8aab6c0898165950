//! Settings: local.conf, DevStack's defaults, service enablement, passwords.

pub(crate) mod localconf;
pub(crate) mod passwords;
pub(crate) mod services;
pub(crate) mod settings;
pub(crate) mod vars;
