//! What `stack.sh` does after the services answer: the default image and the
//! `IMAGE_URLS` images uploaded to glance (DevStack's `upload_image`), and
//! DevStack's flavors (`create_flavors`), both through the REST APIs.
//!
//! There is no internet here, so DevStack's cirros download is replaced by
//! `tools/build-test-image.sh`: a cirros-like guest built from Debian packages,
//! cached (by the script, keyed by its inputs) in `TEST_IMAGE_DIR`, which defaults
//! to `$FILES/images/test-image` so that clean keeps it, as DevStack keeps its
//! downloads in `$FILES`. It is uploaded as `DEFAULT_IMAGE_NAME`, public, with the
//! properties the builder wrote to `image.env`; an image of that name with the same
//! content (glance's sha512 `os_hash_value`) is left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::config::settings::Settings;
use crate::config::vars;
use crate::context::{Host, ServiceCtx};
use crate::services::{Descriptor, Layer, Service, ServiceError};

pub(crate) const NAME: &str = "images";
/// A cold build downloads ~31 MB of packages and takes ~17 s; generous for a slow
/// mirror.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// An upload of a large `IMAGE_URLS` file gets this long.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(1800);

/// The test image as the builder left it: its directory and `image.env`.
#[derive(Debug, Clone)]
pub(crate) struct TestImage {
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl TestImage {
    fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or("", String::as_str)
    }
    pub(crate) fn file(&self) -> PathBuf {
        self.dir.join(self.var("TEST_IMAGE_FILE"))
    }
    pub(crate) fn kernel(&self) -> PathBuf {
        self.dir.join(self.var("TEST_IMAGE_KERNEL_FILE"))
    }
    pub(crate) fn ramdisk(&self) -> PathBuf {
        self.dir.join(self.var("TEST_IMAGE_RAMDISK_FILE"))
    }
    pub(crate) fn cmdline(&self) -> &str {
        self.var("TEST_IMAGE_KERNEL_CMDLINE")
    }
    /// The glance properties (`key=value` words).
    pub(crate) fn properties(&self) -> Vec<(String, String)> {
        self.var("TEST_IMAGE_PROPERTIES")
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// Reads `image.env` (`KEY=value`, `KEY="value with spaces"`, `#` comments).
pub(crate) fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// Where the test image is cached.
pub(crate) fn cache_dir(s: &Settings) -> PathBuf {
    s.path("TEST_IMAGE_DIR")
}

/// Builds the test image unless the cache holds it for the same inputs (the script
/// decides, in ~3 s when up to date), and reads its `image.env`.
pub(crate) fn ensure_built(host: &Host) -> Result<TestImage, ServiceError> {
    let dir = cache_dir(&host.settings);
    let script = host.top_dir.join("tools/build-test-image.sh");
    host.cmd("bash")
        .arg(&script)
        .arg(&dir)
        .env(
            "TEST_IMAGE_NAME",
            vars::DEFAULT_IMAGE_NAME.read(&host.settings),
        )
        .timeout(BUILD_TIMEOUT)
        .label("build-test-image")
        .run()
        .map_err(|source| ServiceError::Process {
            service: NAME.into(),
            what: "building the test image (tools/build-test-image.sh)".into(),
            source,
        })?;
    read_image(&dir)
}

/// The cached test image, when the builder finished one there.
pub(crate) fn read_image(dir: &Path) -> Result<TestImage, ServiceError> {
    let path = dir.join("image.env");
    let text = fs_err::read_to_string(&path).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: path.clone(),
        source,
    })?;
    Ok(TestImage {
        dir: dir.to_path_buf(),
        env: parse_env(&text),
    })
}

/// One image to register: DevStack's `upload_image` outcome for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    pub name: String,
    pub file: PathBuf,
    pub disk_format: String,
    pub container_format: String,
    pub properties: Vec<(String, String)>,
}

