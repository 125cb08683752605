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
const RING_PAGES: usize = 2048;

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
    /// Stops so far at which the pages attributed were compared with the kernel's `RssAnon`,
    /// and those at which they differed (threads of the process ran meanwhile).
    pub checks: u64,
    pub unequal: u64,
    /// Whether the faults the kernel takes in the programs' memory during their system calls
    /// are recorded (else their pages are labelled).
    pub kernel: bool,
}

/// What the draining thread shares with the tracer.
#[derive(Default)]
struct Shared {
    /// Each process's unwinder, as the tracer last built it.
    unwinders: HashMap<i32, SharedUnwinder>,
    /// The faults drained and not yet taken: time, process, page, stack (in `stacks`).
    pending: Vec<(u64, i32, u64, u32)>,
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

/// A fault copied out of its ring, to be unwound.
struct Copied {
    pid: i32,
    time: u64,
    addr: u64,
    regs: Option<(u64, u64, u64)>,
    stack: Vec<u8>,
}

impl Drain {
    /// Empties every ring first (copying each fault's stack, so that the kernel can reuse
    /// the space at once), then unwinds what it copied.
    fn drain(&mut self) {
        let Self {
            rings,
            cache,
            depth,
            shared,
        } = self;
        let mut copied = Vec::new();
        for ring in rings.iter_mut() {
            shared.lost += ring.drain(&mut |s| {
                copied.push(Copied {
                    pid: s.pid,
                    time: s.time,
                    addr: s.addr,
                    regs: s.regs,
                    stack: s.stack.to_vec(),
                })
            });
        }
        for s in copied {
            shared.samples += 1;
            let page = s.addr & !(crate::snapshot::page_size() - 1);
            let addrs = match (s.regs, shared.unwinders.get(&s.pid)) {
                (Some((ip, sp, bp)), Some(unwinder)) => {
                    let stack = &s.stack;
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
            shared.pending.push((s.time, s.pid, page, id));
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
    /// The events of the threads besides the first, which write to its rings.
    _events: Vec<std::os::fd::OwnedFd>,
    /// Stops at which the pages attributed were compared with `RssAnon`, and those at which
    /// they differed.
    checks: u64,
    unequal: u64,
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
    /// The frame numbers of the shared zero page and the huge zero page (where there are
    /// transparent huge pages), if this process may read frame numbers.
    zero_pfns: Option<ZeroPfns>,
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
    /// Records the page faults of process `pid` and every thread it starts from now on (with
    /// `processes`, every process too; the threads listed in `tids`: a process attached to),
    /// from its next `execve` on with `on_exec`; stacks of at most `depth` frames. One ring per
    /// CPU: the events of the other threads listed write to it.
    pub fn open(
        pid: i32,
        tids: &[i32],
        on_exec: bool,
        processes: bool,
        depth: usize,
    ) -> io::Result<Self> {
        // SAFETY: sysconf has no memory-safety requirements.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as i32;
        let mut rings = Vec::new();
        let mut events = Vec::new();
        let mut how = perf::How {
            on_exec,
            kernel: true,
            processes,
        };
        let (first, others) = match tids.split_first() {
            Some((&first, others)) => (first, others),
            None => (pid, &[][..]),
        };
        for cpu in 0..cpus {
            let mut pages = RING_PAGES;
            let ring = loop {
                match Ring::open(first, cpu, how, pages) {
                    Ok(r) => break Some(r),
                    // An offline CPU.
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => break None,
                    // Not allowed to see the kernel's side: the program's own faults.
                    Err(e) if e.raw_os_error() == Some(libc::EACCES) && how.kernel => {
                        how.kernel = false
                    }
                    // Locked memory beyond this user's limit: a smaller ring.
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) && pages > 1 => pages /= 2,
                    Err(e) => return Err(e),
                }
            };
            let Some(ring) = ring else {
                continue;
            };
            for &task in others {
                match perf::event(task, cpu, how, pages) {
                    Ok(fd) => {
                        ring.take_output_of(&fd)?;
                        events.push(fd);
                    }
                    // A thread that has exited meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(e),
                }
            }
            rings.push(ring);
        }
        let kernel = how.kernel;
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
                        // A ring whose tasks have all ended says so at once, every time: it
                        // is not waited on any more (poll skips a negative descriptor).
                        for p in &mut polls {
                            if p.revents & libc::POLLHUP != 0 {
                                p.fd = -1;
                            }
                        }
                    }
                })?
        };
        Ok(Self {
            drain,
            stop,
            thread: Some(thread),
            _events: events,
            checks: 0,
            unequal: 0,
            mm_of: HashMap::new(),
            procs: HashMap::new(),
            sites: Vec::new(),
            by_stack: HashMap::new(),
            by_label: HashMap::new(),
            by_frames: HashMap::new(),
            zero_pfns: zero_pfns(),
            kernel,
        })
    }

