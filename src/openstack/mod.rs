//! Clients for OpenStack APIs (keystone's REST API for accounts, services, endpoints).

pub mod accounts;
pub(crate) mod keystone;
pub(crate) mod neutron;
