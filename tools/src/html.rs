// SPDX-License-Identifier: GPL-2.0

//! `mmscope trace --html` and `mmscope report`: a trace as one page to explore, the address
//! space over the steps with each VMA a band, the counters under it, each step in detail, and
//! the flame graph of resident memory when the trace recorded page faults.
//!
//! The page is self-contained: its style and script (`html/page.css`, `html/page.js`, drawn by
//! hand as SVG: no library, no network) and the trace itself, the JSON lines of
//! `mmscope trace --json` exactly as that option prints them, compressed with gzip and
//! base64-encoded (the browser's `DecompressionStream` unpacks them). So a page made during a
//! trace and one made later from its saved JSON are the same, byte for byte.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

const TEMPLATE: &str = include_str!("html/page.html");
const STYLE: &str = include_str!("html/page.css");
const SCRIPT: &str = include_str!("html/page.js");

/// Why some text is not a trace `mmscope trace --json` wrote.
#[derive(Debug, PartialEq, Eq)]
pub enum NotATrace {
    /// No line at all.
    Empty,
    /// Line `line` (from 1) is not a JSON object with an `event` field.
    Line { line: usize, why: String },
    /// No `exec` or `attach` event: there is no address space to start from.
    NoStart,
}

impl std::fmt::Display for NotATrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "it is empty"),
            Self::Line { line, why } => write!(f, "line {line} is not a trace event: {why}"),
            Self::NoStart => write!(f, "it has no exec or attach event"),
        }
    }
}

/// The events of a trace saved with `mmscope trace --json`, one JSON object per line (blank
/// lines are skipped), checked.
pub fn read_trace(text: &str) -> Result<Vec<&str>, NotATrace> {
    let mut lines = Vec::new();
    let mut started = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| NotATrace::Line {
            line: i + 1,
            why: e.to_string(),
        })?;
        match value.get("event").and_then(|e| e.as_str()) {
            Some("exec" | "attach") => started = true,
            Some(_) => {}
            None => {
                return Err(NotATrace::Line {
                    line: i + 1,
                    why: "it has no \"event\" field".to_string(),
                })
            }
        }
        lines.push(line);
    }
    match (lines.is_empty(), started) {
        (true, _) => Err(NotATrace::Empty),
        (false, false) => Err(NotATrace::NoStart),
        (false, true) => Ok(lines),
    }
}

/// `text` with `&`, `<`, `>` and `"` escaped for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 (RFC 4648, with padding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A page being made from a trace's JSON lines, one at a time: each is compressed as it
/// comes, so that a long trace is not held in memory.
pub struct Page {
    gz: GzEncoder<Vec<u8>>,
    /// The command the summary names.
    command: Vec<String>,
    /// The process an `attach` event names.
    attached: Option<i64>,
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

impl Page {
    pub fn new() -> Self {
        Self {
            gz: GzEncoder::new(Vec::new(), Compression::best()),
            command: Vec::new(),
            attached: None,
        }
    }

    /// Takes the next JSON line (without its newline).
    pub fn push(&mut self, line: &str) {
        // Writing to a Vec cannot fail.
        let _ = self.gz.write_all(line.as_bytes());
        let _ = self.gz.write_all(b"\n");
        // Only two events name what the title says; the others are not parsed.
        if !(line.contains("\"summary\"") || line.contains("\"attach\"")) {
            return;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        match v.get("event").and_then(|e| e.as_str()) {
            Some("summary") => {
                self.command = (v.get("command").and_then(|c| c.as_array()).into_iter())
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
            }
            Some("attach") => self.attached = v.get("pid").and_then(|p| p.as_i64()),
            _ => {}
        }
    }

    /// The page's title: the command the trace's summary names, else the process it attached
    /// to.
    fn title(&self) -> String {
        match (self.command.is_empty(), self.attached) {
            (false, _) => format!("mmscope trace: {}", self.command.join(" ")),
            (true, Some(pid)) => format!("mmscope trace: pid {pid}"),
            (true, None) => "mmscope trace".to_string(),
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        let title = escape(&self.title());
        let data = base64(&self.gz.finish().unwrap_or_default());
        // In one pass over the template, so that nothing inserted is read as a placeholder.
        let mut out =
            String::with_capacity(TEMPLATE.len() + STYLE.len() + SCRIPT.len() + data.len());
        let mut rest = TEMPLATE;
        while let Some(at) = rest.find('@') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let name = rest.find('@').map(|end| &rest[..end]);
            let value = match name {
                Some("TITLE") => Some(title.as_str()),
                Some("VERSION") => Some(env!("CARGO_PKG_VERSION")),
                Some("STYLE") => Some(STYLE),
                Some("SCRIPT") => Some(SCRIPT),
                Some("DATA") => Some(data.as_str()),
                _ => None,
            };
            match (value, name) {
                (Some(value), Some(name)) => {
                    out.push_str(value);
                    rest = &rest[name.len() + 1..];
                }
                _ => out.push('@'),
            }
        }
        out.push_str(rest);
        out
    }
}

/// The page of a trace given as its JSON lines (each without its newline).
pub fn page(lines: &[impl AsRef<str>]) -> String {
    let mut page = Page::new();
    for line in lines {
        page.push(line.as_ref());
    }
    page.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn base64_matches_rfc4648() {
        // RFC 4648, section 10.
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn page_holds_the_lines_and_names_the_command() {
        let lines = [
            r#"{"event":"exec","pid":7,"vmas":[]}"#,
            r#"{"event":"summary","command":["/bin/<x>","a&b"]}"#,
        ];
        let html = page(&lines);
        assert!(html.contains("<title>mmscope trace: /bin/&lt;x&gt; a&amp;b</title>"));
        assert!(
            !html.contains("@DATA@") && !html.contains("@SCRIPT@") && !html.contains("@TITLE@")
        );
        // The data, unpacked as the page unpacks it, is the lines.
        let start = html.find("data-encoding=\"gzip-base64\">").map(|i| i + 28);
        let data = &html[start.unwrap_or(0)..];
        let data = &data[..data.find('<').unwrap_or(0)];
        let mut bytes = Vec::new();
        let mut bits = 0u32;
        let mut n = 0;
        for c in data.bytes().filter(|&c| c != b'=') {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                _ => 63,
            };
            bits = (bits << 6) | u32::from(v);
            n += 6;
            if n >= 8 {
                n -= 8;
                bytes.push((bits >> n) as u8);
            }
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, lines.join("\n") + "\n");
    }

    #[test]
    fn read_trace_says_which_line_is_wrong() {
        assert_eq!(read_trace("\n"), Err(NotATrace::Empty));
        assert!(matches!(
            read_trace("{\"event\":\"exec\"}\nnot json\n"),
            Err(NotATrace::Line { line: 2, .. })
        ));
        assert!(matches!(
            read_trace("{\"step\":1}"),
            Err(NotATrace::Line { line: 1, .. })
        ));
        assert_eq!(
            read_trace("{\"event\":\"summary\"}"),
            Err(NotATrace::NoStart)
        );
        assert_eq!(
            read_trace("{\"event\":\"exec\"}\n\n{\"event\":\"summary\"}\n"),
            Ok(vec!["{\"event\":\"exec\"}", "{\"event\":\"summary\"}"])
        );
    }
}
