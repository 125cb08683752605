// SPDX-License-Identifier: GPL-2.0

//! `mmscope trace --faults`: resident anonymous memory by the code that first touched it.
//!
//! Every page fault of the traced processes comes with its address and user stack (the
//! kernel's page-fault software event, [`perf`]). A thread of the tracer drains the rings as
//! they fill and unwinds each sample at once (the stack bytes are then dropped), keeping per
//! page the last fault's stack. At each stop the tracer settles a process: the pages its
//! `/proc/PID/pagemap` shows resident and anonymous (not file-backed or shared, not the shared
//! zero page) are owned by the stack of the fault that made them so, until `munmap`, a `brk`
//! that shrinks, `madvise`, `mremap` or the process's end gives them back. The owned pages are
//! counted against the kernel's own `RssAnon` at every stop; where they differ (pages made
//! resident without a fault of the program's: `MAP_POPULATE`, `mlock`, a transparent huge
//! page's other pages), the whole address space is read again and the pages no fault explains
//! are owned by a label that says why.

pub mod perf;

use crate::snapshot::Snapshot;
use crate::stack::{Frame, SharedUnwinder, Stacks};
use crate::syscalls::MemCall;
use framehop::x86_64::CacheX86_64;
use framehop::FrameAddress;
use perf::Ring;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The pages of a ring, per CPU.
const RING_PAGES: usize = 1024;

/// Who made a page resident.
#[derive(Debug, PartialEq, Eq)]
pub struct Site {
    /// Its number, the same for the same stack of the same process (or the same label).
    pub id: u32,
    /// The stack of the fault, innermost frame first (empty for a label).
    pub frames: Vec<Frame>,
    /// For pages no fault of the program's explains: why they are resident.
    pub label: Option<String>,
}

impl Site {
    /// Where it is, for a reader: its label, or its named functions, outermost last, with
    /// the source line of the innermost where it is known (at most `n` functions).
    pub fn text(&self, n: usize) -> String {
        if let Some(label) = &self.label {
            return format!("[{label}]");
        }
        let named: Vec<&Frame> = self
            .frames
            .iter()
            .filter(|f| f.function.is_some())
            .collect();
        let Some(first) = named.first() else {
            return "[no symbol]".to_string();
        };
        let mut out = String::new();
        for (i, f) in named.iter().take(n).enumerate() {
            if i > 0 {
                out += " <- ";
            }
            out += f.function.as_deref().unwrap_or("?");
            if i == 0 {
                if let (Some(file), Some(line)) = (&first.file, first.line) {
                    let base = file.rsplit('/').next().unwrap_or(file);
                    out += &format!(" ({base}:{line})");
                }
            }
        }
        out
    }

    /// The named functions of its stack, innermost first, or its label.
    pub fn names(&self) -> Vec<String> {
        match &self.label {
            Some(label) => vec![format!("[{label}]")],
            None => {
                let names: Vec<String> = self
                    .frames
                    .iter()
                    .filter_map(|f| f.function.clone())
                    .collect();
                if names.is_empty() {
                    vec!["[no symbol]".to_string()]
                } else {
                    names
                }
            }
        }
    }
}

/// When a process is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Its program started (`execve`) or the tracer attached.
    Start,
    /// A thread entered a memory call: the pages touched since the last stop.
    Before,
    /// A memory call returned: the pages it gave back, and those it made resident itself.
    After(MemCall),
    /// Its last thread is exiting: what it leaves.
    Exit,
    /// It has ended: every page is given back.
    Ended,
}

impl When {
    /// Its name in the JSON trace.
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Before => "before",
            Self::After(_) => "after",
            Self::Exit => "exit",
            Self::Ended => "ended",
        }
    }
}

/// What a settling changed in a process's resident anonymous memory.
#[derive(Clone, Debug)]
pub struct Change {
    /// The process.
    pub pid: i32,
    /// When.
    pub when: When,
    /// Pages gained (positive) or given back (negative), by site.
    pub sites: Vec<(Arc<Site>, i64)>,
    /// The pages owned now.
    pub pages: u64,
    /// The kernel's `RssAnon` now, in pages.
    pub rss_anon: u64,
    /// Faults recorded so far, and those the kernel could not record (a ring was full),
    /// in every process followed.
    pub recorded: u64,
    pub lost: u64,
}

