//! The Python ops (`inc/python`: setup_develop, pip_install ...) and the uWSGI config
//! ops plugins call (`lib/apache`: write_uwsgi_config, remove_uwsgi_config).

use std::path::{Path, PathBuf};

use super::arg;
use crate::context::Host;
use crate::services::frontproxy;
use crate::services::uwsgi::{WsgiApp, write_ini};
use crate::shell::{Call, Reply};
use crate::system::python::{self, PythonError, Req, checkout_name, is_checkout, venv_dir};

fn reply_of(result: Result<(), PythonError>, what: &str) -> Reply {
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => {
            let mut text = format!("{what}: {e}");
            for line in e.tail() {
                text.push_str("\n  ");
                text.push_str(line);
            }
            Reply::error(1, text)
        }
    }
}

fn install(host: &mut Host, reqs: &[Req], what: &str) -> Reply {
    let result = python::install(&mut host.machine(), reqs, false);
    host.checkpoint();
    reply_of(result, what)
}

/// `setup_develop DIR [EXTRAS]`: the checkout, editable, with its own pin dropped.
fn develop(host: &mut Host, dir: &str, extras: &str) -> Reply {
    let path = PathBuf::from(dir);
    if !is_checkout(&path) {
        return Reply::error(1, format!("setup_develop: {dir} is not a Python checkout"));
    }
    let req = Req::Editable {
        name: checkout_name(&path),
        dir: path,
        extras: extras.trim_matches(['[', ']']).to_owned(),
    };
    install(host, &[req], "setup_develop")
}

pub(super) fn setup_develop(host: &mut Host, call: &Call) -> Reply {
    develop(host, arg(call, 0), arg(call, 1))
}

pub(super) fn setup_dev_lib(host: &mut Host, call: &Call) -> Reply {
    let dir = host.settings.path("DEST").join(arg(call, 0));
    develop(host, &dir.display().to_string(), arg(call, 1))
}

/// `pip_install ARGS...`: names and specs from PyPI under the constraints; `-e DIR`
/// works too (its pin dropped).
pub(super) fn pip_install(host: &mut Host, call: &Call) -> Reply {
    let mut reqs = Vec::new();
    let mut it = call.args().iter().map(String::as_str);
    while let Some(a) = it.next() {
        match a {
            "-e" | "--editable" => {
                if let Some(dir) = it.next() {
                    let (dir, extras) = match dir.split_once('[') {
                        Some((d, e)) => (d, e.trim_end_matches(']')),
                        None => (dir, ""),
                    };
                    let path = PathBuf::from(dir);
                    reqs.push(Req::Editable {
                        name: checkout_name(&path),
                        dir: path,
                        extras: extras.to_owned(),
                    });
                }
            }
            // Flags DevStack's pip_install callers pass that uv has no use for.
            "-U" | "--upgrade" | "--force-reinstall" | "--no-deps" => {}
            a if a.starts_with('-') => {
                return Reply::error(2, format!("pip_install: option {a} is not supported"));
            }
            a => reqs.push(Req::Pypi(a.to_owned())),
        }
    }
    if reqs.is_empty() {
        return Reply::ok();
    }
    install(host, &reqs, "pip_install")
}

pub(super) fn venv(host: &mut Host, _call: &Call) -> Reply {
    Reply::stdout(format!("{}\n", venv_dir(&host.settings).display()))
}

/// DevStack's default NAME: `basename WSGI` (a module path is kept whole).
fn uwsgi_name(wsgi: &str, name: &str) -> String {
    if !name.is_empty() {
        return name.to_owned();
    }
    wsgi.rsplit('/').next().unwrap_or(wsgi).to_owned()
}

/// `write_uwsgi_config CONF WSGI URL [HTTP] [NAME]`. With HTTP (form A) the app
/// serves HTTP on that address; without (form B, what service plugins use) it
/// serves the uwsgi protocol on `/var/run/uwsgi/NAME.socket` and the front proxy
/// routes URL to it: DevStack's `ProxyPass` line in the site NAME, enabled, and
/// the proxy reloaded.
pub(super) fn uwsgi_write_config(host: &mut Host, call: &Call) -> Reply {
    let (conf, wsgi, url, http) = (arg(call, 0), arg(call, 1), arg(call, 2), arg(call, 3));
    if conf.is_empty() || wsgi.is_empty() {
        return Reply::error(2, "usage: write_uwsgi_config CONF WSGI URL [HTTP] [NAME]");
    }
    let name = uwsgi_name(wsgi, arg(call, 4));
    if http.is_empty() && url.is_empty() {
        // DevStack writes `ProxyPass ""`, which stops Apache: refused here instead.
        return Reply::error(
            2,
            format!("write_uwsgi_config {conf}: give a URL path (form B) or an HTTP address"),
        );
    }
    let bind = if http.is_empty() {
        frontproxy::socket_path(&name).display().to_string()
    } else {
        http.to_owned()
    };
    let app = WsgiApp {
        wsgi: wsgi.to_owned(),
        http: bind,
        venv: venv_dir(&host.settings),
        env: Vec::new(),
        processes: host.settings.number("API_WORKERS", 1),
        name: name.clone(),
    };
    let mut result = write_ini(host, "write_uwsgi_config", Path::new(conf), &app);
    if result.is_ok() && http.is_empty() {
        let line = frontproxy::proxy_pass_line(url, &name);
        result = frontproxy::add_site(host, "write_uwsgi_config", &name, &line, true);
    }
    host.checkpoint();
    match result {
        // DevStack echoes the line it appends.
        Ok(()) if http.is_empty() => Reply::stdout(frontproxy::proxy_pass_line(url, &name)),
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(1, e.to_string()),
    }
}

/// `remove_uwsgi_config CONF [NAME]`: the ini removed and the site NAME disabled
/// (its file stays, and the proxy is not reloaded, as in DevStack).
pub(super) fn uwsgi_remove_config(host: &mut Host, call: &Call) -> Reply {
    let conf = PathBuf::from(arg(call, 0));
    let _ = fs_err::remove_file(&conf);
    host.ledger.forget_file(&conf);
    let name = arg(call, 1);
    if !name.is_empty() {
        frontproxy::disable_site(host, &uwsgi_name(name, ""));
    }
    host.checkpoint();
    Reply::ok()
}

/// `restart_apache_server` / `start_apache_server`: reload ours when it runs, else
/// start it; `stop_apache_server`: stop it.
pub(super) fn frontproxy_op(host: &mut Host, call: &Call) -> Reply {
    let result = match arg(call, 0) {
        "stop" => frontproxy::stop_server(host),
        "restart" | "start" | "reload" => {
            if crate::services::daemon::running(host, frontproxy::NAME).is_some()
                || crate::services::daemon::use_systemctl()
            {
                frontproxy::reload(host, "restart_apache_server")
            } else if host.mode == crate::context::Mode::Standalone {
                // Outside a run with no stack up: nothing to restart (a script's
                // call must not start a server the ledger would then own).
                Ok(())
            } else {
                frontproxy::start_server(host)
            }
        }
        _ => return Reply::error(2, ""),
    };
    host.checkpoint();
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(1, e.to_string()),
    }
}
