// SPDX-License-Identifier: GPL-2.0

//! `mmscope trace --svg`: heap size, anonymous mappings and resident anonymous memory over the
//! steps of a trace, the picture of "malloc reserves, the first touch allocates".

use crate::report::Point;
use plotters::prelude::*;
use std::path::Path;

/// The series the plot draws, by the names its legend gives them.
pub const SERIES: [&str; 3] = [
    "heap: brk - start_brk",
    "anonymous mmap (mapped with access)",
    "resident anonymous memory (RssAnon)",
];

/// The points of one series as steps: each value holds until the next snapshot, which is
/// where it is known to have changed.
fn staircase(points: &[Point], y: impl Fn(&Point) -> f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len() * 2);
    for p in points {
        if let Some(&(_, prev)) = out.last() {
            out.push((p.at, prev));
        }
        out.push((p.at, y(p)));
    }
    out
}

/// Writes the plot of `points` to `path` as SVG, titled `title`.
pub fn write_svg(path: &Path, title: &str, points: &[Point]) -> Result<(), String> {
    const MIB: f64 = (1u64 << 20) as f64;
    let series: [Vec<(f64, f64)>; 3] = [
        staircase(points, |p| p.heap_bytes.unwrap_or(0) as f64 / MIB),
        staircase(points, |p| p.anon_bytes as f64 / MIB),
        staircase(points, |p| p.rss.anon as f64 / MIB),
    ];
    let max_step = points.iter().map(|p| p.at).fold(1.0f64, f64::max);
    let max_y = series
        .iter()
        .flatten()
        .map(|&(_, y)| y)
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.1;
    let colors = [
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xd6, 0x8a, 0x00),
        RGBColor(0x1f, 0x5f, 0xbf),
    ];

    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_step, 0.0..max_y)?;
        chart
            .configure_mesh()
            .x_desc("memory system call (at k: after call k; at k - 0.5: before it)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_labels((max_step as usize + 1).min(24))
            .y_desc("MiB")
            .draw()?;
        for ((data, name), color) in series.iter().zip(SERIES).zip(colors) {
            chart
                .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| e.to_string())
}