/// What the draining thread shares with the tracer.
#[derive(Default)]
struct Shared {
    /// Each process's unwinder, as the tracer last built it.
    unwinders: HashMap<i32, SharedUnwinder>,
    /// The faults drained and not yet taken: process, page, stack (in `stacks`).
    pending: Vec<(i32, u64, u32)>,
    /// Every distinct unwound stack, by process.
    stacks: Vec<(i32, Vec<FrameAddress>)>,
    /// Their numbers, by process and addresses (each a return address or not).
    stack_ids: HashMap<(i32, Vec<(u64, bool)>), u32>,
    /// Faults the kernel could not record (a ring was full).
    lost: u64,
    /// Faults recorded.
    samples: u64,
}

/// The rings and the unwinding state, drained by either thread.
struct Drain {
    rings: Vec<Ring>,
    cache: CacheX86_64,
    depth: usize,
    shared: Shared,
}

impl Drain {
    fn drain(&mut self) {
        let Self {
            rings,
            cache,
            depth,
            shared,
        } = self;
        for ring in rings.iter_mut() {
            shared.lost += ring.drain(&mut |s| {
                shared.samples += 1;
                let page = s.addr & !(crate::snapshot::page_size() - 1);
                let addrs = match (s.regs, shared.unwinders.get(&s.pid)) {
                    (Some((ip, sp, bp)), Some(unwinder)) => {
                        let stack = s.stack;
                        let mut read = |addr: u64| -> Result<u64, ()> {
                            let at = addr.checked_sub(sp).ok_or(())? as usize;
                            let b = stack.get(at..at + 8).ok_or(())?;
                            Ok(u64::from_ne_bytes(b.try_into().map_err(|_| ())?))
                        };
                        crate::stack::unwind(unwinder, cache, (ip, sp, bp), *depth, &mut read)
                    }
                    (Some((ip, ..)), None) => vec![FrameAddress::InstructionPointer(ip)],
                    (None, _) => Vec::new(),
                };
                let key: Vec<(u64, bool)> = addrs
                    .iter()
                    .map(|f| match f {
                        FrameAddress::InstructionPointer(a) => (*a, false),
                        FrameAddress::ReturnAddress(a) => (a.get(), true),
                    })
                    .collect();
                let next = shared.stacks.len() as u32;
                let id = *shared.stack_ids.entry((s.pid, key)).or_insert_with(|| {
                    shared.stacks.push((s.pid, addrs));
                    next
                });
                shared.pending.push((s.pid, page, id));
            });
        }
    }
}

/// One process's attribution.
#[derive(Default, Clone)]
struct ProcFaults {
    /// Resident anonymous pages, by address: their site.
    owners: BTreeMap<u64, u32>,
    /// The last fault's stack of each page touched but not (yet) resident and anonymous.
    touched: BTreeMap<u64, u32>,
    /// The process's `/proc/PID/pagemap`, for the address space it has now.
    pagemap: Option<Arc<File>>,
}

