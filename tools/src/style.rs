// SPDX-License-Identifier: GPL-2.0

//! Terminal colours: by kind of memory, only when asked for or when stdout is a terminal and
//! `NO_COLOR` is not set.

use crate::abi::kind;
use std::io::IsTerminal;

/// When to colour the output (`--color`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

/// Whether text is coloured, and how.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    enabled: bool,
}

impl Style {
    /// Decides for stdout.
    pub fn for_stdout(choice: ColorChoice) -> Self {
        Self::new(choice, std::io::stdout().is_terminal())
    }

    /// Decides for a stream that is a terminal or not: `auto` colours a terminal unless
    /// `NO_COLOR` is set and not empty.
    pub fn new(choice: ColorChoice, terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && terminal,
        };
        Self { enabled }
    }

    /// Plain text.
    pub fn plain() -> Self {
        Self { enabled: false }
    }

    /// `text` in the colour of the VMA kind `k`.
    pub fn kind(&self, k: u32, text: &str) -> String {
        self.paint(kind_code(k), text)
    }

    /// Appends `text` to `out`, painted as `paint` says: no allocation, for what a trace
    /// prints at every call.
    pub fn push(&self, out: &mut String, paint: Paint, text: &str) {
        self.open(out, paint);
        out.push_str(text);
        self.close(out);
    }

    /// Starts text painted as `paint` says, in `out`; [`Style::close`] ends it.
    pub fn open(&self, out: &mut String, paint: Paint) {
        if self.enabled {
            out.push_str("\x1b[");
            out.push_str(match paint {
                Paint::Bold => "1",
                Paint::Dim => "2",
                Paint::Change(true) => "32",
                Paint::Change(false) => "31",
                Paint::Kind(k) => kind_code(k),
            });
            out.push('m');
        }
    }

    /// Ends what [`Style::open`] started.
    pub fn close(&self, out: &mut String) {
        if self.enabled {
            out.push_str("\x1b[0m");
        }
    }

    /// `text` dimmed, for gaps and markers.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// `text` in bold, for headings.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `text` green or red for growth and shrinkage.
    pub fn change(&self, grew: bool, text: &str) -> String {
        self.paint(if grew { "32" } else { "31" }, text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// How [`Style::push`] paints: as [`Style::bold`], [`Style::dim`], [`Style::change`] and
/// [`Style::kind`] do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    /// Bold, for headings.
    Bold,
    /// Dimmed.
    Dim,
    /// Green for growth (`true`), red for shrinkage.
    Change(bool),
    /// The colour of a VMA kind.
    Kind(u32),
}

/// The colour of the VMA kind `k`.
fn kind_code(k: u32) -> &'static str {
    match k {
        kind::HEAP => "32",      // green
        kind::STACK => "35",     // magenta
        kind::ANON => "33",      // yellow
        kind::FILE => "34",      // blue
        kind::SHMEM => "36",     // cyan
        kind::MMSCOPE => "1;31", // bold red
        _ => "2",                // dim: vdso, vvar, special
    }
}
