//! DevStack's keystone account layout, created from Rust in one client session:
//! what `create_keystone_accounts` and each service's `create_*_accounts` do in
//! DevStack's lib/*, without one `openstack` CLI process per object.
//!
//! The pipeline calls [`create_all`] with the catalog entries of the enabled
//! services once keystone is bootstrapped and answering; plugins reach the same
//! client through the bash shims in lib/keystone.

use std::time::{Duration, Instant};

use crate::config::settings::Settings;
use crate::openstack::keystone::{Client, Credentials, DEFAULT_TIMEOUT, KeystoneError};

/// One OpenStack service's keystone registration, as DevStack's lib/<service> does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The service user's name, and the catalog service's name.
    pub name: &'static str,
    /// The catalog service type.
    pub service_type: &'static str,
    pub description: &'static str,
    /// The extra role the service user gets on the service project besides `service`.
    pub extra_role: Option<&'static str>,
    /// The settings that choose the endpoint: `<PREFIX>_SERVICE_PROTOCOL`,
    /// `<PREFIX>_SERVICE_HOST`, `<PREFIX>_SERVICE_PORT`.
    pub prefix: &'static str,
    pub default_port: u16,
    /// Appended to `protocol://host:port`, or to the route.
    pub path: &'static str,
    /// The URL path the front proxy routes to it (DevStack's `/identity`, `/image`,
    /// `/compute`): the endpoint is then `protocol://host<route><path>`, without a
    /// port. Empty: the service's own port.
    pub route: &'static str,
}

impl ServiceAccount {
    /// The public endpoint URL from the settings (`<PREFIX>_SERVICE_*`, falling back
    /// to SERVICE_PROTOCOL and SERVICE_HOST, and the service's default port).
    pub fn url(&self, settings: &Settings) -> String {
        let protocol_var = format!("{}_SERVICE_PROTOCOL", self.prefix);
        let host_var = format!("{}_SERVICE_HOST", self.prefix);
        let port_var = format!("{}_SERVICE_PORT", self.prefix);
        let protocol = settings.get_or(&protocol_var, settings.get_or("SERVICE_PROTOCOL", "http"));
        let host = settings.get_or(&host_var, settings.get_or("SERVICE_HOST", "127.0.0.1"));
        let host = bracket_ipv6(host);
        if !self.route.is_empty() {
            return format!("{protocol}://{host}{}{}", self.route, self.path);
        }
        let port = settings.number(&port_var, u64::from(self.default_port));
        format!("{protocol}://{host}:{port}{}", self.path)
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The ids of what was created (or found) for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIds {
    pub name: String,
    pub service_type: String,
    pub service_id: String,
    /// The service user (None for identity, whose admin user comes from bootstrap).
    pub user_id: Option<String>,
    pub public_endpoint_id: String,
    pub public_url: String,
}

/// The ids of DevStack's core accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreIds {
    pub admin_project: String,
    pub admin_user: String,
    pub admin_role: String,
    pub service_domain: String,
    pub service_project: String,
    pub service_role: String,
    pub member_role: String,
    pub reader_role: String,
    pub manager_role: String,
    pub demo_project: String,
    pub demo_user: String,
    pub alt_demo_project: String,
    pub alt_demo_user: String,
}

/// What [`create_for_enabled`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountsReport {
    pub core: CoreIds,
    pub services: Vec<ServiceIds>,
    /// HTTP requests sent in this call.
    pub requests: u64,
    pub elapsed: Duration,
}

impl AccountsReport {
    /// One line per service (for the run log and `devstack __call`).
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for s in &self.services {
            let _ = writeln!(
                out,
                "{} {} service={} endpoint={} {}",
                s.service_type, s.name, s.service_id, s.public_endpoint_id, s.public_url
            );
        }
        let _ = writeln!(
            out,
            "keystone accounts: {} services, {} requests, {:.3} s",
            self.services.len(),
            self.requests,
            self.elapsed.as_secs_f64()
        );
        out
    }
}

/// The admin credentials the settings describe: KEYSTONE_SERVICE_URI (or
/// KEYSTONE_AUTH_URI), ADMIN_PASSWORD, and ADMIN_DOMAIN_NAME.
pub fn admin_credentials(settings: &Settings) -> Credentials {
    let url = settings.get_or(
        "KEYSTONE_SERVICE_URI",
        settings.get_or("KEYSTONE_AUTH_URI", ""),
    );
    let mut creds = Credentials::admin(url, settings.str("ADMIN_PASSWORD"));
    let domain = settings.get_or("ADMIN_DOMAIN_NAME", "Default");
    domain.clone_into(&mut creds.user_domain);
    domain.clone_into(&mut creds.project_domain);
    creds
}

