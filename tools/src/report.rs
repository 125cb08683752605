// SPDX-License-Identifier: GPL-2.0

//! What `mmscope trace` prints: one entry per step, as text for people or as one JSON object
//! per line for scripts, and a summary at the end.

use crate::abi::{kind, Vma};
use crate::faults::{Change, Site, When};
use crate::kgraph::Node;
use crate::procfs::NameCache;
use crate::snapshot::{
    kind_label, page_size, perm_chars, perms, vma_size, Rss, Snapshot, VmaDiff, VmaView,
};
use crate::style::{Paint, Style};
use crate::syscalls::{self, MemCall};
use crate::trace::{Ending, Event, Spawn, Step};
use crate::units::{delta, size};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

/// The numbers of one moment that the summary and the plot follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// Where on the plot's axis: 0 at `exec`, `k - 0.5` at the entry of call `k` (what the
    /// program did between the calls), `k` at its exit.
    pub at: f64,
    /// `brk - start_brk`; `None` if `brk` is unknown (never in a trace: the tracer knows it).
    pub heap_bytes: Option<u64>,
    /// Private anonymous memory mapped with some access, outside the heap and stack.
    pub anon_bytes: u64,
    /// Private anonymous memory mapped `PROT_NONE`.
    pub anon_reserved_bytes: u64,
    /// The RSS counters.
    pub rss: Rss,
}

impl Point {
    fn of(at: f64, s: &Snapshot) -> Self {
        Self {
            at,
            heap_bytes: s.heap_bytes(),
            anon_bytes: s.anon_mapped_bytes(),
            anon_reserved_bytes: s.anon_reserved_bytes(),
            rss: s.rss(),
        }
    }
}

/// The totals of a trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Always `"summary"`.
    pub event: &'static str,
    /// The program and its arguments, as the trace started it (empty when it attached).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Calls by name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Calls that failed.
    pub failed: u64,
    /// Threads the program started.
    pub threads: u64,
    /// Processes followed besides the program (`-f`); their calls are counted above, the
    /// peaks below are the program's.
    #[serde(skip_serializing_if = "is_zero")]
    pub processes: u64,
    /// The largest `brk - start_brk` seen.
    pub peak_heap_bytes: u64,
    /// The most private anonymous memory mapped with access at one step.
    pub peak_anon_bytes: u64,
    /// The most private anonymous memory mapped `PROT_NONE` at one step.
    pub peak_anon_reserved_bytes: u64,
    /// The most resident anonymous memory seen.
    pub peak_rss_anon_bytes: u64,
    /// Peak RSS: the kernel's high-water mark or the most seen, whichever is larger.
    pub peak_rss_bytes: u64,
    /// The program's exit status, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether it dumped core as that signal killed it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
    /// Attached to a running process (`-p`): how many threads it had then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_threads: Option<u64>,
    /// The process the tracer let go of (`-p`, then `SIGINT`, `SIGTERM` or `SIGHUP`), which
    /// runs on untraced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached: Option<i32>,
    /// Every point, for the plot; not printed.
    #[serde(skip)]
    pub points: Vec<Point>,
    /// The program's pid, once it has been seen: the peaks and points are its own.
    #[serde(skip)]
    pub program: Option<i32>,
    /// With `--stacks`: the call sites that mapped the most memory, most first (at most 5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_mapped: Vec<CallSite>,
    /// Bytes mapped and calls, by call site (the functions of the stack).
    #[serde(skip)]
    mapped_by_site: HashMap<Vec<String>, (u64, u64)>,
    /// With `--faults`: the program's resident anonymous memory by the code that first
    /// touched it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident: Option<ResidentSummary>,
}

/// The program's resident anonymous memory by site (`--faults`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResidentSummary {
    /// The most pages resident at one stop, and the last step before it.
    pub peak_pages: u64,
    pub peak_step: usize,
    /// The pages resident as its last thread exited.
    pub exit_pages: u64,
    /// The sites with the most pages at the peak, and at exit (at most 5 each).
    pub top_at_peak: Vec<ResidentSite>,
    pub top_at_exit: Vec<ResidentSite>,
    /// Stops at which the pages attributed differed from the kernel's `RssAnon` (0 when every
    /// page is accounted for), in every process followed.
    pub unequal: u64,
    /// Stops at which they were compared.
    pub compared: u64,
    /// Whether the faults the kernel takes in the program's memory during its system calls
    /// were recorded (`perf_event_paranoid` <= 1, or root); else their pages are labelled.
    pub kernel_faults: bool,
    /// Page faults recorded, in every process followed, and those the kernel could not
    /// record (its ring buffer for them was full; their pages are then labelled).
    pub faults: u64,
    pub faults_lost: u64,
    /// The pages of every site now, at the peak and at exit.
    #[serde(skip)]
    now: HashMap<u32, (Arc<Site>, u64)>,
    #[serde(skip)]
    pub at_peak: Vec<(Arc<Site>, u64)>,
    #[serde(skip)]
    pub at_exit: Vec<(Arc<Site>, u64)>,
    /// The last step seen.
    #[serde(skip)]
    step: usize,
    /// Whether the program's exit was seen (not detached from).
    #[serde(skip)]
    exited: bool,
}

/// A site's resident pages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResidentSite {
    /// The named functions of its stack, innermost first, or its label in brackets.
    pub stack: Vec<String>,
    pub pages: u64,
}