/// What `upload_image` makes of a `file://` URL's file name (DevStack's generic
/// formats; `.img` asks `qemu-img info`, given as `detect`). None: a format
/// DevStack does not know either.
pub(crate) fn upload_for(
    path: &Path,
    detect: impl FnOnce(&Path) -> Option<String>,
) -> Option<Upload> {
    let fname = path.file_name()?.to_string_lossy().into_owned();
    let (name, disk) = if let Some(n) = fname.strip_suffix(".qcow2") {
        (n.to_owned(), "qcow2".to_owned())
    } else if let Some(n) = fname.strip_suffix(".raw") {
        (n.to_owned(), "raw".to_owned())
    } else if let Some(n) = fname.strip_suffix(".iso") {
        (n.to_owned(), "iso".to_owned())
    } else if let Some(n) = fname.strip_suffix(".img") {
        let format = detect(path)
            .filter(|f| ["qcow2", "raw", "vdi", "vmdk", "vpc"].contains(&f.as_str()))
            .unwrap_or_else(|| "raw".into());
        (n.to_owned(), format)
    } else {
        return None;
    };
    Some(Upload {
        name,
        file: path.to_path_buf(),
        disk_format: disk,
        container_format: "bare".into(),
        properties: Vec::new(),
    })
}

/// `qemu-img info`'s "file format", for `.img` files.
fn qemu_img_format(host: &Host, path: &Path) -> Option<String> {
    let out = host
        .cmd("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .capture()
        .timeout(Duration::from_secs(30))
        .run()
        .ok()?;
    serde_json::from_str::<Value>(&out.stdout)
        .ok()?
        .get("format")?
        .as_str()
        .map(str::to_owned)
}

/// The sha512 of a file, as glance's `os_hash_value`.
fn sha512_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = sha2::Sha512::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(crate::state::hex(&hasher.finalize()))
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent("devstack-rs")
        .build()
        .into()
}

fn rest_err(what: &str, detail: impl std::fmt::Display) -> ServiceError {
    ServiceError::failed(NAME, format!("{what}: {detail}"))
}

/// One JSON request with the token; the body of a 2xx answer.
fn request(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Result<Value, ServiceError> {
    let agent = agent(HTTP_TIMEOUT);
    let what = format!("{method} {url}");
    let answer = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url).header("X-Auth-Token", token);
            for (k, v) in extra {
                r = r.header(*k, *v);
            }
            r.call()
        }
        ("DELETE", _) => agent.delete(url).header("X-Auth-Token", token).call(),
        (_, body) => {
            let mut r = agent
                .post(url)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/json");
            for (k, v) in extra {
                r = r.header(*k, *v);
            }
            r.send(body.map_or_else(String::new, Value::to_string))
        }
    };
    let mut answer = answer.map_err(|e| rest_err(&what, e))?;
    let status = answer.status().as_u16();
    let text = answer.body_mut().read_to_string().unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(rest_err(
            &what,
            format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
        ));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The admin token and the glance and nova endpoints of this cloud.
struct Api {
    token: String,
    glance: String,
    nova: String,
}

fn api(host: &mut Host) -> Result<Api, ServiceError> {
    let s = host.settings.clone();
    let token = host
        .keystone()
        .and_then(|c| c.token().map(str::to_owned))
        .map_err(|e| ServiceError::caused(NAME, "a keystone token", e))?;
    Ok(Api {
        token,
        glance: crate::services::glance::CATALOG
            .url(&s)
            .trim_end_matches('/')
            .to_owned(),
        nova: crate::services::nova::CATALOG
            .url(&s)
            .trim_end_matches('/')
            .to_owned(),
    })
}