/// The faults of the processes a tracer follows, and who made their pages resident.
pub struct Faults {
    drain: Arc<Mutex<Drain>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The process whose address space each process uses (itself, or for a `vfork` child
    /// its parent's).
    mm_of: HashMap<i32, i32>,
    procs: HashMap<i32, ProcFaults>,
    /// Every site, by number.
    sites: Vec<Arc<Site>>,
    /// Sites by unwound stack (its number in the drain's table).
    by_stack: HashMap<u32, u32>,
    /// Sites by label.
    by_label: HashMap<String, u32>,
    /// Sites by their frames' functions, files and lines.
    by_frames: HashMap<Vec<FrameKey>, u32>,
    /// The shared zero page's frame number, if this process may read frame numbers.
    zero_pfn: Option<u64>,
    /// Whether the faults the kernel takes on the programs' behalf are recorded.
    pub kernel: bool,
}

/// What tells a frame from another for a reader: function, file mapped, source file, line.
type FrameKey = (Option<String>, Option<String>, Option<String>, Option<u32>);

/// Bits of a `/proc/PID/pagemap` entry.
const PM_PRESENT: u64 = 1 << 63;
const PM_FILE: u64 = 1 << 61;
const PM_EXCLUSIVE: u64 = 1 << 56;
const PM_PFN: u64 = (1 << 55) - 1;

impl Faults {
    /// Records the page faults of process `pid` and every task it starts from now on (the
    /// threads listed in `tids` too: a process attached to), from its next `execve` on with
    /// `on_exec`; stacks of at most `depth` frames.
    pub fn open(pid: i32, tids: &[i32], on_exec: bool, depth: usize) -> io::Result<Self> {
        // SAFETY: sysconf has no memory-safety requirements.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as i32;
        let mut rings = Vec::new();
        let mut kernel = true;
        let tasks: Vec<i32> = if tids.is_empty() {
            vec![pid]
        } else {
            tids.to_vec()
        };
        for &task in &tasks {
            for cpu in 0..cpus {
                let mut pages = RING_PAGES;
                let ring = loop {
                    match Ring::open(task, cpu, on_exec, kernel, pages) {
                        Ok(r) => break Some(r),
                        // An offline CPU.
                        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => break None,
                        // Not allowed to see the kernel's side: the program's own faults.
                        Err(e) if e.raw_os_error() == Some(libc::EACCES) && kernel => {
                            kernel = false
                        }
                        // Locked memory beyond this user's limit: a smaller ring.
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) && pages > 8 => pages /= 2,
                        Err(e) => return Err(e),
                    }
                };
                rings.extend(ring);
            }
        }
        let drain = Arc::new(Mutex::new(Drain {
            rings,
            cache: CacheX86_64::new(),
            depth,
            shared: Shared::default(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let fds: Vec<i32> = lock(&drain).rings.iter().map(Ring::fd).collect();
        let thread = {
            let drain = Arc::clone(&drain);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("mmscope-faults".into())
                .spawn(move || {
                    let mut polls: Vec<libc::pollfd> = fds
                        .iter()
                        .map(|&fd| libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        })
                        .collect();
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: `polls` is a live array of as many pollfd as passed.
                        unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as _, 50) };
                        lock(&drain).drain();
                    }
                })?
        };
        Ok(Self {
            drain,
            stop,
            thread: Some(thread),
            mm_of: HashMap::new(),
            procs: HashMap::new(),
            sites: Vec::new(),
            by_stack: HashMap::new(),
            by_label: HashMap::new(),
            by_frames: HashMap::new(),
            zero_pfn: zero_pfn(),
            kernel,
        })
    }

    /// How many faults were recorded, and how many the kernel could not record.
    pub fn counts(&self) -> (u64, u64) {
        let d = lock(&self.drain);
        (d.shared.samples, d.shared.lost)
    }

    /// Process `pid` has a new address space (`execve`), or is seen for the first time: what
    /// it had is forgotten.
    pub fn exec(&mut self, pid: i32, stacks: &mut Stacks) {
        self.absorb(stacks);
        self.mm_of.remove(&pid);
        self.procs.insert(pid, ProcFaults::default());
    }

    /// Process `child` was started by `parent`: with a copy of its address space (its pages
    /// keep their sites: the parent's code made them resident), or sharing it (`shared`).
    pub fn fork(&mut self, parent: i32, child: i32, shared: bool, stacks: &mut Stacks) {
        self.absorb(stacks);
        let parent = self.mm(parent);
        if shared {
            self.mm_of.insert(child, parent);
        } else {
            let mut copy = self.procs.get(&parent).cloned().unwrap_or_default();
            copy.pagemap = None;
            self.procs.insert(child, copy);
        }
    }

    /// Process `pid` ended: its pages are given back.
    pub fn end(&mut self, pid: i32, stacks: &mut Stacks) -> Option<Change> {
        self.absorb(stacks);
        if self.mm_of.remove(&pid).is_some() {
            return None;
        }
        let p = self.procs.remove(&pid)?;
        let mut delta: HashMap<u32, i64> = HashMap::new();
        for site in p.owners.values() {
            *delta.entry(*site).or_default() -= 1;
        }
        let (recorded, lost) = self.counts();
        (!delta.is_empty()).then(|| Change {
            pid,
            when: When::Ended,
            sites: self.delta(delta),
            pages: 0,
            rss_anon: 0,
            recorded,
            lost,
        })
    }

    /// The address space process `pid` uses.
    fn mm(&self, pid: i32) -> i32 {
        self.mm_of.get(&pid).copied().unwrap_or(pid)
    }