impl ResidentSummary {
    fn observe(&mut self, c: &Change) {
        for (site, d) in &c.sites {
            let e = self
                .now
                .entry(site.id)
                .or_insert_with(|| (Arc::clone(site), 0));
            e.1 = e.1.saturating_add_signed(*d);
            if e.1 == 0 {
                self.now.remove(&site.id);
            }
        }
        self.faults = c.recorded;
        self.faults_lost = c.lost;
        self.compared = c.checks;
        self.unequal = c.unequal;
        self.kernel_faults = c.kernel;
        let by_pages = |now: &HashMap<u32, (Arc<Site>, u64)>| {
            let mut v: Vec<(Arc<Site>, u64)> = now.values().cloned().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
            v
        };
        // By the functions a reader sees: sites that differ only in lines are one.
        let top = |v: &[(Arc<Site>, u64)]| {
            let mut by: HashMap<Vec<String>, u64> = HashMap::new();
            for (s, n) in v {
                *by.entry(s.names()).or_default() += n;
            }
            let mut top: Vec<ResidentSite> = (by.into_iter())
                .map(|(stack, pages)| ResidentSite { stack, pages })
                .collect();
            top.sort_by(|a, b| b.pages.cmp(&a.pages).then_with(|| a.stack.cmp(&b.stack)));
            top.truncate(5);
            top
        };
        if c.pages > self.peak_pages || self.at_peak.is_empty() {
            self.peak_pages = c.pages;
            self.peak_step = self.step;
            self.at_peak = by_pages(&self.now);
            self.top_at_peak = top(&self.at_peak);
        }
        if c.when == When::Exit {
            self.exited = true;
            self.exit_pages = c.pages;
            self.at_exit = by_pages(&self.now);
            self.top_at_exit = top(&self.at_exit);
        }
    }

    /// The pages of each stack, root first, as folded lines (`a;b;c COUNT`, counts in KiB)
    /// for a flame graph: at the peak, or at exit. `root` is the first frame of each.
    pub fn folded(&self, peak: bool, root: &str) -> Vec<String> {
        let sites = if peak { &self.at_peak } else { &self.at_exit };
        let kib = page_size() / 1024;
        let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
        for (stack, kib) in sites.iter().map(|(site, pages)| {
            let mut names = vec![root.replace(';', ":")];
            match &site.label {
                Some(label) => names.push(format!("[{label}]")),
                None => names.extend(site.frames.iter().rev().map(|f| {
                    let name = match (&f.function, &f.module) {
                        (Some(n), _) => n.clone(),
                        (None, Some(m)) => format!("[{}]", m.rsplit('/').next().unwrap_or(m)),
                        (None, None) => "[unknown]".to_string(),
                    };
                    name.replace(';', ":")
                })),
            }
            // Frames of a file without symbols, one after another, as one: a reader cannot
            // tell them apart.
            names.dedup_by(|a, b| a == b && a.starts_with('['));
            (names.join(";"), pages * kib)
        }) {
            *stacks.entry(stack).or_default() += kib;
        }
        stacks
            .into_iter()
            .map(|(s, k)| format!("{s} {k}"))
            .collect()
    }
}

/// A call site of `--stacks`: the functions of the stack that have a name, innermost first,
/// and what its memory calls mapped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallSite {
    /// The functions, innermost first.
    pub stack: Vec<String>,
    /// Bytes its calls mapped: the length of each `mmap`, the growth of each `brk` and
    /// `mremap`.
    pub bytes: u64,
    /// How many of its calls mapped memory.
    pub calls: u64,
}