/// Registers `up` in glance, public, unless an image of that name with the same
/// content is there; older images of that name (other content) are deleted, so the
/// name stays unique for `--image NAME`.
fn upload(host: &Host, api: &Api, up: &Upload) -> Result<(), ServiceError> {
    let hash = sha512_file(&up.file).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: up.file.clone(),
        source,
    })?;
    let list = request(
        "GET",
        &format!(
            "{}/v2/images?name={}",
            api.glance,
            crate::openstack::keystone::encode(&up.name)
        ),
        &api.token,
        None,
        &[],
    )?;
    let existing = list["images"].as_array().cloned().unwrap_or_default();
    let same = existing
        .iter()
        .any(|i| i["status"] == "active" && i["os_hash_value"].as_str() == Some(hash.as_str()));
    if same {
        host.note(&format!(
            "images: {} is already in glance with the same content",
            up.name
        ));
        return Ok(());
    }
    for old in &existing {
        if let Some(id) = old["id"].as_str() {
            host.note(&format!("images: replacing {} ({id})", up.name));
            request(
                "DELETE",
                &format!("{}/v2/images/{id}", api.glance),
                &api.token,
                None,
                &[],
            )?;
        }
    }
    let mut body = json!({
        "name": up.name,
        "disk_format": up.disk_format,
        "container_format": up.container_format,
        "visibility": "public",
    });
    for (k, v) in &up.properties {
        body[k] = Value::String(v.clone());
    }
    let created = request(
        "POST",
        &format!("{}/v2/images", api.glance),
        &api.token,
        Some(&body),
        &[],
    )?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| rest_err("POST /v2/images", "no id in the answer"))?
        .to_owned();
    let file = fs_err::File::open(&up.file).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: up.file.clone(),
        source,
    })?;
    let url = format!("{}/v2/images/{id}/file", api.glance);
    let answer = agent(UPLOAD_TIMEOUT)
        .put(&url)
        .header("X-Auth-Token", &api.token)
        .header("Content-Type", "application/octet-stream")
        .send(file.file())
        .map_err(|e| rest_err(&format!("PUT {url}"), e))?;
    let status = answer.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(rest_err(&format!("PUT {url}"), format!("HTTP {status}")));
    }
    host.note(&format!(
        "images: uploaded {} ({id}, {}/{})",
        up.name, up.disk_format, up.container_format
    ));
    Ok(())
}

/// The default image (built) and the `IMAGE_URLS` entries, as DevStack's stack.sh.
fn upload_images(host: &mut Host, api: &Api) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let libvirt = s.str("VIRT_DRIVER") == "libvirt";
    if s.flag("DOWNLOAD_DEFAULT_IMAGES", true) {
        let image = ensure_built(host)?;
        let up = Upload {
            name: vars::DEFAULT_IMAGE_NAME.read(&s).to_owned(),
            file: image.file(),
            disk_format: image.var("TEST_IMAGE_DISK_FORMAT").to_owned(),
            container_format: image.var("TEST_IMAGE_CONTAINER_FORMAT").to_owned(),
            properties: image.properties(),
        };
        upload(host, api, &up)?;
        host.progress.summary(&format!(
            "Default image {} (built offline from Debian packages) in glance",
            up.name
        ));
    }
    for url in s
        .str("IMAGE_URLS")
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let Some(path) = url.strip_prefix("file://") else {
            host.warn(&format!(
                "IMAGE_URLS: {url} is not a file:// URL and this machine has no internet; skipped"
            ));
            continue;
        };
        let path = Path::new(path);
        if !fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0) {
            // DevStack: "Not found", and the run goes on.
            host.warn(&format!("IMAGE_URLS: Not found: {url}"));
            continue;
        }
        let Some(mut up) = upload_for(path, |p| qemu_img_format(host, p)) else {
            return Err(ServiceError::failed(
                NAME,
                format!("IMAGE_URLS: Do not know what to do with {}", path.display()),
            ));
        };
        if libvirt {
            up.properties.push(("hw_rng_model".into(), "virtio".into()));
        }
        upload(host, api, &up)?;
    }
    Ok(())
}

/// One DevStack flavor: name, id, RAM (MB), disk (GB), vCPUs.
pub(crate) const FLAVORS: &[(&str, &str, u32, u32, u32)] = &[
    ("cirros256", "c1", 256, 1, 1),
    ("ds512M", "d1", 512, 5, 1),
    ("ds1G", "d2", 1024, 10, 1),
    ("ds2G", "d3", 2048, 10, 2),
    ("ds4G", "d4", 4096, 20, 4),
    ("m1.tiny", "1", 512, 1, 1),
    ("m1.small", "2", 2048, 20, 1),
    ("m1.medium", "3", 4096, 40, 2),
    ("m1.large", "4", 8192, 80, 4),
    ("m1.xlarge", "5", 16384, 160, 8),
];

/// The flavor request body nova takes (public, as DevStack's).
pub(crate) fn flavor_body(name: &str, id: &str, ram: u32, disk: u32, vcpus: u32) -> Value {
    json!({"flavor": {
        "name": name,
        "id": id,
        "ram": ram,
        "disk": disk,
        "vcpus": vcpus,
        "os-flavor-access:is_public": true,
    }})
}

