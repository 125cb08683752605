// SPDX-License-Identifier: GPL-2.0

//! Flame graphs of resident memory by stack (`mmscope trace --faults --flame`), drawn by
//! `inferno` from folded stacks.

use std::io::{self, Write};

/// Writes `folded` (`root;a;b KIB` lines) to `BASE.folded` and its flame graph, titled
/// `title`, to `BASE.svg`. With no stack at all, the graph says so.
pub fn write(base: &str, title: &str, folded: &[String]) -> io::Result<()> {
    let mut f = std::fs::File::create(format!("{base}.folded"))?;
    for line in folded {
        writeln!(f, "{line}")?;
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "KiB".to_string();
    opts.name_type = "Function:".to_string();
    opts.no_javascript = false;
    let svg = std::fs::File::create(format!("{base}.svg"))?;
    let lines: Vec<&str> = folded.iter().map(String::as_str).collect();
    let lines = if lines.is_empty() {
        vec!["no resident anonymous memory 0"]
    } else {
        lines
    };
    inferno::flamegraph::from_lines(&mut opts, lines, io::BufWriter::new(svg))
        .map_err(|e| io::Error::other(e.to_string()))
}
