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
        let code = match k {
            kind::HEAP => "32",      // green
            kind::STACK => "35",     // magenta
            kind::ANON => "33",      // yellow
            kind::FILE => "34",      // blue
            kind::SHMEM => "36",     // cyan
            kind::MMSCOPE => "1;31", // bold red
            _ => "2",                // dim: vdso, vvar, special
        };
        self.paint(code, text)
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
