//! The one place errors are printed: `error:`, then each cause as `Caused by:`, then
//! the details a failure carries (where, the command, the last lines) and a `hint:`.

use std::fmt;

/// A failure with the details a person needs to act on it. Pipeline errors that
/// name a hook, a step or a service are turned into this before they reach `main`.
#[derive(Debug)]
pub(crate) struct Report {
    pub headline: String,
    /// `key: value` lines (step, plugin, phase, file:line, command, log).
    pub details: Vec<(String, String)>,
    /// The last lines of output, already redacted.
    pub tail: Vec<String>,
    pub hint: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline)
    }
}

impl std::error::Error for Report {}

/// Prints an error once, with its causes, details and hint, to stderr.
pub fn print_error(err: &anyhow::Error) {
    eprint!("{}", render_error(err));
}

/// A tail line longer than this is cut: one 1 MB line must not flood the report.
const MAX_TAIL_LINE: usize = 400;

/// `line`, cut at a character boundary near `MAX_TAIL_LINE` with the count of
/// what was left out.
fn capped(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_TAIL_LINE {
        return line.into();
    }
    let mut end = MAX_TAIL_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [... {} more bytes]", &line[..end], line.len() - end).into()
}

pub(crate) fn render_error(err: &anyhow::Error) -> String {
    crate::system::redact::redact_global(&render_unredacted(err))
}

fn render_unredacted(err: &anyhow::Error) -> String {
    use std::fmt::Write as _;
    let mut out = format!("error: {err}\n");
    // A Report attached with `.context(..)` is found by downcasting the error itself;
    // one that is a cause further down, through the chain.
    let report = err
        .downcast_ref::<Report>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<Report>()));
    for cause in err.chain().skip(1) {
        if cause.downcast_ref::<Report>().is_some() {
            continue;
        }
        let _ = writeln!(out, "Caused by: {cause}");
    }
    if let Some(report) = report {
        let width = report
            .details
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (key, value) in &report.details {
            let _ = writeln!(out, "  {key:>width$}: {value}");
        }
        if !report.tail.is_empty() {
            let _ = writeln!(out, "  last {} lines of output:", report.tail.len());
            for line in &report.tail {
                let _ = writeln!(out, "    | {}", capped(line));
            }
        }
        if let Some(hint) = &report.hint {
            let _ = writeln!(out, "hint: {hint}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_tail_line_is_cut_with_the_count_left_out() {
        let long = "é".repeat(1000);
        let report = Report {
            headline: "h".into(),
            details: Vec::new(),
            tail: vec![long],
            hint: None,
        };
        let text = render_error(&anyhow::Error::new(report));
        assert!(text.len() < 1000, "{}", text.len());
        assert!(text.contains("more bytes]"), "{text}");
    }
}