/// How many bytes a call mapped: an `mmap`'s length, a `brk`'s or `mremap`'s growth; 0 for
/// a call that failed or gave back.
fn bytes_mapped(step: &Step) -> u64 {
    let Some(ret) = step.ret else {
        return 0;
    };
    if syscalls::failed(step.call, &step.args, ret) {
        return 0;
    }
    let arg = |i: usize| step.args.get(i).copied().unwrap_or(0);
    match step.call {
        MemCall::Mmap => arg(1),
        MemCall::Mremap => arg(2).saturating_sub(arg(1)),
        MemCall::Brk => match (
            step.before.brk(),
            step.after.as_ref().and_then(Snapshot::brk),
        ) {
            (Some(b), Some(a)) => a.saturating_sub(b),
            _ => 0,
        },
        _ => 0,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Self {
            event: "summary",
            ..Default::default()
        }
    }

    /// Takes one event into account.
    pub fn observe(&mut self, event: &Event) {
        let program = *self.program.get_or_insert(match event {
            Event::Exec { pid, .. } | Event::Attach { pid, .. } => *pid,
            _ => 0,
        });
        match event {
            Event::Exec { snap, pid, .. } if *pid == program => self.point(0.0, snap),
            Event::Attach { snap, threads, .. } => {
                self.attached_threads = Some(*threads as u64);
                self.point(0.0, snap);
            }
            Event::Thread { pid, .. } if *pid == program => self.threads += 1,
            Event::Fork { .. } => self.processes += 1,
            Event::Call(step) => {
                *self.calls.entry(step.call.name()).or_default() += 1;
                self.map_site(step);
                if step
                    .ret
                    .is_some_and(|r| syscalls::failed(step.call, &step.args, r))
                {
                    self.failed += 1;
                }
                if step.pid == program {
                    self.point(step.index as f64 - 0.5, &step.before);
                    if let Some(after) = &step.after {
                        self.point(step.index as f64, after);
                    }
                }
            }
            Event::ThreadExit {
                pid,
                snap: Some(snap),
                ..
            } if *pid == program => {
                let at = self.points.last().map_or(0.0, |p| p.at.floor() + 0.5);
                self.point(at, snap);
            }
            Event::Resident(c) if c.pid == program => {
                let r = self.resident.get_or_insert_with(ResidentSummary::default);
                r.step = self.calls.values().sum::<u64>() as usize;
                r.observe(c);
            }
            _ => {}
        }
    }

    /// Counts what `step` mapped for its call site, if it has a stack.
    fn map_site(&mut self, step: &Step) {
        let (Some(stack), bytes) = (&step.stack, bytes_mapped(step)) else {
            return;
        };
        if bytes == 0 {
            return;
        }
        // The functions known by name: frames without one (a library's internal functions
        // without symbols) would tell apart sites a reader cannot.
        let site: Vec<String> = stack.iter().filter_map(|f| f.function.clone()).collect();
        let entry = self.mapped_by_site.entry(site).or_default();
        entry.0 += bytes;
        entry.1 += 1;
        let mut top: Vec<CallSite> = (self.mapped_by_site.iter())
            .map(|(stack, &(bytes, calls))| CallSite {
                stack: stack.clone(),
                bytes,
                calls,
            })
            .collect();
        top.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.stack.cmp(&b.stack)));
        top.truncate(5);
        self.top_mapped = top;
    }

    /// Records how the program ended.
    pub fn end(&mut self, ending: Ending) {
        match ending {
            Ending::Exited(code) => self.exit_code = Some(code),
            Ending::Signaled(sig, core) => {
                self.signal = Some(sig);
                self.core_dumped = core;
            }
            Ending::Detached(pid) => self.detached = Some(pid),
        }
    }

    fn point(&mut self, at: f64, s: &Snapshot) {
        let p = Point::of(at, s);
        self.peak_heap_bytes = self.peak_heap_bytes.max(p.heap_bytes.unwrap_or(0));
        self.peak_anon_bytes = self.peak_anon_bytes.max(p.anon_bytes);
        self.peak_anon_reserved_bytes = self.peak_anon_reserved_bytes.max(p.anon_reserved_bytes);
        self.peak_rss_anon_bytes = self.peak_rss_anon_bytes.max(p.rss.anon);
        let hiwater = s.summary.hiwater_rss * page_size();
        self.peak_rss_bytes = self.peak_rss_bytes.max(hiwater).max(p.rss.total());
        self.points.push(p);
    }

    /// The summary as text.
    pub fn text(&self, style: &Style) -> String {
        let total: u64 = self.calls.values().sum();
        let by_kind = syscalls::ALL
            .iter()
            .filter_map(|c| {
                self.calls
                    .get(c.name())
                    .map(|n| format!("{} {n}", c.name()))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {total} memory system calls ({}), {} failed{}",
            style.bold("summary:"),
            if by_kind.is_empty() { "none" } else { &by_kind },
            self.failed,
            if self.threads > 0 {
                format!(
                    ", {} thread{} started",
                    self.threads,
                    if self.threads == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            }
        );
        if self.processes > 0 {
            let _ = writeln!(
                out,
                "  in the program and the {} process{} it started (-f); the peaks are the program's",
                self.processes,
                if self.processes == 1 { "" } else { "es" }
            );
        }
        let _ = writeln!(
            out,
            "  peak heap {} (brk - start_brk), peak anonymous mmap {}{}",
            size(self.peak_heap_bytes),
            size(self.peak_anon_bytes),
            if self.peak_anon_reserved_bytes > 0 {
                format!(
                    " (+ {} reserved PROT_NONE)",
                    size(self.peak_anon_reserved_bytes)
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "  peak RSS {} (anonymous {})",
            size(self.peak_rss_bytes),
            size(self.peak_rss_anon_bytes)
        );
        match (self.exit_code, self.signal) {
            (Some(code), _) => {
                let _ = writeln!(out, "  the program exited with status {code}");
            }
            (_, Some(sig)) => {
                let name = crate::trace::signal_name(sig);
                let core = if self.core_dumped {
                    " (core dumped)"
                } else {
                    ""
                };
                let _ = writeln!(out, "  the program was killed by {name}{core}");
            }
            _ => {}
        }
        if let Some(pid) = self.detached {
            let _ = writeln!(out, "  detached from pid {pid}; it runs on");
        }
        if let Some(r) = &self.resident {
            let kib = page_size();
            let _ = writeln!(
                out,
                "  resident anonymous memory by the code that first touched it (--faults), \
                 {}:",
                if r.unequal == 0 {
                    format!("equal to the kernel's RssAnon at all {} stops", r.compared)
                } else {
                    format!(
                        "differing from the kernel's RssAnon at {} of {} stops (threads ran \
                         while it was read)",
                        r.unequal, r.compared
                    )
                }
            );
            let _ = writeln!(
                out,
                "    {} page faults recorded{}",
                r.faults,
                if r.faults_lost > 0 {
                    format!(
                        ", {} lost (a ring buffer was full: their pages are labelled)",
                        r.faults_lost
                    )
                } else {
                    String::new()
                }
            );
            let mut when = vec![(
                format!("at the peak (after {} calls)", r.peak_step),
                r.peak_pages,
                &r.top_at_peak,
            )];
            if r.exited {
                when.push(("at exit".to_string(), r.exit_pages, &r.top_at_exit));
            }
            for (what, pages, top) in when {
                let _ = writeln!(out, "    {what}: {}", size(pages * kib));
                for site in top {
                    let names: Vec<&str> = site.stack.iter().map(String::as_str).take(8).collect();
                    let _ = writeln!(
                        out,
                        "      {:>10} {}",
                        size(site.pages * kib),
                        names.join(" <- ")
                    );
                }
            }
        }
        if !self.top_mapped.is_empty() {
            let _ = writeln!(out, "  top call sites by bytes mapped (--stacks):");
            for site in &self.top_mapped {
                // The known functions, outermost last, as a path to the call.
                let names: Vec<&str> = site.stack.iter().map(String::as_str).take(8).collect();
                let _ = writeln!(
                    out,
                    "    {:>10} in {} call{}: {}",
                    size(site.bytes),
                    site.calls,
                    if site.calls == 1 { "" } else { "s" },
                    names.join(" <- ")
                );
            }
        }
        out
    }
}

/// What the text report remembers of one process.
#[derive(Default)]
struct ProcText {
    /// Its VMAs' names.
    names: NameCache,
    /// The RSS counters the last line showed.
    last_rss: Option<Rss>,
    /// Its threads that have not exited: its exit is the last one's.
    live: usize,
}

impl ProcText {
    /// A process that has just exec'd, forked or been attached to, with `threads` threads.
    fn new(pid: i32, threads: usize) -> Self {
        let mut names = NameCache::default();
        names.reset(pid);
        Self {
            names,
            last_rss: None,
            live: threads,
        }
    }
}

/// Prints events as text, remembering what it needs for the changes it shows.
pub struct TextReport {
    style: Style,
    /// Each process followed, by pid.
    procs: HashMap<i32, ProcText>,
    /// A second process has been seen (`-f`): calls name their process.
    many: bool,
}

impl TextReport {
    /// A report in `style`.
    pub fn new(style: Style) -> Self {
        Self {
            style,
            procs: HashMap::new(),
            many: false,
        }
    }

    /// The text for one event.
    pub fn event(&mut self, event: &Event) -> String {
        let mut out = String::new();
        match event {
            Event::Exec { pid, source, snap } => {
                let mut p = ProcText::new(*pid, 1);
                let _ = writeln!(
                    out,
                    "{} pid {pid}: start_brk {:#x}, brk {}, mmap_base {}, {} VMAs (source: {source})",
                    self.style.bold("exec"),
                    snap.summary.start_brk,
                    known_hex(snap.brk()),
                    known_hex(snap.mmap_base()),
                    snap.vmas.len()
                );
                out += &p.rss_line(&self.style, "RSS", snap.rss());
                self.procs.insert(*pid, p);
            }
            Event::Attach {
                pid,
                source,
                threads,
                snap,
            } => {
                let mut p = ProcText::new(*pid, *threads);
                let brk = match snap.why_unknown(crate::snapshot::Field::Brk) {
                    Some(why) => format!("unknown ({why})"),
                    None => known_hex(snap.brk()),
                };
                let _ = writeln!(
                    out,
                    "{} pid {pid}: {threads} thread{}, start_brk {:#x}, brk {brk}, mmap_base {}, \
                     {} VMAs (source: {source})",
                    self.style.bold("attach"),
                    if *threads == 1 { "" } else { "s" },
                    snap.summary.start_brk,
                    known_hex(snap.mmap_base()),
                    snap.vmas.len()
                );
                out += &p.rss_line(&self.style, "RSS", snap.rss());
                self.procs.insert(*pid, p);
            }
            Event::Fork {
                pid,
                parent,
                tid,
                how,
                shared,
                snap,
            } => {
                self.many = true;
                let mut p = ProcText::new(*pid, 1);
                let mut what = if *shared {
                    "the same address space (CLONE_VM) until it execs or exits".to_string()
                } else {
                    "a copy of its address space".to_string()
                };
                if *how == Spawn::Vfork {
                    let _ = write!(what, ", {parent} waiting meanwhile");
                }
                let _ = writeln!(
                    out,
                    "{} pid {pid} from {parent} [{tid}]: {what}; brk {}, {} VMAs",
                    self.style.bold(how.name()),
                    known_hex(snap.brk()),
                    snap.vmas.len()
                );
                out += &p.rss_line(&self.style, "RSS", snap.rss());
                self.procs.insert(*pid, p);
            }
            Event::Unreadable { pid } => {
                let _ = writeln!(
                    out,
                    "{} pid {pid}: not shown from here on: it may not be read any more (it made \
                     itself non-dumpable, or changed its credentials)",
                    self.style.bold("unreadable")
                );
                self.procs.remove(pid);
            }
            Event::End { pid, ending } => {
                let how = match ending {
                    Ending::Exited(code) => format!("exited with status {code}"),
                    Ending::Signaled(sig, core) => format!(
                        "killed by {}{}",
                        crate::trace::signal_name(*sig),
                        if *core { " (core dumped)" } else { "" }
                    ),
                    Ending::Detached(_) => "detached".to_string(),
                };
                let _ = writeln!(out, "{} pid {pid}: {how}", self.style.bold("end"));
                self.procs.remove(pid);
            }
            Event::Thread { pid, tid, parent } => {
                if let Some(p) = self.procs.get_mut(pid) {
                    p.live += 1;
                }
                let of = if self.many {
                    format!(" of pid {pid}")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{} {tid}{of} started by {parent}",
                    self.style.bold("thread")
                );
            }
            Event::Call(step) => out += &self.step(step),
            Event::Resident(c) => self.resident(c, &mut out),
            Event::Compat32 { .. } => {}
            Event::ThreadExit { pid, snap, .. } => {
                // The process's exit is its last thread's, which need not be the leader
                // (it may have called pthread_exit while others ran on).
                let style = &self.style;
                if let Some(p) = self.procs.get_mut(pid) {
                    p.live = p.live.saturating_sub(1);
                    if let (0, Some(snap)) = (p.live, snap) {
                        let _ = writeln!(
                            out,
                            "{} pid {pid}: brk {}, {} VMAs",
                            style.bold("exit"),
                            known_hex(snap.brk()),
                            snap.vmas.len()
                        );
                        out += &p.rss_line(style, "RSS", snap.rss());
                    }
                }
            }
        }
        out
    }

    /// The text of a change of resident memory (`--faults`): pages gained and given back, by
    /// the code that first touched them.
    fn resident(&mut self, c: &Change, out: &mut String) {
        let style = &self.style;
        let label = match c.when {
            When::Start => "resident at the start".to_string(),
            When::Before => "first touched since the last call".to_string(),
            When::After(call) => format!("made resident or given back by {}", call.name()),
            When::Exit => "first touched before the exit".to_string(),
            When::Ended => "given back at the end".to_string(),
        };
        let kib = page_size();
        let who = if self.many {
            format!("[{}] ", c.pid)
        } else {
            String::new()
        };
        let total = if c.when == When::Ended {
            String::new()
        } else if c.pages == c.rss_anon {
            format!("; resident {} = RssAnon", size(c.pages * kib))
        } else {
            format!(
                "; resident {}, RssAnon {}",
                size(c.pages * kib),
                size(c.rss_anon * kib)
            )
        };
        let _ = writeln!(out, "  {who}{} {label}{total}", style.dim("faults:"));
        for (site, d) in c.sites.iter().take(8) {
            let sign = if *d > 0 { "+" } else { "-" };
            let _ = writeln!(
                out,
                "    {sign}{:<9} {}",
                size(d.unsigned_abs() * kib),
                site.text(4)
            );
        }
        if c.sites.len() > 8 {
            let _ = writeln!(out, "    ... and {} more sites", c.sites.len() - 8);
        }
    }

    /// The text of a call: written into one string, with no other allocation on the usual
    /// path, as it is printed at every call of a traced program.
    fn step(&mut self, step: &Step) -> String {
        let mut out = String::with_capacity(512);
        let style = &self.style;
        let p = self
            .procs
            .entry(step.pid)
            .or_insert_with(|| ProcText::new(step.pid, 1));
        let before = step.before.rss();
        if p.last_rss.is_some_and(|last| last != before) {
            p.rss_line_into(
                style,
                &mut out,
                "between the calls (pages touched or freed):",
                before,
            );
        }
        p.last_rss = Some(before);
        if let Some(k) = step.kernel.as_ref().filter(|k| k.fault_count > 0) {
            let _ = writeln!(
                out,
                "      kernel, {} page fault{} between the calls:",
                k.fault_count,
                if k.fault_count == 1 { "" } else { "s" }
            );
            kernel_lines(&k.faults, 8, &mut out);
        }
        style.open(&mut out, Paint::Bold);
        let _ = write!(out, "#{}", step.index);
        style.close(&mut out);
        if self.many && step.tid != step.pid {
            let _ = write!(out, " [{}/{}] ", step.pid, step.tid);
        } else {
            let _ = write!(out, " [{}] ", step.tid);
        }
        step.call.format_into(&step.args, &mut out);
        out.push_str(" = ");
        match step.ret {
            Some(ret) => step.call.format_result_into(ret, &mut out),
            None => out.push_str("? (the thread was killed)"),
        }
        out.push('\n');
        for frame in step.stack.iter().flatten() {
            frame_line(style, frame, &mut out);
        }
        if let Some(k) = &step.kernel {
            out.push_str("      kernel:\n");
            kernel_lines(&k.calls, 8, &mut out);
            if k.lost > 0 {
                let _ = writeln!(
                    out,
                    "      kernel: {} events lost since the previous call (the tracer's ring \
                     buffer was full): the graphs may miss calls",
                    k.lost
                );
            }
        }
        let Some(after) = &step.after else {
            return out;
        };
        let brk_request = step.call == MemCall::Brk && step.args.first().is_some_and(|&a| a != 0);
        if let (Some(b), Some(a), Some(heap)) = (step.before.brk(), after.brk(), after.heap_bytes())
        {
            if brk_request || b != a {
                let _ = writeln!(
                    out,
                    "      brk   {b:#x} -> {a:#x} ({}), heap {}",
                    delta(b, a),
                    size(heap)
                );
            }
        }
        let diff = VmaDiff::between(&step.before.vmas, &after.vmas);
        p.names.cover(step.tid, &diff.added);
        diff_lines(style, &p.names, &diff, &mut out);
        p.rss_line_into(style, &mut out, "RSS", after.rss());
        out
    }
}

/// `--kernel`: function graphs, appended to `out` one function a line, its calls indented
/// under it; a function that made one call, once, shares its line with it (`do_mmap →
/// mmap_region`); `×N`: so many calls one after another, each with the calls below it.
fn kernel_lines(nodes: &[Node], indent: usize, out: &mut String) {
    for node in nodes {
        out.extend(std::iter::repeat_n(' ', indent));
        let mut at = node;
        loop {
            out.push_str(&at.function);
            if at.count > 1 {
                let _ = write!(out, " ×{}", at.count);
            }
            match &at.calls[..] {
                [only] if at.count == 1 => {
                    out.push_str(" → ");
                    at = only;
                }
                _ => break,
            }
        }
        out.push('\n');
        kernel_lines(&at.calls, indent + 2, out);
    }
}

/// A frame of a call's stack, appended to `out` as one line under the call: `> function
/// (file:line) module`, `[inlined]` for a function inlined into the next frame's.
fn frame_line(style: &Style, frame: &crate::stack::Frame, out: &mut String) {
    out.push_str("        > ");
    style.open(out, Paint::Bold);
    out.push_str(frame.function.as_deref().unwrap_or("??"));
    style.close(out);
    if let Some(file) = &frame.file {
        let name = file.rsplit('/').next().unwrap_or(file);
        let _ = match frame.line {
            Some(line) => write!(out, " ({name}:{line})"),
            None => write!(out, " ({name})"),
        };
    }
    if frame.inlined {
        out.push_str(" [inlined]");
    }
    let module = frame
        .module
        .as_deref()
        .map(|m| m.rsplit('/').next().unwrap_or(m));
    style.open(out, Paint::Dim);
    let _ = match (module, frame.module_addr) {
        (Some(m), Some(at)) => write!(out, " {m}+{at:#x}"),
        _ => write!(out, " {:#x}", frame.addr),
    };
    style.close(out);
    out.push('\n');
}

/// The VMA changes, appended to `out`: `~` for a VMA that kept its start or end and changed,
/// `-` and `+` for the others.
fn diff_lines(style: &Style, names: &NameCache, diff: &VmaDiff, out: &mut String) {
    let mut added: Vec<Option<&Vma>> = diff.added.iter().map(Some).collect();
    for r in &diff.removed {
        let partner = added.iter_mut().find(|a| {
            a.is_some_and(|a| (a.start == r.start || a.end == r.end) && a.kind == r.kind)
        });
        match partner.and_then(Option::take) {
            Some(a) => {
                let (rv, av) = (VmaView::new(r, names.get(r)), VmaView::new(a, names.get(a)));
                // What else changed: the file offset, the file (its name).
                let mut more = String::new();
                if rv.offset != av.offset {
                    let _ = write!(more, " offset {:#x}->{:#x}", rv.offset, av.offset);
                }
                match (rv.name.as_deref(), av.name.as_deref()) {
                    (before, after) if before == after => {
                        if let Some(name) = after {
                            let _ = write!(more, " {name}");
                        }
                    }
                    (before, after) => {
                        let _ = write!(
                            more,
                            " {} -> {}",
                            before.unwrap_or("(no name)"),
                            after.unwrap_or("(no name)")
                        );
                    }
                }
                let line = format!(
                    "      {} {}-{} -> {}-{} {} {:<7} {} ({}){more}",
                    style.kind(a.kind, "~"),
                    hex(r.start),
                    hex(r.end),
                    hex(a.start),
                    hex(a.end),
                    perms_change(r, a),
                    kind::name(a.kind),
                    size(vma_size(a)),
                    delta(vma_size(r), vma_size(a))
                );
                let _ = writeln!(out, "{}", line.trim_end());
            }
            None => vma_line(style, names, false, r, out),
        }
    }
    for a in added.into_iter().flatten() {
        vma_line(style, names, true, a, out);
    }
}

/// A VMA that appeared (`added`) or went away, as one line appended to `out`.
fn vma_line(style: &Style, names: &NameCache, added: bool, v: &Vma, out: &mut String) {
    out.push_str("      ");
    style.push(out, Paint::Change(added), if added { "+" } else { "-" });
    let _ = write!(out, " {:x}-{:x} ", v.start, v.end);
    out.extend(perm_chars(v));
    let kind = kind::name(v.kind);
    out.push(' ');
    out.push_str(kind);
    // The size right-aligned in 10 columns after the kind's 7: the columns of `{:<7} {:>10}`.
    let at = out.len();
    crate::units::size_into(out, vma_size(v));
    let pad = 7usize.saturating_sub(kind.len()) + 1 + 10usize.saturating_sub(out.len() - at);
    out.insert_str(at, &"                    "[..pad.min(20)]);
    if let Some(name) = names.get(v).or_else(|| kind_label(v)) {
        let name = name.trim_end();
        if !name.is_empty() {
            out.push(' ');
            out.push_str(name);
        }
    }
    out.push('\n');
}

impl ProcText {
    /// The RSS counters, with their change since the last line that showed them.
    fn rss_line(&mut self, style: &Style, label: &str, rss: Rss) -> String {
        let mut out = String::new();
        self.rss_line_into(style, &mut out, label, rss);
        out
    }

    /// [`ProcText::rss_line`], appended to `out`.
    fn rss_line_into(&mut self, style: &Style, out: &mut String, label: &str, rss: Rss) {
        style.open(out, Paint::Dim);
        out.push_str("      ");
        out.push_str(label);
        for (name, f) in [
            (" anon ", (|r: &Rss| r.anon) as fn(&Rss) -> u64),
            (", file ", |r: &Rss| r.file),
            (", shmem ", |r: &Rss| r.shmem),
        ] {
            out.push_str(name);
            crate::units::size_into(out, f(&rss));
            if let Some(last) = self.last_rss.filter(|last| f(last) != f(&rss)) {
                out.push_str(" (");
                crate::units::delta_into(out, f(&last), f(&rss));
                out.push(')');
            }
        }
        out.push('\n');
        style.close(out);
        self.last_rss = Some(rss);
    }
}

fn hex(a: u64) -> String {
    format!("{a:x}")
}

/// An address, or `unknown` where the source could not read it.
fn known_hex(a: Option<u64>) -> String {
    a.map_or_else(|| "unknown".to_string(), |a| format!("{a:#x}"))
}

fn perms_change(before: &Vma, after: &Vma) -> String {
    let (b, a) = (perms(before), perms(after));
    if a == b {
        a
    } else {
        format!("{b}->{a}")
    }
}

/// The address space the trace starts from: at `exec`, or at attach.
#[derive(Serialize)]
struct Start {
    pid: i32,
    /// Where the numbers come from: `module` or `procfs` (not repeated at `fork`).
    #[serde(skip_serializing_if = "str::is_empty")]
    source: &'static str,
    start_brk: u64,
    brk: Option<u64>,
    /// `None` where the source cannot read it (procfs).
    mmap_base: Option<u64>,
    map_count: u64,
    heap_bytes: Option<u64>,
    anon_bytes: u64,
    anon_reserved_bytes: u64,
    rss: Rss,
    vmas: Vec<VmaView>,
    /// The VMA flags the source reads at every call; the `flags` of the VMAs in this
    /// trace name only these.
    vma_flags_known: Vec<&'static str>,
    /// At attach: how many threads the process had.
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    /// At attach, where `brk` is `null` (procfs): why.
    #[serde(skip_serializing_if = "Option::is_none")]
    brk_unknown: Option<&'static str>,
}

/// One JSON line per event. The field names are stable.
// Each is made, serialized and dropped at once: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonEvent {
    Exec(Start),
    /// Attached to a running process (`-p`): the fields of `exec`, and more.
    Attach(Start),
    /// A process followed (`-f`) started another: the fields of `exec`, and more.
    Fork {
        /// The process that started it.
        parent: i32,
        /// The thread that did.
        tid: i32,
        /// `fork`, `vfork` or `clone`.
        how: &'static str,
        /// Whether it shares its parent's address space (`CLONE_VM`).
        shared: bool,
        #[serde(flatten)]
        start: Start,
    },
    /// A process followed (`-f`) may not be read any more: not shown from here on.
    Unreadable {
        pid: i32,
    },
    /// A process followed (`-f`) other than the program ended.
    End {
        pid: i32,
        exit_code: Option<i32>,
        signal: Option<i32>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        core_dumped: bool,
    },
    Thread {
        pid: i32,
        tid: i32,
        parent: i32,
    },
    /// The program makes 32-bit system calls, which are not traced.
    Compat32 {
        tid: i32,
    },
    Syscall {
        step: usize,
        /// When the call was entered, in microseconds since the trace began.
        time_us: u64,
        pid: i32,
        tid: i32,
        syscall: &'static str,
        args: Vec<u64>,
        call: String,
        ret: Option<i64>,
        errno: Option<String>,
        start_brk: u64,
        brk_before: Option<u64>,
        brk_after: Option<u64>,
        heap_bytes: Option<u64>,
        anon_bytes: Option<u64>,
        anon_reserved_bytes: Option<u64>,
        map_count: Option<u64>,
        rss_before: Rss,
        rss: Option<Rss>,
        removed: Vec<VmaView>,
        added: Vec<VmaView>,
        /// What changed in the address space since the process's previous event that showed
        /// it (its previous call's exit, or its start), before this call was entered: what no
        /// call traced did (a stack that grew, `mlock`, another process sharing it).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        removed_before: Vec<VmaView>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        added_before: Vec<VmaView>,
        /// With `--stacks`: the caller's frames, innermost first.
        #[serde(skip_serializing_if = "Option::is_none")]
        stack: Option<Vec<crate::stack::Frame>>,
        /// With `--kernel`: the kernel's function graphs.
        #[serde(skip_serializing_if = "Option::is_none")]
        kernel: Option<crate::kgraph::Graphs>,
    },
    /// `--faults`: resident anonymous memory changed, by the code that first touched it.
    Resident {
        pid: i32,
        /// `start`, `before` (first touches since the last call), `after` (a call's own),
        /// `exit` (the last thread's), `ended` (given back).
        when: &'static str,
        /// With `after`: the call.
        #[serde(skip_serializing_if = "Option::is_none")]
        syscall: Option<&'static str>,
        sites: Vec<JsonSite>,
        pages: u64,
        rss_anon_pages: u64,
    },
    Exit {
        pid: i32,
        tid: i32,
        brk: Option<u64>,
        heap_bytes: Option<u64>,
        anon_bytes: Option<u64>,
        rss: Option<Rss>,
        hiwater_rss_bytes: Option<u64>,
    },
}

/// A site's pages in a `resident` event.
#[derive(Serialize)]
struct JsonSite {
    /// Its number in this trace.
    site: u32,
    /// Pages gained (positive) or given back.
    pages: i64,
    /// Why pages no fault explains are resident.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    /// The fault's frames, innermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stack: Vec<crate::stack::Frame>,
}

/// Prints events as JSON lines, one object per event.
#[derive(Default)]
pub struct JsonReport {
    /// Each process's VMA names, by pid.
    names: HashMap<i32, NameCache>,
    /// Each process's VMAs as its last event showed them, by pid.
    last: HashMap<i32, Vec<Vma>>,
}

impl JsonReport {
    /// The JSON line for one event, without its newline.
    pub fn event(&mut self, event: &Event) -> String {
        let mut gap = VmaDiff::default();
        let pid = match event {
            Event::Exec { pid, snap, .. }
            | Event::Attach { pid, snap, .. }
            | Event::Fork { pid, snap, .. } => {
                let names = self.names.entry(*pid).or_default();
                names.reset(*pid);
                self.last.insert(*pid, snap.vmas.clone());
                *pid
            }
            Event::Call(step) => {
                let names = self.names.entry(step.pid).or_default();
                if let Some(after) = &step.after {
                    names.cover(step.tid, &after.vmas);
                }
                if let Some(last) = self.last.get(&step.pid) {
                    gap = VmaDiff::between(last, &step.before.vmas);
                }
                let now = step.after.as_ref().unwrap_or(&step.before);
                self.last.insert(step.pid, now.vmas.clone());
                step.pid
            }
            Event::Resident(c) => c.pid,
            Event::ThreadExit { pid, .. }
            | Event::Thread { pid, .. }
            | Event::Unreadable { pid } => *pid,
            Event::End { pid, .. } => {
                let line = json_event(event, &NameCache::default(), gap);
                self.names.remove(pid);
                self.last.remove(pid);
                return line;
            }
            Event::Compat32 { .. } => 0,
        };
        match self.names.get(&pid) {
            Some(names) => json_event(event, names, gap),
            None => json_event(event, &NameCache::default(), gap),
        }
    }
}

/// The JSON line for one event, with the names in `names`; for a call, `gap` is what changed
/// in its address space since the process's previous event.
fn json_event(event: &Event, names: &NameCache, gap: VmaDiff) -> String {
    let views = |vmas: &[Vma]| {
        vmas.iter()
            .map(|v| VmaView::new(v, names.get(v)))
            .collect::<Vec<_>>()
    };
    let start = |pid: i32, source: &'static str, snap: &Snapshot, threads: Option<usize>| Start {
        pid,
        source,
        start_brk: snap.summary.start_brk,
        brk: snap.brk(),
        mmap_base: snap.mmap_base(),
        map_count: snap.summary.map_count,
        heap_bytes: snap.heap_bytes(),
        anon_bytes: snap.anon_mapped_bytes(),
        anon_reserved_bytes: snap.anon_reserved_bytes(),
        rss: snap.rss(),
        vmas: views(&snap.vmas),
        vma_flags_known: crate::abi::VMA_FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| snap.vma_flags_known & (1 << i) != 0)
            .map(|(_, f)| *f)
            .collect(),
        threads,
        brk_unknown: threads.and_then(|_| snap.why_unknown(crate::snapshot::Field::Brk)),
    };
    let e = match event {
        Event::Exec { pid, source, snap } => JsonEvent::Exec(start(*pid, source, snap, None)),
        Event::Attach {
            pid,
            source,
            threads,
            snap,
        } => JsonEvent::Attach(start(*pid, source, snap, Some(*threads))),
        Event::Fork {
            pid,
            parent,
            tid,
            how,
            shared,
            snap,
        } => JsonEvent::Fork {
            parent: *parent,
            tid: *tid,
            how: how.name(),
            shared: *shared,
            start: start(*pid, "", snap, None),
        },
        Event::Unreadable { pid } => JsonEvent::Unreadable { pid: *pid },
        Event::End { pid, ending } => {
            let (exit_code, signal, core_dumped) = match *ending {
                Ending::Exited(code) => (Some(code), None, false),
                Ending::Signaled(sig, core) => (None, Some(sig), core),
                Ending::Detached(_) => (None, None, false),
            };
            JsonEvent::End {
                pid: *pid,
                exit_code,
                signal,
                core_dumped,
            }
        }
        Event::Thread { pid, tid, parent } => JsonEvent::Thread {
            pid: *pid,
            tid: *tid,
            parent: *parent,
        },
        Event::Compat32 { tid } => JsonEvent::Compat32 { tid: *tid },
        Event::Call(step) => {
            let diff = step
                .after
                .as_ref()
                .map(|a| VmaDiff::between(&step.before.vmas, &a.vmas))
                .unwrap_or_default();
            let after = step.after.as_ref();
            JsonEvent::Syscall {
                step: step.index,
                time_us: u64::try_from(step.time.as_micros()).unwrap_or(u64::MAX),
                pid: step.pid,
                tid: step.tid,
                syscall: step.call.name(),
                args: step.args.clone(),
                call: step.call.format(&step.args),
                ret: step.ret,
                errno: step.ret.and_then(syscalls::errno_name),
                start_brk: step.before.summary.start_brk,
                brk_before: step.before.brk(),
                brk_after: after.and_then(Snapshot::brk),
                heap_bytes: after.and_then(Snapshot::heap_bytes),
                anon_bytes: after.map(Snapshot::anon_mapped_bytes),
                anon_reserved_bytes: after.map(Snapshot::anon_reserved_bytes),
                map_count: after.map(|a| a.summary.map_count),
                rss_before: step.before.rss(),
                rss: after.map(Snapshot::rss),
                removed: views(&diff.removed),
                added: views(&diff.added),
                removed_before: views(&gap.removed),
                added_before: views(&gap.added),
                stack: step.stack.clone(),
                kernel: step.kernel.clone(),
            }
        }
        Event::Resident(c) => JsonEvent::Resident {
            pid: c.pid,
            when: c.when.name(),
            syscall: match c.when {
                When::After(call) => Some(call.name()),
                _ => None,
            },
            sites: (c.sites.iter())
                .map(|(s, d)| JsonSite {
                    site: s.id,
                    pages: *d,
                    label: s.label.clone(),
                    stack: s.frames.clone(),
                })
                .collect(),
            pages: c.pages,
            rss_anon_pages: c.rss_anon,
        },
        Event::ThreadExit { pid, tid, snap } => JsonEvent::Exit {
            pid: *pid,
            tid: *tid,
            brk: snap.as_ref().and_then(Snapshot::brk),
            heap_bytes: snap.as_ref().and_then(Snapshot::heap_bytes),
            anon_bytes: snap.as_ref().map(Snapshot::anon_mapped_bytes),
            rss: snap.as_ref().map(Snapshot::rss),
            hiwater_rss_bytes: snap.as_ref().map(|s| s.summary.hiwater_rss * page_size()),
        },
    };
    serde_json::to_string(&e).unwrap_or_default()
}
