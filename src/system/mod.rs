//! The machine: child processes, packages, supervised services, Python environments.

pub mod interrupt;
pub mod net;
pub mod packages;
pub mod process;
pub mod python;
pub mod redact;
pub mod supervisor;