/// The run's keystone client (kept in `slot`), (re)made when the URL or the admin
/// credentials changed since it was made.
pub fn client<'a>(
    slot: &'a mut Option<Client>,
    settings: &Settings,
) -> Result<&'a mut Client, KeystoneError> {
    let creds = admin_credentials(settings);
    if creds.password.is_empty() {
        return Err(KeystoneError::Config(
            "ADMIN_PASSWORD is not set: cannot authenticate to keystone".into(),
        ));
    }
    let stale = slot.as_ref().is_none_or(|c| c.credentials() != &creds);
    if stale {
        let timeout = match settings.number("KEYSTONE_REQUEST_TIMEOUT", 0) {
            0 => DEFAULT_TIMEOUT,
            secs => Duration::from_secs(secs),
        };
        *slot = Some(Client::new(creds, timeout)?);
    }
    Ok(slot.as_mut().expect("client just made"))
}

/// Names DevStack's account functions use, read from the settings.
struct Names<'a> {
    service_domain: &'a str,
    service_project: &'a str,
    service_password: &'a str,
    admin_password: &'a str,
    region: &'a str,
}

impl<'a> Names<'a> {
    fn new(settings: &'a Settings) -> Self {
        Self {
            service_domain: settings.get_or("SERVICE_DOMAIN_NAME", "Default"),
            service_project: settings.get_or("SERVICE_PROJECT_NAME", "service"),
            service_password: settings.str("SERVICE_PASSWORD"),
            admin_password: settings.str("ADMIN_PASSWORD"),
            region: settings.get_or("REGION_NAME", "RegionOne"),
        }
    }
}

/// DevStack's `create_keystone_accounts`: admin (from bootstrap, made sure of),
/// the service domain, project and role, the member/reader/manager roles, and the
/// demo and alt_demo users and projects (the `devstack` cloud in clouds.yaml uses demo).
pub fn create_keystone_accounts(
    client: &mut Client,
    settings: &Settings,
) -> Result<CoreIds, KeystoneError> {
    let n = Names::new(settings);
    let admin_domain = settings.get_or("ADMIN_DOMAIN_NAME", "Default");
    // keystone-manage bootstrap made the admin trio: find it (one request each),
    // create only what is missing.
    let admin_project = match client.project_id("admin", Some(admin_domain)) {
        Err(KeystoneError::NotFound { .. }) => {
            client.get_or_create_project("admin", admin_domain)?
        }
        found => found?,
    };
    let admin_user = match client.user_id("admin", Some(admin_domain)) {
        Err(KeystoneError::NotFound { .. }) => {
            client.get_or_create_user("admin", n.admin_password, admin_domain, None)?
        }
        found => found?,
    };
    let admin_role = match client.role_id("admin") {
        Err(KeystoneError::NotFound { .. }) => client.get_or_create_role("admin")?,
        found => found?,
    };
    let mut ids = CoreIds {
        admin_project,
        admin_user,
        admin_role,
        ..CoreIds::default()
    };
    client.add_user_project_role(&ids.admin_role, &ids.admin_user, &ids.admin_project)?;
    client.add_user_system_role(&ids.admin_role, &ids.admin_user)?;

    ids.service_domain = client.get_or_create_domain(n.service_domain, "")?;
    ids.service_project = client.get_or_create_project(n.service_project, n.service_domain)?;
    ids.service_role = client.get_or_create_role("service")?;
    ids.member_role = client.get_or_create_role("member")?;
    ids.reader_role = client.get_or_create_role("reader")?;
    ids.manager_role = client.get_or_create_role("manager")?;
    let another_role = client.get_or_create_role("anotherrole")?;
    let invisible = client.get_or_create_project("invisible_to_admin", "default")?;

    ids.demo_project = client.get_or_create_project("demo", "default")?;
    ids.demo_user = client.get_or_create_user(
        "demo",
        n.admin_password,
        "default",
        Some("demo@example.com"),
    )?;
    let demo_reader = client.get_or_create_user(
        "demo_reader",
        n.admin_password,
        "default",
        Some("demo_reader@example.com"),
    )?;
    client.add_user_project_role(&ids.member_role, &ids.demo_user, &ids.demo_project)?;
    client.add_user_project_role(&ids.admin_role, &ids.admin_user, &ids.demo_project)?;
    client.add_user_project_role(&another_role, &ids.demo_user, &ids.demo_project)?;
    client.add_user_project_role(&ids.member_role, &ids.demo_user, &invisible)?;
    client.add_user_project_role(&ids.reader_role, &demo_reader, &ids.demo_project)?;

    ids.alt_demo_project = client.get_or_create_project("alt_demo", "default")?;
    ids.alt_demo_user = client.get_or_create_user(
        "alt_demo",
        n.admin_password,
        "default",
        Some("alt_demo@example.com"),
    )?;
    let alt_demo_reader = client.get_or_create_user(
        "alt_demo_reader",
        n.admin_password,
        "default",
        Some("alt_demo_reader@example.com"),
    )?;
    client.add_user_project_role(&ids.member_role, &ids.alt_demo_user, &ids.alt_demo_project)?;
    client.add_user_project_role(&ids.admin_role, &ids.admin_user, &ids.alt_demo_project)?;
    client.add_user_project_role(&another_role, &ids.alt_demo_user, &ids.alt_demo_project)?;
    client.add_user_project_role(&ids.reader_role, &alt_demo_reader, &ids.alt_demo_project)?;
    Ok(ids)
}

