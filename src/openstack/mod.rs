//! Clients for OpenStack APIs (keystone's REST API for accounts, services, endpoints).
