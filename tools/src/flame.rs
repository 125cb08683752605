// SPDX-License-Identifier: GPL-2.0

//! Flame graphs of resident memory by stack (`mmscope trace --faults --flame`), drawn by
//! `inferno` from folded stacks.

use std::io::{self, Write};

/// Writes `folded` (`root;a;b KIB` lines) to `BASE.folded` and its flame graph, titled
/// `title`, to `BASE.svg`. With no stack at all, the page says so.
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
    let mut svg = io::BufWriter::new(std::fs::File::create(format!("{base}.svg"))?);
    if folded.is_empty() {
        // Nothing to draw: a page that says so.
        let title = title.replace('&', "&amp;").replace('<', "&lt;");
        writeln!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"60\">\
             <title>all (0 KiB, 100%)</title><text x=\"10\" y=\"35\" \
             font-family=\"Verdana\" font-size=\"17\">{title}: none</text></svg>"
        )?;
        return svg.flush();
    }
    let lines: Vec<&str> = folded.iter().map(String::as_str).collect();
    inferno::flamegraph::from_lines(&mut opts, lines, svg)
        .map_err(|e| io::Error::other(e.to_string()))
}