    /// Moves the faults drained so far to the pages of their processes; each new stack
    /// becomes a site, symbolized with `stacks` (the files its process maps now).
    fn absorb(&mut self, stacks: &mut Stacks) {
        let (pending, new_stacks) = {
            let mut d = lock(&self.drain);
            d.drain();
            let pending = std::mem::take(&mut d.shared.pending);
            let new: Vec<(u32, i32, Vec<FrameAddress>)> = (self.by_stack.len()
                ..d.shared.stacks.len())
                .map(|id| {
                    let (p, addrs) = &d.shared.stacks[id];
                    (id as u32, *p, addrs.clone())
                })
                .collect();
            (pending, new)
        };
        for (id, p, addrs) in new_stacks {
            let frames = stacks.frames(self.mm(p), &addrs);
            // Faults at other instructions of the same lines of the same functions are the
            // same site.
            let key: Vec<FrameKey> = frames
                .iter()
                .map(|f| (f.function.clone(), f.module.clone(), f.file.clone(), f.line))
                .collect();
            let next = self.sites.len() as u32;
            let site = *self.by_frames.entry(key).or_insert(next);
            if site == next {
                self.sites.push(Arc::new(Site {
                    id: site,
                    frames,
                    label: None,
                }));
            }
            self.by_stack.insert(id, site);
        }
        // Only the processes followed: those not followed still inherit the event.
        for (p, page, id) in pending {
            let m = self.mm(p);
            if let (Some(&site), Some(proc)) = (self.by_stack.get(&id), self.procs.get_mut(&m)) {
                proc.touched.insert(page, site);
            }
        }
    }