/// DevStack's flavors that are missing, each with `hw_rng:allowed=True`.
fn create_flavors(host: &Host, api: &Api) -> Result<usize, ServiceError> {
    let list = request(
        "GET",
        &format!("{}/flavors?is_public=None", api.nova),
        &api.token,
        None,
        &[],
    )?;
    let have: Vec<String> = list["flavors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut made = 0;
    for &(name, id, ram, disk, vcpus) in FLAVORS {
        if have.iter().any(|h| h == name) {
            continue;
        }
        request(
            "POST",
            &format!("{}/flavors", api.nova),
            &api.token,
            Some(&flavor_body(name, id, ram, disk, vcpus)),
            &[],
        )?;
        request(
            "POST",
            &format!("{}/flavors/{id}/os-extra_specs", api.nova),
            &api.token,
            Some(&json!({"extra_specs": {"hw_rng:allowed": "True"}})),
            &[],
        )?;
        made += 1;
    }
    host.note(&format!("images: {made} flavor(s) created"));
    Ok(made)
}

/// After glance and nova: images (where the database and glance run) and flavors
/// (where nova's API runs).
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &["g-api", "n-api"],
    after: &["glance", "nova"],
    defaults: &[
        ("DOWNLOAD_DEFAULT_IMAGES", "True"),
        ("TEST_IMAGE_DIR", "$FILES/images/test-image"),
    ],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

pub(crate) struct Images;

impl Service for Images {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let images =
            s.is_enabled(&["g-api"]) && s.is_enabled(&[crate::services::mysql::NAME, "postgresql"]);
        let flavors = s.is_enabled(&["n-api"]);
        if !images && !flavors {
            return Ok(());
        }
        let api = api(cx.host)?;
        if images {
            upload_images(cx.host, &api)?;
        }
        if flavors {
            create_flavors(cx.host, &api)?;
        }
        Ok(())
    }
    fn stop(&self, _cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_env_is_read_with_quotes_and_comments() {
        let env = parse_env(
            "# comment\nTEST_IMAGE_KEY=abc\nTEST_IMAGE_FILE=test-image.qcow2\n\
             TEST_IMAGE_PROPERTIES=\"hw_rng_model=virtio os_type=linux\"\n",
        );
        let img = TestImage {
            dir: "/c".into(),
            env,
        };
        assert_eq!(img.file(), Path::new("/c/test-image.qcow2"));
        assert_eq!(
            img.properties(),
            [
                ("hw_rng_model".to_owned(), "virtio".to_owned()),
                ("os_type".to_owned(), "linux".to_owned())
            ]
        );
    }

    #[test]
    fn file_urls_get_devstacks_names_and_formats() {
        let up = upload_for(Path::new("/x/amphora.qcow2"), |_| None).unwrap();
        assert_eq!(
            (up.name.as_str(), up.disk_format.as_str()),
            ("amphora", "qcow2")
        );
        let up = upload_for(Path::new("/x/cirros.img"), |_| Some("qcow2".into())).unwrap();
        assert_eq!(
            (up.name.as_str(), up.disk_format.as_str()),
            ("cirros", "qcow2")
        );
        // An unknown qemu-img answer is raw, as DevStack's.
        let up = upload_for(Path::new("/x/disk.img"), |_| Some("luks".into())).unwrap();
        assert_eq!(up.disk_format, "raw");
        assert_eq!(up.container_format, "bare");
        assert!(upload_for(Path::new("/x/thing.zip"), |_| None).is_none());
    }

    #[test]
    fn flavors_are_devstacks() {
        let tiny = FLAVORS.iter().find(|f| f.0 == "m1.tiny").unwrap();
        assert_eq!(*tiny, ("m1.tiny", "1", 512, 1, 1));
        let c1 = FLAVORS.iter().find(|f| f.0 == "cirros256").unwrap();
        assert_eq!(*c1, ("cirros256", "c1", 256, 1, 1));
        assert_eq!(FLAVORS.len(), 10);
        let body = flavor_body("ds1G", "d2", 1024, 10, 1);
        assert_eq!(body["flavor"]["id"], "d2");
        assert_eq!(body["flavor"]["os-flavor-access:is_public"], true);
    }
}
