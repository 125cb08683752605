// SPDX-License-Identifier: GPL-2.0

//! `mmscope maps`: an address space as a header, a `pmap -x`-like table and a picture.

use crate::abi::{kind, MmSummary};
use crate::snapshot::{page_size, Field, Snapshot, VmaView};
use crate::style::Style;
use crate::units::size;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The `mm_struct` summary for `--json`: the kernel's field names, addresses in bytes, the VM
/// and RSS counters in pages of `page_size` bytes. These names do not change. A field the
/// source could not read is `null`, and `unknown` says why, by field name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryView {
    /// The page size the counters count in.
    pub page_size: u64,
    /// The summary's fields, under their names in `struct mmscope_mm_summary`.
    pub fields: MmSummary,
    /// The fields the source could not read, and why.
    pub unknown: BTreeMap<&'static str, &'static str>,
}

impl From<&Snapshot> for SummaryView {
    fn from(snap: &Snapshot) -> Self {
        Self {
            page_size: page_size(),
            fields: snap.summary,
            unknown: snap
                .unknown
                .iter()
                .map(|(f, why)| (f.name(), *why))
                .collect(),
        }
    }
}

impl Serialize for SummaryView {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let fields = summary_fields(&self.fields);
        let mut map = ser.serialize_map(Some(fields.len() + 2))?;
        map.serialize_entry("page_size", &self.page_size)?;
        for (name, value) in fields {
            let known = !self.unknown.contains_key(name);
            map.serialize_entry(name, &known.then_some(value))?;
        }
        map.serialize_entry("unknown", &self.unknown)?;
        map.end()
    }
}

/// The fields of a summary by their names in `struct mmscope_mm_summary`, in its order.
fn summary_fields(s: &MmSummary) -> [(&'static str, u64); 25] {
    [
        ("start_code", s.start_code),
        ("end_code", s.end_code),
        ("start_data", s.start_data),
        ("end_data", s.end_data),
        ("start_brk", s.start_brk),
        ("brk", s.brk),
        ("start_stack", s.start_stack),
        ("arg_start", s.arg_start),
        ("arg_end", s.arg_end),
        ("env_start", s.env_start),
        ("env_end", s.env_end),
        ("mmap_base", s.mmap_base),
        ("task_size", s.task_size),
        ("map_count", s.map_count),
        ("total_vm", s.total_vm),
        ("locked_vm", s.locked_vm),
        ("pinned_vm", s.pinned_vm),
        ("data_vm", s.data_vm),
        ("exec_vm", s.exec_vm),
        ("stack_vm", s.stack_vm),
        ("hiwater_rss", s.hiwater_rss),
        ("hiwater_vm", s.hiwater_vm),
        ("rss_anon", s.rss_anon),
        ("rss_file", s.rss_file),
        ("rss_shmem", s.rss_shmem),
    ]
}

/// `mmscope maps --json`: one object.
#[derive(Clone, Debug, Serialize)]
pub struct MapsJson {
    /// The process, as given (`self` resolved to this process's pid).
    pub pid: i32,
    /// Where the numbers come from: `module` or `procfs`.
    pub source: &'static str,
    /// Its command name, if procfs shows it.
    pub comm: Option<String>,
    /// The `mm_struct` summary.
    pub summary: SummaryView,
    /// Every VMA, in address order.
    pub vmas: Vec<VmaView>,
}

impl MapsJson {
    /// Puts a snapshot and the names procfs gave into the `--json` shape.
    pub fn new(
        pid: i32,
        source: &'static str,
        comm: Option<String>,
        snap: &Snapshot,
        names: &crate::procfs::Names,
    ) -> Self {
        Self {
            pid,
            source,
            comm,
            summary: SummaryView::from(snap),
            vmas: snap
                .vmas
                .iter()
                .map(|v| VmaView::new(v, name_of(v, names)))
                .collect(),
        }
    }
}

/// The file name of a VMA: what procfs calls it, or `/dev/mmscope` for ours.
fn name_of<'a>(v: &crate::abi::Vma, names: &'a crate::procfs::Names) -> Option<&'a str> {
    crate::procfs::name(names, v).or(match v.kind {
        kind::MMSCOPE => Some("/dev/mmscope"),
        _ => None,
    })
}