    /// Settles process `pid` (thread `tid` stopped) at a stop, its address space `snap`: the
    /// pages given back by the call that returned (`when`), those made resident since the
    /// last stop, checked against the kernel's `RssAnon`. `stacks` unwinds and symbolizes.
    pub fn settle(
        &mut self,
        pid: i32,
        tid: i32,
        snap: &Snapshot,
        when: When,
        call: Option<(&[u64], i64, Option<u64>)>,
        stacks: &mut Stacks,
    ) -> Option<Change> {
        let mm = self.mm(pid);
        // The unwinder the draining thread uses for this process's faults from now on.
        let unwinder = stacks.unwinder(mm, tid, &snap.vmas);
        {
            let mut d = lock(&self.drain);
            d.shared.unwinders.insert(mm, unwinder);
            for (&p, &m) in &self.mm_of {
                if m == mm {
                    let u = d.shared.unwinders.get(&mm).cloned();
                    if let Some(u) = u {
                        d.shared.unwinders.insert(p, u);
                    }
                }
            }
        }
        self.absorb(stacks);
        let mut delta: HashMap<u32, i64> = HashMap::new();
        let zero_pfn = self.zero_pfn;
        let page_size = crate::snapshot::page_size();
        let p = self.procs.entry(mm).or_default();
        if p.pagemap.is_none() {
            p.pagemap = File::open(format!("/proc/{mm}/pagemap")).ok().map(Arc::new);
        }
        let pagemap = p.pagemap.clone()?;
        let resident = |addr: u64| -> bool { is_anon(read_entry(&pagemap, addr), zero_pfn) };

        // What the call that returned gave back.
        if let (When::After(c), Some((args, ret, brk_before))) = (when, call) {
            let arg = |i: usize| args.get(i).copied().unwrap_or(0);
            let up = |a: u64| a.saturating_add(page_size - 1) & !(page_size - 1);
            let mut gone: Vec<(u64, u64)> = Vec::new();
            let mut check: Vec<(u64, u64)> = Vec::new();
            match c {
                MemCall::Munmap if ret == 0 => gone.push((arg(0), up(arg(0) + arg(1)))),
                MemCall::Brk => {
                    if let Some(before) = brk_before.filter(|&b| (ret as u64) < b) {
                        gone.push((up(ret as u64), up(before)));
                    }
                }
                MemCall::Madvise if ret == 0 => check.push((arg(0), up(arg(0) + arg(1)))),
                MemCall::Mmap if ret >= 0 => check.push((ret as u64, up(ret as u64 + arg(1)))),
                MemCall::Mremap if ret >= 0 => {
                    let (old, old_len, new_len, new) = (arg(0), up(arg(1)), up(arg(2)), ret as u64);
                    let moved: Vec<(u64, u32)> = p
                        .owners
                        .range(old..old + old_len)
                        .map(|(&a, &s)| (a, s))
                        .collect();
                    for (a, s) in moved {
                        p.owners.remove(&a);
                        if a - old < new_len {
                            p.owners.insert(new + (a - old), s);
                        } else {
                            *delta.entry(s).or_default() -= 1;
                        }
                    }
                }
                _ => {}
            }
            for (start, end) in gone {
                let pages: Vec<u64> = p.owners.range(start..end).map(|(&a, _)| a).collect();
                for a in pages {
                    if let Some(s) = p.owners.remove(&a) {
                        *delta.entry(s).or_default() -= 1;
                    }
                }
                let touched: Vec<u64> = p.touched.range(start..end).map(|(&a, _)| a).collect();
                for a in touched {
                    p.touched.remove(&a);
                }
            }
            for (start, end) in check {
                let pages: Vec<u64> = p.owners.range(start..end).map(|(&a, _)| a).collect();
                for a in pages {
                    if !resident(a) {
                        if let Some(s) = p.owners.remove(&a) {
                            *delta.entry(s).or_default() -= 1;
                        }
                    }
                }
            }
        }

        // The pages touched since: those now resident and anonymous are their fault's. Their
        // entries are read a run of neighbours at a time.
        let touched: Vec<(u64, u32)> = p.touched.iter().map(|(&a, &s)| (a, s)).collect();
        let mut now: HashMap<u64, bool> = HashMap::with_capacity(touched.len());
        let mut i = 0;
        while i < touched.len() {
            let start = touched[i].0;
            let mut end = start + page_size;
            while i + 1 < touched.len() && touched[i + 1].0 == end && end - start < (2 << 20) {
                i += 1;
                end += page_size;
            }
            let mut a = start;
            scan_entries(&pagemap, start, end, &mut |entry| {
                now.insert(a, is_anon(entry, zero_pfn));
                a += page_size;
            });
            i += 1;
        }
        for (a, s) in touched {
            if p.owners.contains_key(&a) {
                p.touched.remove(&a);
            } else if now.get(&a).copied().unwrap_or(false) {
                p.touched.remove(&a);
                p.owners.insert(a, s);
                *delta.entry(s).or_default() += 1;
            } else if !snap.vmas.iter().any(|v| v.start <= a && a < v.end) {
                p.touched.remove(&a);
            }
        }

        // Checked against the kernel's count; where it differs, the whole address space.
        let rss_anon = snap.rss().anon / page_size;
        if p.owners.len() as u64 != rss_anon {
            let mut found: BTreeMap<u64, ()> = BTreeMap::new();
            for v in &snap.vmas {
                scan(&pagemap, v.start, v.end, zero_pfn, &mut |a| {
                    found.insert(a, ());
                });
            }
            let gone: Vec<u64> = p
                .owners
                .keys()
                .filter(|a| !found.contains_key(a))
                .copied()
                .collect();
            for a in gone {
                if let Some(s) = p.owners.remove(&a) {
                    *delta.entry(s).or_default() -= 1;
                }
            }
            let mut unexplained = Vec::new();
            for &a in found.keys() {
                if p.owners.contains_key(&a) {
                    continue;
                }
                match p.touched.remove(&a) {
                    Some(s) => {
                        p.owners.insert(a, s);
                        *delta.entry(s).or_default() += 1;
                    }
                    None => unexplained.push(a),
                }
            }
            if !unexplained.is_empty() {
                // A transparent huge page: one fault, and every page of it resident.
                let huge = 2 << 20;
                let label = match when {
                    When::Start => "resident when the trace began".to_string(),
                    When::After(c) => format!("made resident by {} itself", c.name()),
                    When::Before | When::Exit | When::Ended => {
                        "made resident with no fault of the program's".to_string()
                    }
                };
                let mut labelled = None;
                for a in unexplained {
                    // A whole aligned 2 MiB resident after a fault in it.
                    let block = a & !(huge - 1);
                    let whole = found.range(block..block + huge).count() as u64 == huge / page_size;
                    let near = p
                        .owners
                        .range(block..block + huge)
                        .map(|(_, &s)| s)
                        .filter(|_| whole)
                        .find(|&s| self.sites[s as usize].label.is_none());
                    let s = match near {
                        Some(s) => s,
                        None => *labelled.get_or_insert_with(|| {
                            label_site(&mut self.sites, &mut self.by_label, &label)
                        }),
                    };
                    p.owners.insert(a, s);
                    *delta.entry(s).or_default() += 1;
                }
            }
        }
        let pages = p.owners.len() as u64;
        delta.retain(|_, d| *d != 0);
        let (recorded, lost) = self.counts();
        (!delta.is_empty()).then(|| Change {
            pid,
            when,
            sites: self.delta(delta),
            pages,
            rss_anon,
            recorded,
            lost,
        })
    }

