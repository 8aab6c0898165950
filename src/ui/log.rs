//! The run log: `$LOGDIR/<name>.log.<timestamp>` with a stable symlink `<name>.log`,
//! every line timestamped. Lines that arrive before the log directory is known (the
//! settings come from the shell) are kept and written when the file opens.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::sync::{Arc, Mutex};

use crate::system::process::{LineSink, Stream};
use crate::ui::Progress;

struct Inner {
    file: Option<BufWriter<File>>,
    pending: Vec<String>,
    path: Option<PathBuf>,
}

/// The log sink every child process and the plugin shell write to.
pub struct RunLog {
    inner: Mutex<Inner>,
    progress: Arc<dyn Progress>,
}

impl RunLog {
    pub fn new(progress: Arc<dyn Progress>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                file: None,
                pending: Vec::new(),
                path: None,
            }),
            progress,
        }
    }

    /// Opens `$dir/<name>.log.<timestamp>` and points `$dir/<name>.log` at it.
    pub fn open(&self, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
        fs_err::create_dir_all(dir)?;
        let stamp = chrono::Local::now().format("%Y-%m-%d-%H%M%S");
        let file_name = format!("{name}.log.{stamp}");
        let path = dir.join(&file_name);
        // 0640 at most: a log is for the operator, not for every local user.
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)?
            .into_parts()
            .0;
        let link = dir.join(format!("{name}.log"));
        let _ = fs_err::remove_file(&link);
        std::os::unix::fs::symlink(&file_name, &link)?;
        let mut inner = self.inner.lock().expect("log lock");
        let mut writer = BufWriter::new(file);
        // Lines kept from before the secrets were known are redacted now.
        for line in inner.pending.drain(..) {
            let _ = writeln!(writer, "{}", crate::system::redact::redact_global(&line));
        }
        let _ = writer.flush();
        inner.file = Some(writer);
        inner.path = Some(link.clone());
        Ok(link)
    }

    /// The stable path of the log, once open.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner.lock().expect("log lock").path.clone()
    }

    /// Writes a line of our own to the log (not to the terminal).
    pub fn note(&self, text: &str) {
        self.write(&format!("devstack | {text}"));
    }

    fn write(&self, text: &str) {
        let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f");
        let line = format!("{stamp} | {}", crate::system::redact::redact_global(text));
        let mut inner = self.inner.lock().expect("log lock");
        match inner.file.as_mut() {
            Some(file) => {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
            }
            None => inner.pending.push(line),
        }
    }
}

impl LineSink for RunLog {
    fn line(&self, source: &str, _stream: Stream, line: &str) {
        self.write(&format!("{source} | {line}"));
        self.progress.output_line(source, line);
    }
    fn note(&self, text: &str) {
        RunLog::note(self, text);
    }
}
