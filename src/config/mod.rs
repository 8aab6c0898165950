//! Settings: local.conf, DevStack's defaults, service enablement, passwords.

pub mod localconf;
pub mod passwords;
pub mod services;
pub mod settings;
