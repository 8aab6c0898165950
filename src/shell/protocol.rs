//! The framed messages between devstack-rs and the plugin shell (see `inc/rpc`):
//! NUL-separated fields, `KIND\0N\0f1\0...fN\0`. Bash strings cannot hold NUL, so
//! fields never need escaping.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

/// One message in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub kind: String,
    pub fields: Vec<String>,
}

impl Frame {
    pub(crate) fn new<I, S>(kind: &str, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            kind: kind.to_owned(),
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let count = self.fields.len().to_string();
        for part in std::iter::once(self.kind.as_str())
            .chain(std::iter::once(count.as_str()))
            .chain(self.fields.iter().map(String::as_str))
        {
            // A NUL inside a field would corrupt the stream; bash could not hold it anyway.
            out.extend(part.bytes().filter(|b| *b != 0));
            out.push(0);
        }
        out
    }

    pub(crate) fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())?;
        w.flush()
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream.
    pub(crate) fn read_from(r: &mut impl BufRead) -> io::Result<Option<Self>> {
        let Some(kind) = read_field(r)? else {
            return Ok(None);
        };
        let count: usize = read_field(r)?
            .ok_or_else(|| truncated("count"))?
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad field count"))?;
        // The count is the sender's word: a malformed frame must not make us
        // reserve memory for it.
        let mut fields = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            fields.push(read_field(r)?.ok_or_else(|| truncated("field"))?);
        }
        Ok(Some(Self { kind, fields }))
    }
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("frame truncated before its {what}"),
    )
}

fn read_field(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.read_until(0, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&0) {
        buf.pop();
    } else {
        return Err(truncated("terminator"));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// A call from the shell library into devstack-rs: `_ds_call [-v VAR]... OP ARG...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Call {
    /// The shell variables the caller sent along, as they are at the call.
    pub vars: BTreeMap<String, String>,
    /// The operation and its arguments.
    pub argv: Vec<String>,
}

impl Call {
    /// Parses the fields `NVARS K V ... OP ARG...` (the `call` event, or `__call`'s argv).
    pub(crate) fn parse(fields: &[String]) -> Result<Self, String> {
        let (n, rest) = fields.split_first().ok_or("empty call")?;
        let n: usize = n.parse().map_err(|_| format!("bad variable count '{n}'"))?;
        if rest.len() < 2 * n + 1 {
            return Err("call without an operation".into());
        }
        let vars = rest[..2 * n]
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        Ok(Self {
            vars,
            argv: rest[2 * n..].to_vec(),
        })
    }

    pub(crate) fn op(&self) -> &str {
        &self.argv[0]
    }

    pub(crate) fn args(&self) -> &[String] {
        &self.argv[1..]
    }

    /// A variable the caller sent, else the empty string.
    pub(crate) fn var(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", String::as_str)
    }
}

/// The answer to a [`Call`]: an exit status, text for the caller's stdout and stderr,
/// and shell variables to assign in the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub assign: Vec<(String, String)>,
}

impl Reply {
    pub(crate) fn ok() -> Self {
        Self::default()
    }

    pub(crate) fn status(status: i32) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    pub(crate) fn stdout(text: impl Into<String>) -> Self {
        Self {
            stdout: text.into(),
            ..Self::default()
        }
    }

    /// A failure with a message on the caller's stderr (a newline is added).
    pub(crate) fn error(status: i32, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            stderr: format!("{message}\n"),
            ..Self::default()
        }
    }

    #[must_use]
    pub(crate) fn with_assign(mut self, name: &str, value: impl Into<String>) -> Self {
        self.assign.push((name.to_owned(), value.into()));
        self
    }

    pub(crate) fn to_frame(&self) -> Frame {
        let mut fields = vec![
            self.status.to_string(),
            self.stdout.clone(),
            self.stderr.clone(),
        ];
        for (k, v) in &self.assign {
            fields.push(k.clone());
            fields.push(v.clone());
        }
        Frame {
            kind: "reply".into(),
            fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_empty_and_multiline_fields() {
        let frame = Frame::new("call", ["1", "A", "x\ny", "", "op"]);
        let bytes = frame.encode();
        let mut r = io::Cursor::new(bytes);
        assert_eq!(Frame::read_from(&mut r).unwrap(), Some(frame));
        assert_eq!(Frame::read_from(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut r = io::Cursor::new(b"done\x002\x000\x00".to_vec());
        assert!(Frame::read_from(&mut r).is_err());
    }

    #[test]
    fn call_parses_vars_then_argv() {
        let fields: Vec<String> = ["2", "A", "1", "B", "", "ini", "set"]
            .map(String::from)
            .to_vec();
        let call = Call::parse(&fields).unwrap();
        assert_eq!(call.var("A"), "1");
        assert_eq!(call.var("B"), "");
        assert_eq!(call.op(), "ini");
        assert_eq!(call.args(), ["set"]);
        assert!(Call::parse(&["1".into(), "A".into()]).is_err());
    }
}