/// An address as the tables print it: 12 hex digits, as `/proc/<pid>/maps` does on x86-64.
fn addr(a: u64) -> String {
    format!("{a:012x}")
}

/// The header: the layout fields and counters of the `mm_struct`, after a line naming the
/// source they come from (`source` describes it).
pub fn header(
    snap: &Snapshot,
    pid: i32,
    comm: Option<&str>,
    source: &str,
    style: &Style,
) -> String {
    let s = &snap.summary;
    let page = page_size();
    let pages = |n: u64| size(n * page);
    let mut out = String::new();
    let who = match comm {
        Some(c) => format!("process {pid} ({c})"),
        None => format!("process {pid}"),
    };
    let _ = writeln!(out, "{}", style.bold(&who));
    let _ = writeln!(out, "  source     {source}");
    let range =
        |a: u64, b: u64| format!("{}-{}  {:>10}", addr(a), addr(b), size(b.saturating_sub(a)));
    let _ = writeln!(out, "  code       {}", range(s.start_code, s.end_code));
    let _ = writeln!(out, "  data       {}", range(s.start_data, s.end_data));
    match snap.brk() {
        Some(brk) => {
            let heap_vma_end = snap.vma_at(s.start_brk).map_or(brk, |v| v.end);
            let _ = writeln!(
                out,
                "  heap       {}  {:>10}   start_brk {:#x}  brk {:#x}{}",
                style.kind(kind::HEAP, &format!("{}-{}", addr(s.start_brk), addr(brk))),
                size(brk.saturating_sub(s.start_brk)),
                s.start_brk,
                brk,
                if brk % page != 0 {
                    format!(
                        "  (the heap VMA ends at the next page, {:#x})",
                        heap_vma_end
                    )
                } else {
                    String::new()
                }
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  heap       start_brk {:#x}  brk unknown: {}",
                s.start_brk,
                snap.why_unknown(Field::Brk).unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "  stack      start_stack {:#x}", s.start_stack);
    let _ = writeln!(
        out,
        "  args, env  {}-{}, {}-{}",
        addr(s.arg_start),
        addr(s.arg_end),
        addr(s.env_start),
        addr(s.env_end)
    );
    match (snap.mmap_base(), snap.task_size()) {
        (Some(base), Some(top)) => {
            let _ = writeln!(out, "  mmap_base  {base:#x}   task_size {top:#x}");
        }
        (base, top) => {
            let shown = |a: Option<u64>, f: Field| match a {
                Some(a) => format!("{a:#x}"),
                None => format!("unknown ({})", snap.why_unknown(f).unwrap_or_default()),
            };
            let _ = writeln!(out, "  mmap_base  {}", shown(base, Field::MmapBase));
            let _ = writeln!(out, "  task_size  {}", shown(top, Field::TaskSize));
        }
    }
    let _ = writeln!(out, "  map_count  {} VMAs", s.map_count);
    let _ = writeln!(
        out,
        "  VM         total {}  data {}  stack {}  exec {}  locked {}  pinned {}  peak {}",
        pages(s.total_vm),
        pages(s.data_vm),
        pages(s.stack_vm),
        pages(s.exec_vm),
        pages(s.locked_vm),
        pages(s.pinned_vm),
        pages(s.hiwater_vm.max(s.total_vm))
    );
    let rss = snap.rss();
    let _ = writeln!(
        out,
        "  RSS        anon {}  file {}  shmem {}  total {}  peak {}",
        size(rss.anon),
        size(rss.file),
        size(rss.shmem),
        size(rss.total()),
        size((s.hiwater_rss * page).max(rss.total()))
    );
    out
}

/// The table, in the columns of `pmap -x` where they say the same thing, plus the range, the
/// kind, and the columns of `/proc/<pid>/maps`.
pub fn table(snap: &Snapshot, names: &crate::procfs::Names, style: &Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<12} {:>10} {:<4} {:<7} {:>8} {:<5} {:>8} Mapping",
        "Address", "End", "Kbytes", "Mode", "Kind", "Offset", "Dev", "Inode"
    );
    let mut total = 0;
    for v in &snap.vmas {
        let view = VmaView::new(v, name_of(v, names));
        total += view.size;
        let row = format!(
            "{:<12} {:<12} {:>10} {:<4} {} {:>8x} {:<5} {:>8} {}",
            addr(view.start),
            addr(view.end),
            view.size / 1024,
            view.perms,
            style.kind(v.kind, &format!("{:<7}", view.kind)),
            view.offset,
            view.dev,
            view.inode,
            view.name.as_deref().unwrap_or("")
        );
        let _ = writeln!(out, "{}", row.trim_end());
    }
    let _ = writeln!(
        out,
        "{:<25} {:>10} {}",
        "total kB",
        total / 1024,
        style.dim(&format!("in {} VMAs", snap.vmas.len()))
    );
    out
}

/// One row of the picture.
enum Row {
    /// A VMA.
    Region(crate::abi::Vma),
    /// Unmapped address space between `.0` and `.1`.
    Gap(u64, u64),
    /// A named address that is not a VMA boundary of its own.
    Marker(u64, String),
}

/// Columns of the widest bar.
const BAR_MAX: usize = 28;

/// The bar for `bytes`: one column for a page, one more for each doubling, so that 4 KiB and
/// 1 GiB both fit on a line and sizes still compare.
fn bar_width(bytes: u64) -> usize {
    let pages = (bytes / page_size()).max(1);
    (1 + pages.ilog2() as usize).min(BAR_MAX)
}

/// The picture: one row per region, high addresses on top as in the textbook figure, gaps
/// collapsed to one row with their size, and `start_brk`, `brk`, `mmap_base` and `task_size`
/// where they are.
pub fn picture(snap: &Snapshot, names: &crate::procfs::Names, style: &Style) -> String {
    let s = &snap.summary;
    let mut markers = Vec::new();
    if let Some(top) = snap.task_size() {
        markers.push((top, "task_size: the top of user address space".to_string()));
    }
    if let Some(base) = snap.mmap_base() {
        markers.push((
            base,
            "mmap_base: mmap() places new mappings below this, downwards".to_string(),
        ));
    }
    if snap.vma_at(s.start_brk).is_none() {
        markers.push((
            s.start_brk,
            match snap.brk() {
                Some(brk) => format!("start_brk = brk {brk:#x}: the heap is empty"),
                None => "start_brk: no heap VMA here (brk unknown)".to_string(),
            },
        ));
    }
    markers.sort_by_key(|m| std::cmp::Reverse(m.0));

    // Everything from the top down: VMAs by their end, markers by their address.
    let mut rows = Vec::new();
    let mut cursor = snap
        .task_size()
        .unwrap_or(0)
        .max(snap.vmas.last().map_or(0, |v| v.end));
    let mut vmas = snap.vmas.iter().rev().peekable();
    let mut markers = markers.into_iter().peekable();
    loop {
        let next_vma = vmas.peek().map(|v| v.end);
        let next_marker = markers.peek().map(|m| m.0);
        let take_marker = match (next_vma, next_marker) {
            (None, None) => break,
            (Some(v), Some(m)) => m >= v,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if take_marker {
            let Some((at, label)) = markers.next() else {
                break;
            };
            if at < cursor {
                rows.push(Row::Gap(at, cursor));
                cursor = at;
            }
            rows.push(Row::Marker(at, label));
        } else {
            let Some(v) = vmas.next() else { break };
            if v.end < cursor {
                rows.push(Row::Gap(v.end, cursor));
            }
            rows.push(Row::Region(*v));
            cursor = cursor.min(v.start);
        }
    }
    if cursor > 0 {
        rows.push(Row::Gap(0, cursor));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.dim("high addresses on top; each row starts at the address on its left")
    );
    for row in rows {
        match row {
            Row::Region(v) => {
                let view = VmaView::new(&v, name_of(&v, names));
                let bar = "█".repeat(bar_width(view.size));
                let mut note = String::new();
                if v.kind == kind::HEAP {
                    note = match snap.brk() {
                        Some(brk) => format!(
                            "  start_brk {:#x} .. brk {:#x} ({} in use of the VMA's {})",
                            s.start_brk,
                            brk,
                            size(brk.saturating_sub(s.start_brk)),
                            size(view.size)
                        ),
                        None => format!("  start_brk {:#x} .. brk unknown", s.start_brk),
                    };
                }
                let row = format!(
                    "{} {} {:<7} {:>10} {} {}{}",
                    addr(v.start),
                    style.kind(v.kind, &format!("{bar:<BAR_MAX$}")),
                    view.kind,
                    size(view.size),
                    view.perms,
                    view.name.as_deref().unwrap_or(""),
                    note
                );
                let _ = writeln!(out, "{}", row.trim_end());
            }
            Row::Gap(lo, hi) => {
                let line = format!("{:<BAR_MAX$} {} unmapped", "┆", size(hi - lo));
                let _ = writeln!(out, "{:12} {}", "", style.dim(&line));
            }
            Row::Marker(at, label) => {
                let line = format!("{} {}", "─".repeat(BAR_MAX), label);
                let _ = writeln!(out, "{} {}", addr(at), style.dim(&line));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_names_are_stable() {
        let view = SummaryView::from(&Snapshot::default());
        let json = serde_json::to_value(&view).unwrap_or_default();
        let keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut want = vec![
            "page_size",
            "start_code",
            "end_code",
            "start_data",
            "end_data",
            "start_brk",
            "brk",
            "start_stack",
            "arg_start",
            "arg_end",
            "env_start",
            "env_end",
            "mmap_base",
            "task_size",
            "map_count",
            "total_vm",
            "locked_vm",
            "pinned_vm",
            "data_vm",
            "exec_vm",
            "stack_vm",
            "hiwater_rss",
            "hiwater_vm",
            "rss_anon",
            "rss_file",
            "rss_shmem",
            "unknown",
        ];
        let mut keys = keys;
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want);
        // Every field of the summary is there: the list above and the struct agree.
        let summary = serde_json::to_value(MmSummary::default()).unwrap_or_default();
        assert_eq!(
            summary.as_object().map(|o| o.len()),
            Some(want.len() - 2),
            "summary_fields() lists every field of MmSummary"
        );
    }

    #[test]
    fn unknown_fields_are_null_with_a_reason() {
        let mut snap = Snapshot::default();
        snap.summary.brk = 0x1234;
        snap.summary.start_brk = 0x1000;
        snap.unknown = vec![(Field::Brk, "not shown"), (Field::TaskSize, "nor this")];
        let json = serde_json::to_value(SummaryView::from(&snap)).unwrap_or_default();
        assert_eq!(json["brk"], serde_json::Value::Null);
        assert_eq!(json["task_size"], serde_json::Value::Null);
        assert_eq!(json["start_brk"], 0x1000);
        assert_eq!(json["unknown"]["brk"], "not shown");
        assert_eq!(json["unknown"]["task_size"], "nor this");
        assert_eq!(json["unknown"].as_object().map(|o| o.len()), Some(2));
        snap.set_brk(0x2000);
        let json = serde_json::to_value(SummaryView::from(&snap)).unwrap_or_default();
        assert_eq!(json["brk"], 0x2000);
        assert_eq!(snap.heap_bytes(), Some(0x1000));
    }
}