/// DevStack's `create_service_user NAME [ROLE]`: user NAME in SERVICE_DOMAIN_NAME with
/// SERVICE_PASSWORD (set on creation only), role `service` and ROLE (when another)
/// on the service project. Returns the user id.
pub fn create_service_user(
    client: &mut Client,
    settings: &Settings,
    name: &str,
    role: Option<&str>,
) -> Result<String, KeystoneError> {
    let n = Names::new(settings);
    if n.service_password.is_empty() {
        return Err(KeystoneError::Config(format!(
            "SERVICE_PASSWORD is not set: cannot create the service user '{name}'"
        )));
    }
    let user = client.get_or_create_user(name, n.service_password, n.service_domain, None)?;
    let project = client.project_id(n.service_project, Some(n.service_domain))?;
    let service_role = client.get_or_create_role("service")?;
    client.add_user_project_role(&service_role, &user, &project)?;
    if let Some(role) = role.filter(|r| !r.is_empty() && *r != "service") {
        let role_id = client.role_id(role)?;
        client.add_user_project_role(&role_id, &user, &project)?;
    }
    Ok(user)
}

/// One service's accounts: its service user, catalog service and public endpoint.
pub fn create_service_accounts(
    client: &mut Client,
    settings: &Settings,
    service: &ServiceAccount,
) -> Result<ServiceIds, KeystoneError> {
    let n = Names::new(settings);
    let user = create_service_user(client, settings, service.name, service.extra_role)?;
    let service_id =
        client.get_or_create_service(service.name, service.service_type, service.description)?;
    let url = service.url(settings);
    let endpoint = client.get_or_create_endpoint(&service_id, "public", n.region, &url)?;
    Ok(ServiceIds {
        name: service.name.to_owned(),
        service_type: service.service_type.to_owned(),
        service_id,
        user_id: Some(user),
        public_endpoint_id: endpoint,
        public_url: url,
    })
}

/// The identity service as bootstrap made it: found (or created), and a public
/// endpoint made sure of. An existing endpoint is left as bootstrap wrote it.
pub fn identity_service(
    client: &mut Client,
    settings: &Settings,
) -> Result<ServiceIds, KeystoneError> {
    let n = Names::new(settings);
    let service_id =
        client.get_or_create_service("keystone", "identity", "Keystone Identity Service")?;
    let found = client.find_endpoint(&service_id, "public", n.region)?;
    let (endpoint, url) = if let Some(found) = found {
        found
    } else {
        let url = client
            .credentials()
            .auth_url
            .trim_end_matches('/')
            .to_owned();
        let id = client.get_or_create_endpoint(&service_id, "public", n.region, &url)?;
        (id, url)
    };
    Ok(ServiceIds {
        name: "keystone".into(),
        service_type: "identity".into(),
        service_id,
        user_id: None,
        public_endpoint_id: endpoint,
        public_url: url,
    })
}

/// The core accounts, identity, and the given services with this client.
pub fn create_all<'a>(
    client: &mut Client,
    settings: &Settings,
    services: impl IntoIterator<Item = &'a ServiceAccount>,
) -> Result<AccountsReport, KeystoneError> {
    let started = Instant::now();
    let requests = client.requests();
    let core = create_keystone_accounts(client, settings)?;
    let mut report = AccountsReport {
        core,
        services: vec![identity_service(client, settings)?],
        ..AccountsReport::default()
    };
    for service in services {
        report
            .services
            .push(create_service_accounts(client, settings, service)?);
    }
    report.requests = client.requests() - requests;
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    const NOVA: ServiceAccount = ServiceAccount {
        name: "nova",
        service_type: "compute",
        description: "Nova Compute Service",
        extra_role: Some("admin"),
        prefix: "NOVA",
        default_port: 8774,
        path: "/v2.1",
        route: "",
    };

    #[test]
    fn endpoint_urls_follow_devstack_settings() {
        let s = settings(&[("SERVICE_HOST", "10.0.0.5")]);
        assert_eq!(NOVA.url(&s), "http://10.0.0.5:8774/v2.1");
        let s = settings(&[
            ("SERVICE_HOST", "::1"),
            ("SERVICE_PROTOCOL", "https"),
            ("NOVA_SERVICE_PORT", "18774"),
        ]);
        assert_eq!(NOVA.url(&s), "https://[::1]:18774/v2.1");
        let routed = ServiceAccount {
            route: "/compute",
            ..NOVA
        };
        assert_eq!(routed.url(&s), "https://[::1]/compute/v2.1");
    }

    #[test]
    fn admin_credentials_come_from_the_settings() {
        let s = settings(&[
            ("KEYSTONE_SERVICE_URI", "http://10.0.0.5:5000"),
            ("ADMIN_PASSWORD", "pw"),
        ]);
        let c = admin_credentials(&s);
        assert_eq!(c.auth_url, "http://10.0.0.5:5000");
        assert_eq!(c.username, "admin");
        assert_eq!(c.project_name, "admin");
        assert_eq!(c.user_domain, "Default");
        assert_eq!(c.password, "pw");
    }
}
