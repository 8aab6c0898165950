//! A keystone v3 REST client: password authentication with a cached token, and
//! idempotent get-or-create for the objects DevStack registers (domains, projects,
//! users, roles, regions, services, endpoints, role assignments).
//!
//! This replaces DevStack's one `openstack` CLI process per call (1.4-2.6 s each, see
//! OpenStack's own docs) with plain HTTP requests to keystone on the service host.
//!
//! Rules kept here:
//! - every request has a timeout (the agent's global timeout is per request);
//! - the token is fetched once and reused for the client's life; a 401 on a request
//!   clears it, re-authenticates once and repeats the request;
//! - no password ever reaches an error message: request bodies are never formatted
//!   into errors, and every password the client has sent is masked out of keystone's
//!   own error messages;
//! - no connection is reused (uWSGI's http-socket resets reused keep-alive
//!   connections; a connect on the service host costs microseconds).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde_json::{Value, json};

/// Each request gets at most this long unless the caller chose another timeout.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Keystone's own error messages are cut to this many characters in our errors.
const MAX_MESSAGE: usize = 300;

/// What went wrong talking to keystone. Each variant names what we were doing and the
/// URL; none carries a request body or a password.
#[derive(Debug, thiserror::Error)]
pub enum KeystoneError {
    #[error("keystone: {what}: cannot reach {method} {url}")]
    Transport {
        what: String,
        method: &'static str,
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("keystone: {what}: {method} {url} returned HTTP {status}: {message}")]
    Status {
        what: String,
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },
    #[error("keystone: {what}: unexpected answer from {method} {url}: {detail}")]
    Response {
        what: String,
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("keystone: {what}: no {kind} '{name}'{scope}")]
    NotFound {
        what: String,
        kind: &'static str,
        name: String,
        scope: String,
    },
    #[error("keystone: {what}: {count} {kind}s are named '{name}'; give the domain or the id")]
    Ambiguous {
        what: String,
        kind: &'static str,
        name: String,
        count: usize,
    },
    #[error("keystone: {0}")]
    Config(String),
}

impl KeystoneError {
    /// The HTTP status keystone answered with, if that is what failed.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The message and its causes on one line each (for a shell caller's stderr).
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str("\n  caused by: ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Who the client authenticates as: a user with a password, scoped to a project.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Keystone's base URL, with or without the trailing `/v3`
    /// (DevStack's KEYSTONE_SERVICE_URI has none).
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub user_domain: String,
    pub project_name: String,
    pub project_domain: String,
}

impl Credentials {
    /// DevStack's admin: user and project `admin` in the Default domain.
    pub fn admin(auth_url: &str, password: &str) -> Self {
        Self {
            auth_url: auth_url.to_owned(),
            username: "admin".into(),
            password: password.to_owned(),
            user_domain: "Default".into(),
            project_name: "admin".into(),
            project_domain: "Default".into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"******")
            .field("user_domain", &self.user_domain)
            .field("project_name", &self.project_name)
            .field("project_domain", &self.project_domain)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }
}

/// A keystone answer: the status and the JSON body (`Null` when empty).
struct Answer {
    status: u16,
    body: Value,
    token: Option<String>,
}

/// A keystone v3 client. Cheap to keep for a whole run (see `Host::keystone`).
pub struct Client {
    agent: ureq::Agent,
    creds: Credentials,
    /// `.../v3`, no trailing slash.
    base: String,
    timeout: Duration,
    token: Option<String>,
    /// Every password this client has sent, masked out of keystone's error messages.
    secrets: Vec<String>,
    /// Ids found or created: (kind, scope, name or id) -> id, for domains, roles
    /// (scope "") and projects (scope = domain id).
    ids: HashMap<(&'static str, String, String), String>,
    regions: Vec<String>,
    /// Services this client created: they can have no endpoints it did not make.
    created_services: Vec<String>,
    /// Endpoints of those services: (service id, interface, region) -> (id, url).
    created_endpoints: HashMap<(String, String, String), (String, String)>,
    requests: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("creds", &self.creds)
            .field("has_token", &self.token.is_some())
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for these credentials; nothing is sent until the first call.
    pub fn new(creds: Credentials, timeout: Duration) -> Result<Self, KeystoneError> {
        let trimmed = creds.auth_url.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(KeystoneError::Config(
                "no keystone URL (KEYSTONE_SERVICE_URI is empty)".into(),
            ));
        }
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            return Err(KeystoneError::Config(format!(
                "keystone URL '{trimmed}' is not http(s)"
            )));
        }
        let base = if trimmed.ends_with("/v3") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v3")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .proxy(None)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent("devstack-rs")
            .build()
            .into();
        let secrets = if creds.password.is_empty() {
            Vec::new()
        } else {
            vec![creds.password.clone()]
        };
        Ok(Self {
            agent,
            creds,
            base,
            timeout,
            token: None,
            secrets,
            ids: HashMap::new(),
            regions: Vec::new(),
            created_services: Vec::new(),
            created_endpoints: HashMap::new(),
            requests: 0,
        })
    }

    /// The credentials this client authenticates with.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// Keystone's v3 URL (`.../v3`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many HTTP requests this client has sent (for reports and benchmarks).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// A token for the client's user, fetched on first use and then cached.
    pub fn token(&mut self) -> Result<&str, KeystoneError> {
        if self.token.is_none() {
            self.authenticate()?;
        }
        Ok(self.token.as_deref().unwrap_or_default())
    }