    /// How many faults were recorded, and how many the kernel could not record.
    pub fn counts(&self) -> (u64, u64) {
        let d = lock(&self.drain);
        (d.shared.samples, d.shared.lost)
    }

    /// Process `pid` has a new address space (`execve`), or is seen for the first time: what
    /// it had is given back.
    pub fn exec(&mut self, pid: i32, stacks: &mut Stacks) -> Option<Change> {
        self.absorb(stacks);
        let change = self.give_back(pid);
        self.mm_of.remove(&pid);
        self.procs.insert(pid, ProcFaults::default());
        change
    }

    /// Process `child` was started by `parent`: with a copy of its address space (its pages
    /// keep their sites: the parent's code made them resident; the copy is the child's first
    /// change), or sharing it (`shared`).
    pub fn fork(
        &mut self,
        parent: i32,
        child: i32,
        shared: bool,
        stacks: &mut Stacks,
    ) -> Option<Change> {
        self.absorb(stacks);
        let parent = self.mm(parent);
        if shared {
            self.mm_of.insert(child, parent);
            return None;
        }
        let mut copy = self.procs.get(&parent).cloned().unwrap_or_default();
        copy.pagemap = None;
        copy.touched.clear();
        let mut delta: HashMap<u32, i64> = HashMap::new();
        for site in copy.owners.values() {
            *delta.entry(*site).or_default() += 1;
        }
        let pages = copy.owners.len() as u64;
        self.procs.insert(child, copy);
        self.change(child, When::Start, delta, pages, pages)
    }

    /// Process `pid` ended: its pages are given back.
    pub fn end(&mut self, pid: i32, stacks: &mut Stacks) -> Option<Change> {
        self.absorb(stacks);
        lock(&self.drain).shared.unwinders.remove(&pid);
        if self.mm_of.remove(&pid).is_some() {
            return None;
        }
        let change = self.give_back(pid);
        self.procs.remove(&pid);
        change
    }

    /// Every page of process `pid` given back (its address space is gone).
    fn give_back(&mut self, pid: i32) -> Option<Change> {
        let p = self.procs.get_mut(&pid)?;
        let mut delta: HashMap<u32, i64> = HashMap::new();
        for site in std::mem::take(&mut p.owners).into_values() {
            *delta.entry(site).or_default() -= 1;
        }
        self.change(pid, When::Ended, delta, 0, 0)
    }

