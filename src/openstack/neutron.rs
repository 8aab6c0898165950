//! A small client of neutron's REST API (v2.0), enough for DevStack's initial
//! networks: find by name, create, update, add a router interface, list extensions.
//! One `openstack` CLI call costs about 2 s of Python start-up here; a request costs
//! milliseconds.

use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub(crate) enum NeutronError {
    #[error("neutron: {method} {url}: {detail}")]
    Http {
        method: &'static str,
        url: String,
        detail: String,
    },
    #[error("neutron: {method} {url} answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

pub(crate) struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// Every request made, `METHOD path` (tests and the bench read them).
    pub(crate) log: Vec<String>,
}

impl Client {
    /// `base`: neutron's root URL (`http://127.0.0.1:9696/`); `token`: an admin token.
    pub(crate) fn new(base: &str, token: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent,
            log: Vec::new(),
        }
    }

    fn call(
        &mut self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NeutronError> {
        crate::timing::timed(crate::timing::Bucket::Osc, || {
            self.call_once(method, path, body)
        })
    }

    /// [`Self::call`]'s exchange.
    fn call_once(
        &mut self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NeutronError> {
        let url = format!("{}/v2.0/{}", self.base, path.trim_start_matches('/'));
        self.log.push(format!("{method} /v2.0/{path}"));
        let http = |e: ureq::Error| NeutronError::Http {
            method,
            url: url.clone(),
            detail: e.to_string(),
        };
        let resp = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("X-Auth-Token", &self.token)
                .call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("X-Auth-Token", &self.token)
                .call(),
            ("PUT", b) => self
                .agent
                .put(&url)
                .header("X-Auth-Token", &self.token)
                .send_json(b.cloned().unwrap_or(Value::Null)),
            (_, b) => self
                .agent
                .post(&url)
                .header("X-Auth-Token", &self.token)
                .send_json(b.cloned().unwrap_or(Value::Null)),
        }
        .map_err(http)?;
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        if status >= 300 {
            return Err(NeutronError::Status {
                method,
                url,
                status,
                body: text.chars().take(400).collect(),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| NeutronError::Http {
            method,
            url,
            detail: format!("bad JSON: {e}"),
        })
    }

    /// The aliases of the API's extensions.
    pub(crate) fn extensions(&mut self) -> Result<Vec<String>, NeutronError> {
        let v = self.call("GET", "extensions", None)?;
        Ok(v["extensions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["alias"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The first `kind` (networks, subnets, routers, ports) matching `query`
    /// (`name=private&project_id=...`).
    pub(crate) fn find(&mut self, kind: &str, query: &str) -> Result<Option<Value>, NeutronError> {
        let v = self.call("GET", &format!("{kind}?{query}"), None)?;
        Ok(v[kind].as_array().and_then(|a| a.first().cloned()))
    }

    pub(crate) fn list(&mut self, kind: &str, query: &str) -> Result<Vec<Value>, NeutronError> {
        let v = self.call("GET", &format!("{kind}?{query}"), None)?;
        Ok(v[kind].as_array().cloned().unwrap_or_default())
    }

    /// Creates one `kind` (plural) from `body` (the singular object's fields).
    pub(crate) fn create(&mut self, kind: &str, body: &Value) -> Result<Value, NeutronError> {
        let one = singular(kind);
        let v = self.call("POST", kind, Some(&json!({ one: body })))?;
        Ok(v[one].clone())
    }

    /// The `kind` named `name` (with `query` narrowing it) or a new one from `body`.
    pub(crate) fn get_or_create(
        &mut self,
        kind: &str,
        name: &str,
        query: &str,
        body: &Value,
    ) -> Result<Value, NeutronError> {
        let q = if query.is_empty() {
            format!("name={}", crate::openstack::keystone::encode(name))
        } else {
            format!("name={}&{query}", crate::openstack::keystone::encode(name))
        };
        if let Some(found) = self.find(kind, &q)? {
            return Ok(found);
        }
        self.create(kind, body)
    }

    pub(crate) fn update(
        &mut self,
        kind: &str,
        id: &str,
        body: &Value,
    ) -> Result<Value, NeutronError> {
        let one = singular(kind);
        let v = self.call("PUT", &format!("{kind}/{id}"), Some(&json!({ one: body })))?;
        Ok(v[one].clone())
    }

    /// Attaches `subnet` to `router` unless a router port already has it.
    pub(crate) fn add_router_interface(
        &mut self,
        router: &str,
        subnet: &str,
    ) -> Result<(), NeutronError> {
        let ports = self.list("ports", &format!("device_id={router}"))?;
        let attached = ports.iter().any(|p| {
            p["fixed_ips"]
                .as_array()
                .is_some_and(|ips| ips.iter().any(|ip| ip["subnet_id"] == subnet))
        });
        if !attached {
            self.call(
                "PUT",
                &format!("routers/{router}/add_router_interface"),
                Some(&json!({ "subnet_id": subnet })),
            )?;
        }
        Ok(())
    }
}

fn singular(kind: &str) -> &str {
    match kind {
        "subnetpools" => "subnetpool",
        other => other.strip_suffix('s').unwrap_or(other),
    }
}

/// A value's `id`.
pub(crate) fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}