    /// A change by site, largest first.
    fn delta(&self, delta: HashMap<u32, i64>) -> Vec<(Arc<Site>, i64)> {
        let mut out: Vec<(Arc<Site>, i64)> = delta
            .into_iter()
            .map(|(s, d)| (Arc::clone(&self.sites[s as usize]), d))
            .collect();
        out.sort_by(|a, b| b.1.abs().cmp(&a.1.abs()).then(a.0.id.cmp(&b.0.id)));
        out
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The site of a label, made the first time.
fn label_site(sites: &mut Vec<Arc<Site>>, by_label: &mut HashMap<String, u32>, label: &str) -> u32 {
    *by_label.entry(label.to_string()).or_insert_with(|| {
        let id = sites.len() as u32;
        sites.push(Arc::new(Site {
            id,
            frames: Vec::new(),
            label: Some(label.to_string()),
        }));
        id
    })
}

fn lock(m: &Mutex<Drain>) -> MutexGuard<'_, Drain> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pagemap entry of the page at `addr` (0 if it cannot be read).
fn read_entry(pagemap: &File, addr: u64) -> u64 {
    let mut b = [0u8; 8];
    let at = addr / crate::snapshot::page_size() * 8;
    match pagemap.read_exact_at(&mut b, at) {
        Ok(()) => u64::from_ne_bytes(b),
        Err(_) => 0,
    }
}

/// Whether a pagemap entry is a resident anonymous page of the process's own (what `RssAnon`
/// counts): present, not a file's or shared memory's, and not the shared zero page (which a
/// read fault maps and which is nobody's). Without frame numbers (not root), a page mapped
/// once only.
fn is_anon(entry: u64, zero_pfn: Option<u64>) -> bool {
    if entry & PM_PRESENT == 0 || entry & PM_FILE != 0 {
        return false;
    }
    match zero_pfn {
        Some(zero) => entry & PM_PFN != zero,
        None => entry & PM_EXCLUSIVE != 0,
    }
}

/// Calls `found` with each resident anonymous page in `start..end`.
fn scan(pagemap: &File, start: u64, end: u64, zero_pfn: Option<u64>, found: &mut dyn FnMut(u64)) {
    let page = crate::snapshot::page_size();
    let mut a = start;
    scan_entries(pagemap, start, end, &mut |entry| {
        if is_anon(entry, zero_pfn) {
            found(a);
        }
        a += page;
    });
}

/// Calls `entry` with the pagemap entry of each page in `start..end`, in order (as many as
/// can be read).
fn scan_entries(pagemap: &File, start: u64, end: u64, entry: &mut dyn FnMut(u64)) {
    let page = crate::snapshot::page_size();
    let mut buf = vec![0u8; 8 * 4096];
    let mut at = start;
    while at < end {
        let n = (((end - at) / page) as usize).min(4096);
        let b = &mut buf[..n * 8];
        if pagemap.read_exact_at(b, at / page * 8).is_err() {
            return;
        }
        for e in b.chunks_exact(8) {
            entry(u64::from_ne_bytes(e.try_into().unwrap_or_default()));
        }
        at += n as u64 * page;
    }
}

/// The shared zero page's frame number: a page of this process's own that was only read,
/// as its pagemap shows it (`None` where frame numbers are hidden, without
/// `CAP_SYS_ADMIN`).
fn zero_pfn() -> Option<u64> {
    let page = crate::snapshot::page_size() as usize;
    // SAFETY: A new private anonymous mapping at an address the kernel chooses; checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `p` is a readable page of this process: the read maps the zero page.
    unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
    let entry = File::open("/proc/self/pagemap")
        .ok()
        .map(|f| read_entry(&f, p as u64));
    // SAFETY: Unmaps the page mapped above, which nothing refers to any more.
    unsafe { libc::munmap(p, page) };
    entry
        .filter(|e| e & PM_PRESENT != 0)
        .map(|e| e & PM_PFN)
        .filter(|&pfn| pfn != 0)
}