    /// The change `delta` of process `pid`, if there is one, if its `pages` differ from
    /// `rss_anon`, or at its exit.
    fn change(
        &self,
        pid: i32,
        when: When,
        mut delta: HashMap<u32, i64>,
        pages: u64,
        rss_anon: u64,
    ) -> Option<Change> {
        delta.retain(|_, d| *d != 0);
        // The exit is always reported: what the process leaves.
        if delta.is_empty() && pages == rss_anon && when != When::Exit {
            return None;
        }
        let (recorded, lost) = self.counts();
        Some(Change {
            pid,
            when,
            sites: self.delta(delta),
            pages,
            rss_anon,
            recorded,
            lost,
            checks: self.checks,
            unequal: self.unequal,
            kernel: self.kernel,
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
            let mut pending = std::mem::take(&mut d.shared.pending);
            // In the order they happened: the rings are per CPU, and a page's last fault
            // (a write after a read) is the one that made it resident.
            pending.sort_by_key(|&(time, ..)| time);
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
        for (_, p, page, id) in pending {
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
        let zero = self.zero_pfns.clone();
        let zero_pfn = zero.as_ref();
        let page_size = crate::snapshot::page_size();
        let p = self.procs.entry(mm).or_default();
        if p.pagemap.is_none() {
            p.pagemap = File::open(format!("/proc/{mm}/pagemap")).ok().map(Arc::new);
        }
        let pagemap = p.pagemap.clone()?;
        // Only private mappings hold anonymous pages (not a file's shared pages, shared memory,
        // the vDSO's data or the device's).
        let private: Vec<(u64, u64)> = snap
            .vmas
            .iter()
            .filter(|v| may_hold_anon(v))
            .map(|v| (v.start, v.end))
            .collect();
        let in_private = |a: u64| private.iter().any(|&(s, e)| s <= a && a < e);
        let resident = |addr: u64| -> bool {
            in_private(addr) && is_anon(read_entry(&pagemap, addr), zero_pfn)
        };

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
        let mut now: HashMap<u64, u64> = HashMap::with_capacity(touched.len());
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
                now.insert(a, entry);
                a += page_size;
            });
            i += 1;
        }
        for (a, s) in touched {
            let entry = now.get(&a).copied().unwrap_or(0);
            if p.owners.contains_key(&a) {
                p.touched.remove(&a);
            } else if in_private(a) && is_anon(entry, zero_pfn) {
                p.touched.remove(&a);
                p.owners.insert(a, s);
                *delta.entry(s).or_default() += 1;
            } else if entry & PM_PRESENT != 0
                || !snap.vmas.iter().any(|v| v.start <= a && a < v.end)
            {
                // Resident and not anonymous (a file's page, the zero page): if it becomes
                // anonymous, that is another fault. Or its mapping is gone.
                p.touched.remove(&a);
            }
        }

        // Checked against the kernel's count; where it differs, the whole address space.
        let rss_anon = snap.rss().anon / page_size;
        if p.owners.len() as u64 != rss_anon {
            let mut found: BTreeMap<u64, ()> = BTreeMap::new();
            for &(start, end) in &private {
                scan(&pagemap, start, end, zero_pfn, &mut |a| {
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
        self.checks += 1;
        if pages != rss_anon {
            self.unequal += 1;
        }
        self.change(pid, when, delta, pages, rss_anon)
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
fn is_anon(entry: u64, zero: Option<&ZeroPfns>) -> bool {
    if entry & PM_PRESENT == 0 || entry & PM_FILE != 0 {
        return false;
    }
    match zero {
        Some(zero) => !zero.contains(entry & PM_PFN),
        None => entry & PM_EXCLUSIVE != 0,
    }
}

/// Whether a VMA may hold anonymous pages: a private mapping of memory or of a file (whose
/// written pages are copies), not shared, not the vDSO's or the device's.
fn may_hold_anon(v: &crate::abi::Vma) -> bool {
    use crate::abi::kind;
    matches!(v.kind, kind::ANON | kind::HEAP | kind::STACK | kind::FILE)
        && v.flags & crate::abi::MMSCOPE_VMA_MAYSHARE == 0
}

/// The frame numbers of the zero pages: the shared zero page's, and the huge zero page's
/// (a run of 512 frames) where there is one.
#[derive(Clone, Debug)]
struct ZeroPfns {
    small: u64,
    huge: Option<u64>,
}

impl ZeroPfns {
    fn contains(&self, pfn: u64) -> bool {
        pfn == self.small || self.huge.is_some_and(|h| h <= pfn && pfn < h + 512)
    }
}

/// Calls `found` with each resident anonymous page in `start..end`.
fn scan(pagemap: &File, start: u64, end: u64, zero: Option<&ZeroPfns>, found: &mut dyn FnMut(u64)) {
    let page = crate::snapshot::page_size();
    let mut a = start;
    scan_entries(pagemap, start, end, &mut |entry| {
        if is_anon(entry, zero) {
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

/// The zero pages' frame numbers: a page of this process's own that was only read, as its
/// pagemap shows it, and the first page of an aligned 2 MiB that was only read after
/// `MADV_HUGEPAGE` (the huge zero page, where the kernel has transparent huge pages and uses
/// it). `None` where frame numbers are hidden (without `CAP_SYS_ADMIN`).
fn zero_pfns() -> Option<ZeroPfns> {
    let small = read_only_pfn(crate::snapshot::page_size() as usize, false)?;
    let huge = read_only_pfn(4 << 20, true).filter(|&p| p != small);
    Some(ZeroPfns {
        small,
        huge: huge.map(|p| p & !511),
    })
}

/// The frame number of the first page of a new private anonymous mapping of `len` bytes
/// (from its first 2 MiB boundary, after `MADV_HUGEPAGE`, with `huge`) that was only read.
fn read_only_pfn(len: usize, huge: bool) -> Option<u64> {
    // SAFETY: A new private anonymous mapping at an address the kernel chooses; checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let mut at = p as usize;
    if huge {
        at = (at + (2 << 20) - 1) & !((2 << 20) - 1);
        // SAFETY: Advice on the mapping above; the result does not matter.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
    }
    // SAFETY: `at` is inside the readable mapping above: the read maps a zero page.
    unsafe { std::ptr::read_volatile(at as *const u8) };
    let entry = File::open("/proc/self/pagemap")
        .ok()
        .map(|f| read_entry(&f, at as u64));
    // SAFETY: Unmaps the mapping above, which nothing refers to any more.
    unsafe { libc::munmap(p, len) };
    entry
        .filter(|e| e & PM_PRESENT != 0)
        .map(|e| e & PM_PFN)
        .filter(|&pfn| pfn != 0)
}