    /// Fetches a new token (password method, project scope).
    pub fn authenticate(&mut self) -> Result<(), KeystoneError> {
        self.token = None;
        let body = json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.creds.username,
                            "domain": domain_ref(&self.creds.user_domain),
                            "password": self.creds.password,
                        }
                    }
                },
                "scope": {
                    "project": {
                        "name": self.creds.project_name,
                        "domain": domain_ref(&self.creds.project_domain),
                    }
                }
            }
        });
        let what = format!("authenticate as '{}'", self.creds.username);
        let url = format!("{}/auth/tokens", self.base);
        let answer = self.send(&what, Method::Post, &url, Some(&body), false)?;
        self.check(&what, Method::Post, &url, &answer)?;
        match answer.token {
            Some(token) if !token.is_empty() => {
                self.token = Some(token);
                Ok(())
            }
            _ => Err(KeystoneError::Response {
                what,
                method: "POST",
                url,
                detail: "no X-Subject-Token header".into(),
            }),
        }
    }

    // ----- the HTTP layer -----

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    /// One HTTP exchange; `auth` adds the token. Transport failures are errors, any
    /// HTTP status is an `Answer`.
    fn send(
        &mut self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        auth: bool,
    ) -> Result<Answer, KeystoneError> {
        let mut builder = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(url)
            .header("Accept", "application/json");
        if auth {
            if let Some(token) = &self.token {
                builder = builder.header("X-Auth-Token", token.as_str());
            }
        }
        let transport = |source: ureq::Error| KeystoneError::Transport {
            what: what.to_owned(),
            method: method.as_str(),
            url: url.to_owned(),
            source,
        };
        let bad_request = |detail: String| KeystoneError::Response {
            what: what.to_owned(),
            method: method.as_str(),
            url: url.to_owned(),
            detail,
        };
        self.requests += 1;
        let response = if let Some(value) = body {
            let bytes = serde_json::to_vec(value).map_err(|e| bad_request(e.to_string()))?;
            let request = builder
                .header("Content-Type", "application/json")
                .body(bytes)
                .map_err(|e| bad_request(e.to_string()))?;
            self.agent.run(request)
        } else if method == Method::Get {
            let request = builder.body(()).map_err(|e| bad_request(e.to_string()))?;
            self.agent.run(request)
        } else {
            // An empty body with `Content-Length: 0`: Apache (the front proxy) answers
            // 411 to a PUT without one (keystone's role assignments).
            let request = builder
                .body(Vec::<u8>::new())
                .map_err(|e| bad_request(e.to_string()))?;
            self.agent.run(request)
        };
        let mut response = response.map_err(transport)?;
        let status = response.status().as_u16();
        let token = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(transport)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                // Non-JSON (a proxy's or uWSGI's error page): keep a redacted snippet.
                Err(_) => Value::String(self.mask(&text)),
            }
        };
        Ok(Answer {
            status,
            body,
            token,
        })
    }

    /// A request with the token; a 401 re-authenticates once and repeats it.
    fn call(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(String, Answer), KeystoneError> {
        crate::timing::timed(crate::timing::Bucket::Osc, || {
            self.call_once(what, method, path, query, body)
        })
    }

    /// [`Self::call`]'s exchange.
    fn call_once(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(String, Answer), KeystoneError> {
        if self.token.is_none() {
            self.authenticate()?;
        }
        let url = self.url(path, query);
        let mut answer = self.send(what, method, &url, body, true)?;
        if answer.status == 401 {
            self.authenticate()?;
            answer = self.send(what, method, &url, body, true)?;
        }
        Ok((url, answer))
    }

    /// A request that must succeed (2xx).
    fn call_ok(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, KeystoneError> {
        let (url, answer) = self.call(what, method, path, query, body)?;
        self.check(what, method, &url, &answer)?;
        Ok(answer.body)
    }

    fn check(
        &self,
        what: &str,
        method: Method,
        url: &str,
        answer: &Answer,
    ) -> Result<(), KeystoneError> {
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        Err(KeystoneError::Status {
            what: what.to_owned(),
            method: method.as_str(),
            url: url.to_owned(),
            status: answer.status,
            message: self.error_message(&answer.body),
        })
    }

    /// Keystone's `{"error": {"message": ...}}`, masked and cut short.
    fn error_message(&self, body: &Value) -> String {
        let raw = match body {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map_or_else(|| other.to_string(), str::to_owned),
        };
        let mut text = self.mask(raw.trim());
        if text.chars().count() > MAX_MESSAGE {
            text = text.chars().take(MAX_MESSAGE).collect::<String>() + "...";
        }
        if text.is_empty() {
            "(no message)".into()
        } else {
            text
        }
    }

    fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), "******");
            }
        }
        out
    }

    fn remember_secret(&mut self, password: &str) {
        if !password.is_empty() && !self.secrets.iter().any(|s| s == password) {
            self.secrets.push(password.to_owned());
        }
    }

    // ----- generic lookups -----

    /// Lists `collection` with the query and returns the members' objects.
    fn list(
        &mut self,
        what: &str,
        collection: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, KeystoneError> {
        let (url, answer) = self.call(what, Method::Get, collection, query, None)?;
        self.check(what, Method::Get, &url, &answer)?;
        match answer.body.get(collection) {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(KeystoneError::Response {
                what: what.to_owned(),
                method: "GET",
                url,
                detail: format!("no '{collection}' list in the answer"),
            }),
        }
    }

    /// `GET collection/ID`: the object's id, or None on 404.
    fn show(
        &mut self,
        what: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<String>, KeystoneError> {
        if id.is_empty() {
            return Ok(None);
        }
        let path = format!("{collection}/{}", encode(id));
        let (url, answer) = self.call(what, Method::Get, &path, &[], None)?;
        if answer.status == 404 {
            return Ok(None);
        }
        self.check(what, Method::Get, &url, &answer)?;
        let key = collection.trim_end_matches('s');
        Ok(answer
            .body
            .pointer(&format!("/{key}/id"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// The id of the first object `list` finds, if any.
    fn first_id(
        &mut self,
        what: &str,
        collection: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<String>, KeystoneError> {
        Ok(id_of(self.list(what, collection, query)?.first()))
    }

    /// An unscoped object given by name or id: by name first, then `GET collection/ID`.
    fn name_or_id(
        &mut self,
        kind: &'static str,
        collection: &str,
        name_or_id: &str,
    ) -> Result<String, KeystoneError> {
        let what = format!("find {kind} '{name_or_id}'");
        match self.first_id(&what, collection, &[("name", name_or_id)])? {
            Some(id) => Ok(id),
            None => self
                .show(&what, collection, name_or_id)?
                .ok_or_else(|| not_found(&what, kind, name_or_id, "")),
        }
    }

    /// PUT a role assignment (idempotent in keystone); returns the role id.
    fn put_role(&mut self, what: &str, path: &str, role_id: &str) -> Result<String, KeystoneError> {
        self.call_ok(what, Method::Put, path, &[], None)?;
        Ok(role_id.to_owned())
    }

    /// POST a new object; on 409 (created meanwhile) the lookup runs again.
    fn create(
        &mut self,
        what: &str,
        collection: &str,
        body: &Value,
        relookup: &mut dyn FnMut(&mut Self) -> Result<Option<String>, KeystoneError>,
    ) -> Result<String, KeystoneError> {
        let (url, answer) = self.call(what, Method::Post, collection, &[], Some(body))?;
        if answer.status == 409 {
            if let Some(id) = relookup(self)? {
                return Ok(id);
            }
        }
        self.check(what, Method::Post, &url, &answer)?;
        let key = collection.trim_end_matches('s');
        id_of(answer.body.get(key)).ok_or_else(|| KeystoneError::Response {
            what: what.to_owned(),
            method: "POST",
            url,
            detail: format!("no {key} id in the answer"),
        })
    }

    // ----- domains -----

    /// The id of a domain given by name or id (cached for the client's life).
    pub fn domain_id(&mut self, name_or_id: &str) -> Result<String, KeystoneError> {
        self.remembered(("domain", String::new(), name_or_id.to_owned()), |c| {
            c.name_or_id("domain", "domains", name_or_id)
        })
    }

    /// The id kept under `key`, else what `find` says (then kept for the client's life).
    fn remembered(
        &mut self,
        key: (&'static str, String, String),
        find: impl FnOnce(&mut Self) -> Result<String, KeystoneError>,
    ) -> Result<String, KeystoneError> {
        if let Some(id) = self.ids.get(&key) {
            return Ok(id.clone());
        }
        let id = find(self)?;
        self.ids.insert(key, id.clone());
        Ok(id)
    }

    /// DevStack's `get_or_create_domain NAME DESCRIPTION`.
    pub fn get_or_create_domain(
        &mut self,
        name: &str,
        description: &str,
    ) -> Result<String, KeystoneError> {
        self.remembered(("domain", String::new(), name.to_owned()), |c| {
            let what = format!("get or create domain '{name}'");
            let mut lookup = |c: &mut Self| c.first_id(&what, "domains", &[("name", name)]);
            if let Some(id) = lookup(c)? {
                return Ok(id);
            }
            let body = json!({"domain": {"name": name, "description": description}});
            c.create(&what, "domains", &body, &mut lookup)
        })
    }

    // ----- projects -----

    /// DevStack's `get_or_create_project NAME DOMAIN`.
    pub fn get_or_create_project(
        &mut self,
        name: &str,
        domain: &str,
    ) -> Result<String, KeystoneError> {
        let domain_id = self.domain_id(domain)?;
        let key = ("project", domain_id.clone(), name.to_owned());
        self.remembered(key, |c| {
            let what = format!("get or create project '{name}' in domain '{domain}'");
            let mut lookup = |c: &mut Self| {
                c.first_id(
                    &what,
                    "projects",
                    &[("name", name), ("domain_id", &domain_id)],
                )
            };
            // Names are unique in a domain: create first (a stack's keystone is new,
            // so this is one request), find on 409.
            let body = json!({"project": {
                "name": name, "domain_id": domain_id, "description": "", "enabled": true
            }});
            c.create(&what, "projects", &body, &mut lookup)
        })
    }

    /// The id of a project given by name (in `domain`, or anywhere if unique) or id.
    pub fn project_id(
        &mut self,
        name_or_id: &str,
        domain: Option<&str>,
    ) -> Result<String, KeystoneError> {
        let Some(domain) = domain.filter(|d| !d.is_empty()) else {
            return self.find_scoped("project", "projects", name_or_id, None);
        };
        let key = ("project", self.domain_id(domain)?, name_or_id.to_owned());
        self.remembered(key, |c| {
            c.find_scoped("project", "projects", name_or_id, Some(domain))
        })
    }

    // ----- groups -----

    /// DevStack's `get_or_create_group NAME DOMAIN [DESCRIPTION]` (`openstack group
    /// create NAME --domain DOMAIN --description DESC --or-show`): DOMAIN is a name or
    /// an id; an existing group is found and left as it is (its description too).
    pub fn get_or_create_group(
        &mut self,
        name: &str,
        domain: &str,
        description: &str,
    ) -> Result<String, KeystoneError> {
        let domain_id = self.domain_id(domain)?;
        let key = ("group", domain_id.clone(), name.to_owned());
        self.remembered(key, |c| {
            let what = format!("get or create group '{name}' in domain '{domain}'");
            let mut lookup = |c: &mut Self| {
                c.first_id(
                    &what,
                    "groups",
                    &[("name", name), ("domain_id", &domain_id)],
                )
            };
            // Names are unique in a domain: create first, find on 409.
            let body = json!({"group": {
                "name": name, "domain_id": domain_id, "description": description
            }});
            c.create(&what, "groups", &body, &mut lookup)
        })
    }

    // ----- users -----

    /// DevStack's `get_or_create_user NAME PASSWORD DOMAIN [EMAIL]`: the password is set
    /// only when the user is created (an existing user's password is left alone, as
    /// DevStack's `openstack user create --or-show` does).
    pub fn get_or_create_user(
        &mut self,
        name: &str,
        password: &str,
        domain: &str,
        email: Option<&str>,
    ) -> Result<String, KeystoneError> {
        self.remember_secret(password);
        let domain_id = self.domain_id(domain)?;
        let what = format!("get or create user '{name}' in domain '{domain}'");
        let mut lookup =
            |c: &mut Self| c.first_id(&what, "users", &[("name", name), ("domain_id", &domain_id)]);
        // Names are unique in a domain: create first, find on 409 (keystone then
        // leaves the existing user, and its password, as they are).
        let mut user = json!({
            "name": name, "domain_id": domain_id, "password": password, "enabled": true
        });
        if let Some(email) = email.filter(|e| !e.is_empty()) {
            user["email"] = Value::String(email.to_owned());
        }
        self.create(&what, "users", &json!({ "user": user }), &mut lookup)
    }

    /// The id of a user given by name (in `domain`, or anywhere if unique) or id.
    pub fn user_id(
        &mut self,
        name_or_id: &str,
        domain: Option<&str>,
    ) -> Result<String, KeystoneError> {
        self.find_scoped("user", "users", name_or_id, domain)
    }

    fn find_scoped(
        &mut self,
        kind: &'static str,
        collection: &str,
        name_or_id: &str,
        domain: Option<&str>,
    ) -> Result<String, KeystoneError> {
        let domain = domain.filter(|d| !d.is_empty());
        let what = format!("find {kind} '{name_or_id}'");
        let domain_id = match domain {
            Some(d) => Some(self.domain_id(d)?),
            None => None,
        };
        let mut query = vec![("name", name_or_id)];
        if let Some(id) = &domain_id {
            query.push(("domain_id", id.as_str()));
        }
        let found = self.list(&what, collection, &query)?;
        match found.len() {
            1 => id_of(found.first()).ok_or_else(|| not_found(&what, kind, name_or_id, "")),
            0 => self.show(&what, collection, name_or_id)?.ok_or_else(|| {
                let scope = domain
                    .map(|d| format!(" in domain '{d}'"))
                    .unwrap_or_default();
                not_found(&what, kind, name_or_id, &scope)
            }),
            count => Err(KeystoneError::Ambiguous {
                what,
                kind,
                name: name_or_id.to_owned(),
                count,
            }),
        }
    }

    // ----- roles -----

    /// DevStack's `get_or_create_role NAME` (a global role; cached).
    pub fn get_or_create_role(&mut self, name: &str) -> Result<String, KeystoneError> {
        self.remembered(("role", String::new(), name.to_owned()), |c| {
            let what = format!("get or create role '{name}'");
            let mut lookup = |c: &mut Self| c.first_id(&what, "roles", &[("name", name)]);
            // Global role names are unique: create first, find on 409.
            let body = json!({"role": {"name": name}});
            c.create(&what, "roles", &body, &mut lookup)
        })
    }

    /// The id of a role given by name or id (cached).
    pub fn role_id(&mut self, name_or_id: &str) -> Result<String, KeystoneError> {
        self.remembered(("role", String::new(), name_or_id.to_owned()), |c| {
            c.name_or_id("role", "roles", name_or_id)
        })
    }

    // ----- role assignments -----

    /// Gives a user a role on a project (ids). Idempotent: keystone's PUT is.
    pub fn add_user_project_role(
        &mut self,
        role_id: &str,
        user_id: &str,
        project_id: &str,
    ) -> Result<String, KeystoneError> {
        let what = format!("give user {user_id} role {role_id} on project {project_id}");
        let path = format!(
            "projects/{}/users/{}/roles/{}",
            encode(project_id),
            encode(user_id),
            encode(role_id)
        );
        self.put_role(&what, &path, role_id)
    }

    /// Gives a user a role on a domain (ids).
    pub fn add_user_domain_role(
        &mut self,
        role_id: &str,
        user_id: &str,
        domain_id: &str,
    ) -> Result<String, KeystoneError> {
        let what = format!("give user {user_id} role {role_id} on domain {domain_id}");
        let path = format!(
            "domains/{}/users/{}/roles/{}",
            encode(domain_id),
            encode(user_id),
            encode(role_id)
        );
        self.put_role(&what, &path, role_id)
    }

    /// Gives a user a role on the whole system (`--system all`).
    pub fn add_user_system_role(
        &mut self,
        role_id: &str,
        user_id: &str,
    ) -> Result<String, KeystoneError> {
        let what = format!("give user {user_id} system role {role_id}");
        let path = format!("system/users/{}/roles/{}", encode(user_id), encode(role_id));
        self.put_role(&what, &path, role_id)
    }

    /// DevStack's `get_or_add_user_project_role ROLE USER PROJECT [USER_DOMAIN]
    /// [PROJECT_DOMAIN]` with names or ids; returns the role id.
    pub fn get_or_add_user_project_role(
        &mut self,
        role: &str,
        user: &str,
        project: &str,
        user_domain: Option<&str>,
        project_domain: Option<&str>,
    ) -> Result<String, KeystoneError> {
        let role_id = self.role_id(role)?;
        let user_id = self.user_id(user, user_domain)?;
        let project_id = self.project_id(project, project_domain)?;
        self.add_user_project_role(&role_id, &user_id, &project_id)
    }

    /// DevStack's `get_or_add_user_domain_role ROLE USER DOMAIN` (user in that domain).
    pub fn get_or_add_user_domain_role(
        &mut self,
        role: &str,
        user: &str,
        domain: &str,
    ) -> Result<String, KeystoneError> {
        let role_id = self.role_id(role)?;
        let domain_id = self.domain_id(domain)?;
        let user_id = self.user_id(user, Some(domain))?;
        self.add_user_domain_role(&role_id, &user_id, &domain_id)
    }

    // ----- catalog -----

    /// Makes sure a region exists; returns its id (which is its name).
    pub fn get_or_create_region(&mut self, region: &str) -> Result<String, KeystoneError> {
        if self.regions.iter().any(|r| r == region) {
            return Ok(region.to_owned());
        }
        let what = format!("get or create region '{region}'");
        let mut lookup = |c: &mut Self| c.show(&what, "regions", region);
        let id = match lookup(self)? {
            Some(id) => id,
            None => self.create(
                &what,
                "regions",
                &json!({"region": {"id": region}}),
                &mut lookup,
            )?,
        };
        self.regions.push(region.to_owned());
        Ok(id)
    }

    /// DevStack's `get_or_create_service NAME TYPE DESCRIPTION` (found by name and type).
    pub fn get_or_create_service(
        &mut self,
        name: &str,
        service_type: &str,
        description: &str,
    ) -> Result<String, KeystoneError> {
        let what = format!("get or create service '{name}' ({service_type})");
        let mut lookup = |c: &mut Self| -> Result<Option<String>, KeystoneError> {
            let found = c.list(&what, "services", &[("type", service_type)])?;
            Ok(found
                .iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|s| id_of(Some(s))))
        };
        if let Some(id) = lookup(self)? {
            return Ok(id);
        }
        let body = json!({"service": {
            "name": name, "type": service_type, "description": description, "enabled": true
        }});
        let id = self.create(&what, "services", &body, &mut lookup)?;
        self.created_services.push(id.clone());
        Ok(id)
    }

    /// The id of a service given by id, name or type (as `openstack endpoint create
    /// SERVICE` accepts; DevStack passes the type).
    pub fn service_id(&mut self, service: &str) -> Result<String, KeystoneError> {
        let what = format!("find service '{service}'");
        let all = self.list(&what, "services", &[])?;
        let field = |s: &Value, key: &str| s.get(key).and_then(Value::as_str) == Some(service);
        for key in ["id", "name", "type"] {
            let matches: Vec<&Value> = all.iter().filter(|s| field(s, key)).collect();
            match matches.len() {
                0 => {}
                1 => {
                    return id_of(matches.first().copied())
                        .ok_or_else(|| not_found(&what, "service", service, ""));
                }
                count => {
                    return Err(KeystoneError::Ambiguous {
                        what,
                        kind: "service",
                        name: service.to_owned(),
                        count,
                    });
                }
            }
        }
        Err(not_found(&what, "service", service, ""))
    }

    /// One endpoint of a service for an interface in a region: created if missing, its
    /// URL updated if it differs. Returns the endpoint id.
    pub fn get_or_create_endpoint(
        &mut self,
        service_id: &str,
        interface: &str,
        region: &str,
        url: &str,
    ) -> Result<String, KeystoneError> {
        self.get_or_create_region(region)?;
        let what =
            format!("get or create the {interface} endpoint of service {service_id} in {region}");
        let lookup = |c: &mut Self| -> Result<Option<(String, String)>, KeystoneError> {
            let found = c.list(
                &what,
                "endpoints",
                &[
                    ("service_id", service_id),
                    ("interface", interface),
                    ("region_id", region),
                ],
            )?;
            Ok(found.first().and_then(|e| {
                let id = id_of(Some(e))?;
                let url = e
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                Some((id, url))
            }))
        };
        // A service this client created has only the endpoints it made: no lookup.
        let key = (
            service_id.to_owned(),
            interface.to_owned(),
            region.to_owned(),
        );
        let ours = self.created_services.iter().any(|s| s == service_id);
        let existing = if ours {
            self.created_endpoints.get(&key).cloned()
        } else {
            lookup(self)?
        };
        if let Some((id, current)) = existing {
            if current != url {
                let what = format!("update the {interface} endpoint {id} to {url}");
                let body = json!({"endpoint": {"url": url}});
                self.call_ok(
                    &what,
                    Method::Patch,
                    &format!("endpoints/{}", encode(&id)),
                    &[],
                    Some(&body),
                )?;
                if ours {
                    self.created_endpoints
                        .insert(key, (id.clone(), url.to_owned()));
                }
            }
            return Ok(id);
        }
        let body = json!({"endpoint": {
            "service_id": service_id, "interface": interface, "region_id": region,
            "url": url, "enabled": true
        }});
        let mut relookup = |c: &mut Self| Ok(lookup(c)?.map(|(id, _)| id));
        let id = self.create(&what, "endpoints", &body, &mut relookup)?;
        if ours {
            self.created_endpoints
                .insert(key, (id.clone(), url.to_owned()));
        }
        Ok(id)
    }

    /// The endpoint of a service for an interface in a region, if there is one:
    /// `(id, url)`.
    pub fn find_endpoint(
        &mut self,
        service_id: &str,
        interface: &str,
        region: &str,
    ) -> Result<Option<(String, String)>, KeystoneError> {
        let what = format!("find the {interface} endpoint of service {service_id}");
        let found = self.list(
            &what,
            "endpoints",
            &[
                ("service_id", service_id),
                ("interface", interface),
                ("region_id", region),
            ],
        )?;
        Ok(found.first().and_then(|e| {
            Some((
                id_of(Some(e))?,
                e.get("url")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ))
        }))
    }

    /// DevStack's `get_or_create_endpoint SERVICE REGION PUBLIC [ADMIN] [INTERNAL]`:
    /// one endpoint per non-empty URL; returns the public endpoint's id.
    pub fn get_or_create_endpoints(
        &mut self,
        service: &str,
        region: &str,
        public: &str,
        admin: Option<&str>,
        internal: Option<&str>,
    ) -> Result<String, KeystoneError> {
        let service_id = self.service_id(service)?;
        let public_id = self.get_or_create_endpoint(&service_id, "public", region, public)?;
        if let Some(url) = admin.filter(|u| !u.is_empty()) {
            self.get_or_create_endpoint(&service_id, "admin", region, url)?;
        }
        if let Some(url) = internal.filter(|u| !u.is_empty()) {
            self.get_or_create_endpoint(&service_id, "internal", region, url)?;
        }
        Ok(public_id)
    }
}

/// `{"name": X}` for a domain given by name, `{"id": "default"}` for DevStack's
/// usual lower-case id.
fn domain_ref(domain: &str) -> Value {
    if domain == "default" {
        json!({"id": domain})
    } else {
        json!({"name": domain})
    }
}

fn id_of(value: Option<&Value>) -> Option<String> {
    value?.get("id")?.as_str().map(str::to_owned)
}

fn not_found(what: &str, kind: &'static str, name: &str, scope: &str) -> KeystoneError {
    KeystoneError::NotFound {
        what: what.to_owned(),
        kind,
        name: name.to_owned(),
        scope: scope.to_owned(),
    }
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved pass through).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Request shapes against a tiny fake keystone on 127.0.0.1 (a thread with a
    //! std TcpListener that answers scripted responses and records the requests).

    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        token: Option<String>,
        body: String,
        content_length: Option<usize>,
    }

    /// Serves `answers` in order (status, extra headers, body), one per connection.
    struct Fake {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        handle: Option<std::thread::JoinHandle<()>>,
    }

    impl Fake {
        fn start(answers: Vec<(u16, &'static str, String)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let record = seen.clone();
            let handle = std::thread::spawn(move || {
                for (status, headers, body) in answers {
                    let (stream, _) = listener.accept().unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_owned();
                    let path = parts.next().unwrap_or("").to_owned();
                    let mut length = 0usize;
                    let mut content_length = None;
                    let mut token = None;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => {
                                length = v.trim().parse().unwrap();
                                content_length = Some(length);
                            }
                            "x-auth-token" => token = Some(v.trim().to_owned()),
                            _ => {}
                        }
                    }
                    let mut buf = vec![0; length];
                    reader.read_exact(&mut buf).unwrap();
                    record.lock().unwrap().push(Seen {
                        method,
                        path,
                        token,
                        body: String::from_utf8(buf).unwrap(),
                        content_length,
                    });
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            Self {
                url,
                seen,
                handle: Some(handle),
            }
        }

        fn seen(mut self) -> Vec<Seen> {
            if let Some(h) = self.handle.take() {
                h.join().unwrap();
            }
            self.seen.lock().unwrap().clone()
        }
    }

    const TOKEN_OK: (u16, &str) = (201, "X-Subject-Token: tok1\r\n");

    fn token(n: &str) -> (u16, &'static str, String) {
        let headers: &'static str = if n == "tok1" {
            "X-Subject-Token: tok1\r\n"
        } else {
            "X-Subject-Token: tok2\r\n"
        };
        (TOKEN_OK.0, headers, "{\"token\":{}}".into())
    }

    fn ok(body: &str) -> (u16, &'static str, String) {
        (200, "", body.to_owned())
    }

    fn client(fake: &Fake) -> Client {
        Client::new(
            Credentials::admin(&fake.url, "s3cret-pw"),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn authenticates_once_and_reuses_the_token() {
        let fake = Fake::start(vec![
            token("tok1"),
            (201, "", r#"{"role":{"id":"r1","name":"service"}}"#.into()),
            (201, "", r#"{"role":{"id":"r2","name":"member"}}"#.into()),
        ]);
        let mut c = client(&fake);
        assert_eq!(c.get_or_create_role("service").unwrap(), "r1");
        assert_eq!(c.get_or_create_role("member").unwrap(), "r2");
        // Cached: no request.
        assert_eq!(c.get_or_create_role("service").unwrap(), "r1");
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/v3/auth/tokens");
        let auth: Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(
            auth.pointer("/auth/identity/password/user/name"),
            Some(&json!("admin"))
        );
        assert_eq!(
            auth.pointer("/auth/scope/project/domain/name"),
            Some(&json!("Default"))
        );
        assert_eq!(seen[1].method, "POST");
        assert_eq!(seen[1].path, "/v3/roles");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[1].body).unwrap(),
            json!({"role": {"name": "service"}})
        );
        assert_eq!(seen[1].token.as_deref(), Some("tok1"));
        assert_eq!(seen[2].token.as_deref(), Some("tok1"));
        assert_eq!(c.requests(), 3);
    }

    #[test]
    fn reauthenticates_on_401_and_repeats_the_request() {
        let fake = Fake::start(vec![
            token("tok1"),
            (
                401,
                "",
                r#"{"error":{"code":401,"message":"expired"}}"#.into(),
            ),
            token("tok2"),
            (201, "", r#"{"role":{"id":"r1","name":"service"}}"#.into()),
        ]);
        let mut c = client(&fake);
        assert_eq!(c.get_or_create_role("service").unwrap(), "r1");
        let seen = fake.seen();
        assert_eq!(seen[1].token.as_deref(), Some("tok1"));
        assert_eq!(seen[2].path, "/v3/auth/tokens");
        assert_eq!(seen[3].token.as_deref(), Some("tok2"));
        assert_eq!(seen[3].path, "/v3/roles");
    }

    #[test]
    fn creates_a_user_with_its_password_only_when_missing() {
        let fake = Fake::start(vec![
            token("tok1"),
            ok(r#"{"domains":[{"id":"default","name":"Default"}]}"#),
            (201, "", r#"{"user":{"id":"u1","name":"nova"}}"#.into()),
            (
                409,
                "",
                r#"{"error":{"code":409,"message":"Conflict"}}"#.into(),
            ),
            ok(r#"{"users":[{"id":"u1","name":"nova"}]}"#),
        ]);
        let mut c = client(&fake);
        let id = c
            .get_or_create_user("nova", "svc-pw", "Default", Some("nova@example.com"))
            .unwrap();
        assert_eq!(id, "u1");
        // Existing: found, not re-created, password untouched.
        assert_eq!(
            c.get_or_create_user("nova", "other-pw", "Default", None)
                .unwrap(),
            "u1"
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[1].path, "/v3/domains?name=Default");
        assert_eq!(seen[2].method, "POST");
        assert_eq!(seen[2].path, "/v3/users");
        let body: Value = serde_json::from_str(&seen[2].body).unwrap();
        assert_eq!(
            body,
            json!({"user": {"name": "nova", "domain_id": "default", "password": "svc-pw",
                            "enabled": true, "email": "nova@example.com"}})
        );
        // The second create met 409 and found the user instead.
        assert_eq!(seen[3].method, "POST");
        assert_eq!(seen[4].method, "GET");
        assert_eq!(seen[4].path, "/v3/users?name=nova&domain_id=default");
    }

    #[test]
    fn endpoint_url_is_updated_when_it_differs() {
        let fake = Fake::start(vec![
            token("tok1"),
            ok(r#"{"region":{"id":"RegionOne"}}"#),
            ok(r#"{"endpoints":[{"id":"e1","url":"http://old:9292"}]}"#),
            ok(r#"{"endpoint":{"id":"e1","url":"http://10.0.0.1:9292"}}"#),
        ]);
        let mut c = client(&fake);
        let id = c
            .get_or_create_endpoint("s1", "public", "RegionOne", "http://10.0.0.1:9292")
            .unwrap();
        assert_eq!(id, "e1");
        let seen = fake.seen();
        assert_eq!(seen[1].path, "/v3/regions/RegionOne");
        assert_eq!(
            seen[2].path,
            "/v3/endpoints?service_id=s1&interface=public&region_id=RegionOne"
        );
        assert_eq!(seen[3].method, "PATCH");
        assert_eq!(seen[3].path, "/v3/endpoints/e1");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[3].body).unwrap(),
            json!({"endpoint": {"url": "http://10.0.0.1:9292"}})
        );
    }

    #[test]
    fn missing_service_and_region_are_created() {
        let fake = Fake::start(vec![
            token("tok1"),
            ok(r#"{"services":[{"id":"x","name":"other","type":"image"}]}"#),
            (201, "", r#"{"service":{"id":"s1"}}"#.into()),
            (
                404,
                "",
                r#"{"error":{"code":404,"message":"no region"}}"#.into(),
            ),
            (201, "", r#"{"region":{"id":"Two"}}"#.into()),
            // The service is new: no endpoint lookup before the create.
            (201, "", r#"{"endpoint":{"id":"e9"}}"#.into()),
        ]);
        let mut c = client(&fake);
        let s = c
            .get_or_create_service("glance", "image", "Glance Image Service")
            .unwrap();
        assert_eq!(s, "s1");
        let e = c
            .get_or_create_endpoint(&s, "public", "Two", "http://h:9292")
            .unwrap();
        assert_eq!(e, "e9");
        let seen = fake.seen();
        assert_eq!(seen[1].path, "/v3/services?type=image");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[2].body).unwrap(),
            json!({"service": {"name": "glance", "type": "image",
                               "description": "Glance Image Service", "enabled": true}})
        );
        assert_eq!(seen[4].path, "/v3/regions");
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[5].path, "/v3/endpoints");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[5].body).unwrap(),
            json!({"endpoint": {"service_id": "s1", "interface": "public",
                                "region_id": "Two", "url": "http://h:9292", "enabled": true}})
        );
    }

    #[test]
    fn existing_project_is_found_after_409_and_cached() {
        let fake = Fake::start(vec![
            token("tok1"),
            ok(r#"{"domains":[{"id":"d1","name":"Default"}]}"#),
            (
                409,
                "",
                r#"{"error":{"code":409,"message":"Conflict"}}"#.into(),
            ),
            ok(r#"{"projects":[{"id":"p1","name":"service"}]}"#),
        ]);
        let mut c = client(&fake);
        assert_eq!(c.get_or_create_project("service", "Default").unwrap(), "p1");
        assert_eq!(c.get_or_create_project("service", "Default").unwrap(), "p1");
        assert_eq!(c.project_id("service", Some("Default")).unwrap(), "p1");
        let seen = fake.seen();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[2].method, "POST");
        assert_eq!(seen[3].path, "/v3/projects?name=service&domain_id=d1");
    }

    #[test]
    fn group_is_created_in_its_domain_or_found_after_409() {
        let fake = Fake::start(vec![
            token("tok1"),
            ok(r#"{"domains":[{"id":"d1","name":"Default"}]}"#),
            (201, "", r#"{"group":{"id":"g1","name":"admins"}}"#.into()),
            (
                409,
                "",
                r#"{"error":{"code":409,"message":"Conflict"}}"#.into(),
            ),
            ok(r#"{"groups":[{"id":"g2","name":"readers"}]}"#),
        ]);
        let mut c = client(&fake);
        let id = c
            .get_or_create_group("admins", "Default", "openstack admin group")
            .unwrap();
        assert_eq!(id, "g1");
        // Cached: no request.
        assert_eq!(
            c.get_or_create_group("admins", "Default", "").unwrap(),
            "g1"
        );
        assert_eq!(
            c.get_or_create_group("readers", "Default", "").unwrap(),
            "g2"
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[1].path, "/v3/domains?name=Default");
        assert_eq!(seen[2].method, "POST");
        assert_eq!(seen[2].path, "/v3/groups");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[2].body).unwrap(),
            json!({"group": {"name": "admins", "domain_id": "d1",
                             "description": "openstack admin group"}})
        );
        assert_eq!(seen[3].method, "POST");
        assert_eq!(seen[4].path, "/v3/groups?name=readers&domain_id=d1");
    }

    #[test]
    fn role_assignment_is_a_put_on_the_ids() {
        let fake = Fake::start(vec![token("tok1"), (204, "", String::new())]);
        let mut c = client(&fake);
        assert_eq!(c.add_user_project_role("r1", "u1", "p1").unwrap(), "r1");
        let seen = fake.seen();
        assert_eq!(seen[1].method, "PUT");
        assert_eq!(seen[1].path, "/v3/projects/p1/users/u1/roles/r1");
        // Apache in front answers 411 to a PUT without a length.
        assert_eq!(seen[1].content_length, Some(0));
    }

    #[test]
    fn errors_name_the_request_and_never_the_password() {
        let fake = Fake::start(vec![(
            401,
            "",
            r#"{"error":{"code":401,"message":"bad password s3cret-pw for admin"}}"#.into(),
        )]);
        let mut c = client(&fake);
        let err = c.get_or_create_role("service").unwrap_err();
        let text = err.report();
        assert_eq!(err.status(), Some(401));
        assert!(text.contains("authenticate as 'admin'"), "{text}");
        assert!(text.contains("/v3/auth/tokens"), "{text}");
        assert!(text.contains("HTTP 401"), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("******"), "{text}");
        fake.seen();
    }

    #[test]
    fn transport_errors_and_bad_urls_are_reported() {
        // A port nothing listens on.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut c = Client::new(
            Credentials::admin(&format!("http://127.0.0.1:{port}/v3/"), "pw"),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(c.base_url(), format!("http://127.0.0.1:{port}/v3"));
        let err = c.token().unwrap_err();
        assert!(matches!(err, KeystoneError::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot reach POST"), "{err}");
        assert!(Client::new(Credentials::admin("", "pw"), DEFAULT_TIMEOUT).is_err());
        assert!(Client::new(Credentials::admin("ftp://x", "pw"), DEFAULT_TIMEOUT).is_err());
        assert!(!format!("{:?}", Credentials::admin("http://x", "pw")).contains("\"pw\""));
    }

    #[test]
    fn a_request_that_gets_no_answer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            drop(stream);
        });
        let mut c =
            Client::new(Credentials::admin(&url, "pw"), Duration::from_millis(300)).unwrap();
        let started = std::time::Instant::now();
        let err = c.token().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                &err,
                KeystoneError::Transport {
                    source: ureq::Error::Timeout(_),
                    ..
                }
            ),
            "{err:?}"
        );
        drop(handle); // the server thread ends on its own
    }

    #[test]
    fn encode_escapes_reserved_characters() {
        assert_eq!(encode("Default"), "Default");
        assert_eq!(encode("a b&c/d"), "a%20b%26c%2Fd");
    }
}
