// SPDX-License-Identifier: GPL-2.0

//! `mmscope trace --kernel`: the kernel functions each memory call ran, and the page-fault path
//! of the first touches between the calls, from ftrace's function-graph tracer.
//!
//! The tracer gets an instance of its own (`instances/mmscope-PID` in tracefs): its own ring
//! buffer and options, and `set_ftrace_pid` set to the program's tasks (`function-fork` adds
//! every task they start). Two settings are the kernel's, not an instance's
//! (`kernel/trace/ftrace.c`): `set_graph_function`, where the graphs start (each traced
//! memory call's `__x64_sys_*` entry, and `handle_mm_fault` for faults), and
//! `max_graph_depth`. They are set for the trace and restored after it, under a lock that
//! keeps two traces apart; a trace does not start while another user of the
//! function-graph tracer is at work, and clears what a killed trace left behind.
//!
//! The graph of a call is complete when its thread stops at the call's exit (the kernel's
//! `__x64_sys_*` function has returned by then), so at each stop the tracer reads what the
//! instance's `trace_pipe` holds and gives each thread's finished graphs to its next call.
//! Functions the compiler inlined have no graph entry of their own (`__do_sys_brk`,
//! `__handle_mm_fault`, `do_anonymous_page` in this project's 7.3 guest), nor do `notrace` and
//! `noinstr` ones (`exc_page_fault`), nor Rust code, which the kernel does not build with
//! ftrace's entry hooks (this module's `fault`): its C helpers show under `__do_fault`.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where tracefs is mounted, the usual place first.
const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The graph of faults between the calls starts at this function (`mm/memory.c`): the
/// architecture's fault handler above it (`exc_page_fault`, `do_user_addr_fault`) is not
/// traceable.
pub const FAULT_ROOT: &str = "handle_mm_fault";

/// How deep graphs go by default: the entry function, and three levels of calls below it.
pub const DEFAULT_DEPTH: usize = 4;

/// How many fault graphs of different shapes a thread keeps between two of its calls (the
/// faults are still all counted).
const MAX_FAULT_GRAPHS: usize = 256;

/// The ring buffer of the trace's instance, per CPU: room for the faults of a program that
/// touches memory for long without a memory call.
const BUFFER_KB: usize = 8192;

/// Keeps two traces from setting the kernel-wide settings at once: in /run, root's, where
/// there is one.
const LOCK_NAME: &str = "mmscope-kernel-trace.lock";

/// One function in a graph, with the calls it made (to the depth traced); calls of the same
/// function with the same calls below them, one after another, are kept once, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The kernel function.
    pub function: String,
    /// How many times it ran here, one call after another.
    #[serde(skip_serializing_if = "is_one")]
    pub count: u32,
    /// The time it took, all counted calls together, in nanoseconds (as the tracer measured
    /// it, its own overhead included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns: Option<u64>,
    /// The functions it called, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<Node>,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Node {
    fn new(function: &str) -> Self {
        Self {
            function: function.to_string(),
            count: 1,
            ns: None,
            calls: Vec::new(),
        }
    }

    /// Whether `other` is the same function with the same calls below it.
    fn same_shape(&self, other: &Node) -> bool {
        self.function == other.function
            && self.calls.len() == other.calls.len()
            && (self.calls.iter().zip(&other.calls))
                .all(|(a, b)| a.count == b.count && a.same_shape(b))
    }

    /// Whether `function` runs anywhere in this graph.
    pub fn contains(&self, function: &str) -> bool {
        self.function == function || self.calls.iter().any(|c| c.contains(function))
    }

    /// The chain of calls from this node down to `function`, if it runs in this graph:
    /// `[self, ..., function]`.
    pub fn path_to(&self, function: &str) -> Option<Vec<&str>> {
        if self.function == function {
            return Some(vec![&self.function]);
        }
        self.calls.iter().find_map(|c| {
            c.path_to(function).map(|mut p| {
                p.insert(0, &self.function);
                p
            })
        })
    }
}

/// Appends `node` to `list`, counting it into the last one if it has the same shape.
pub fn push_folded(list: &mut Vec<Node>, node: Node) {
    if let Some(last) = list.last_mut() {
        if last.same_shape(&node) {
            last.count += node.count;
            last.ns = match (last.ns, node.ns) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            return;
        }
    }
    list.push(node);
}

/// What a thread's graphs were since its last stop: the faults it took (the graphs of
/// [`FAULT_ROOT`]) and the memory calls it made. A traced call carries its own (its faults
/// those before it): the `kernel` of its JSON event.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Graphs {
    /// Page faults: each fault's graph, those of the same shape one after another counted
    /// once.
    pub faults: Vec<Node>,
    /// How many faults.
    pub fault_count: u32,
    /// The system calls' graphs (of a traced call: its own, from its `__x64_sys_*` entry).
    #[serde(rename = "call")]
    pub calls: Vec<Node>,
    /// Events the ring buffer lost meanwhile (it was full): the graphs may miss calls.
    #[serde(skip_serializing_if = "is_zero")]
    pub lost: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why `--kernel` cannot trace.
#[derive(Debug)]
pub enum KernelError {
    /// tracefs is not mounted (or this kernel has no tracing at all).
    NoTracefs,
    /// Not allowed: tracefs is root's.
    NotRoot,
    /// The kernel has no function-graph tracer.
    NoGraphTracer,
    /// Another user of the tracer has set one of the kernel-wide settings.
    InUse(&'static str),
    /// The top level of tracefs runs the function-graph tracer for someone else.
    GraphInUse,
    /// Another `mmscope trace --kernel` (this process id) is at work.
    Busy(String),
    /// The kernel runs in this project's guest under QEMU's multi-threaded TCG, where its
    /// patching of itself is not safe.
    ThreadedTcg,
    /// Some other error, on this file.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoTracefs => write!(
                f,
                "tracefs is not mounted at /sys/kernel/tracing (as root: mount -t tracefs nodev \
                 /sys/kernel/tracing), or this kernel has no tracing (CONFIG_FTRACE)"
            ),
            Self::NotRoot => write!(
                f,
                "the kernel's function tracer (tracefs) is root's: run mmscope trace --kernel as \
                 root"
            ),
            Self::NoGraphTracer => write!(
                f,
                "this kernel has no function-graph tracer (CONFIG_FUNCTION_GRAPH_TRACER); the \
                 guest kernel of make shell has one"
            ),
            Self::InUse(what) => write!(
                f,
                "the kernel's {what} is set by another user of the tracer; clear it (echo > \
                 /sys/kernel/tracing/{what}) or wait until they are done"
            ),
            Self::GraphInUse => write!(
                f,
                "the kernel's function-graph tracer is in use (/sys/kernel/tracing/current_tracer \
                 is function_graph); wait until its user is done, or stop it: echo nop > \
                 /sys/kernel/tracing/current_tracer"
            ),
            Self::Busy(pid) => write!(
                f,
                "another mmscope trace --kernel{} is tracing the kernel's functions, which \
                 only one trace at a time can do; wait until it ends",
                if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (process {pid})")
                }
            ),
            Self::ThreadedTcg => write!(
                f,
                "this guest runs under QEMU's multi-threaded TCG, where a CPU can run kernel \
                 code in its old form after another has patched it, and starting the \
                 function-graph tracer (which patches every traceable function) crashes the \
                 kernel; boot it with one TCG thread: make shell MMSCOPE_TCG=single"
            ),
            Self::Io(path, e) => write!(f, "{}: {e}", path.display()),
        }
    }
}

/// A file of tracefs, written whole.
fn write_file(path: &Path, text: &str) -> Result<(), KernelError> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_error(path, e))
}

/// A file of tracefs, read whole.
fn read_file(path: &Path) -> Result<String, KernelError> {
    fs::read_to_string(path).map_err(|e| io_error(path, e))
}

/// The error of an access to tracefs: not root's, or another.
fn io_error(path: &Path, e: io::Error) -> KernelError {
    match e.kind() {
        // Root refused (a locked-down kernel) is not a matter of being root.
        io::ErrorKind::PermissionDenied if !is_root() => KernelError::NotRoot,
        _ => KernelError::Io(path.to_path_buf(), e),
    }
}

/// A task's graphs being read: the functions entered and not yet returned from, outermost
/// first, each with its depth, and the graphs finished since the tracer last took them.
#[derive(Default)]
struct Task {
    open: Vec<(usize, Node)>,
    done: Graphs,
}

/// The function-graph tracer, on for the program's tasks until dropped.
pub struct KernelGraph {
    /// The tracefs mount.
    root: PathBuf,
    /// The instance.
    dir: PathBuf,
    /// Its `trace_pipe`, read without blocking; closed first when the trace ends.
    pipe: Option<File>,
    /// A line read in part.
    partial: Vec<u8>,
    /// The graphs of every task the tracer follows, by thread id.
    tasks: HashMap<i32, Task>,
    /// The traced process: its threads are followed, and with `follow_all` every task.
    process: i32,
    /// `-f`: every task of the traced processes (`function-fork` adds them all).
    follow_all: bool,
    /// Tasks whose lines are dropped: the children of a program traced without `-f`.
    ignored: HashSet<i32>,
    /// `max_graph_depth` as it was.
    old_depth: String,
    /// Events the ring buffer lost (it was full), not yet reported.
    lost: u64,
    /// The lock of the kernel-wide settings, held for the trace (dropped after the rest).
    _lock: Lock,
}

impl KernelGraph {
    /// Starts the function-graph tracer for tasks `pids` (and every task they start), for the
    /// graphs of `calls` (kernel function names: `__x64_sys_brk`, ...; those this kernel
    /// cannot trace are left out) and of the page faults, at most `depth` functions deep.
    pub fn open(
        pids: &[i32],
        follow_all: bool,
        calls: &[String],
        depth: usize,
    ) -> Result<Self, KernelError> {
        // The guest of scripts/run-guest.sh says how QEMU runs it.
        let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
        if cmdline.split_whitespace().any(|a| a == "mmscope.accel=tcg") {
            return Err(KernelError::ThreadedTcg);
        }
        let mut found = None;
        for dir in TRACEFS.iter().map(PathBuf::from) {
            match fs::metadata(dir.join("available_tracers")) {
                Ok(_) => {
                    found = Some(dir);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(KernelError::NotRoot)
                }
                Err(_) => {}
            }
        }
        let root = found.ok_or(KernelError::NoTracefs)?;
        let tracers = read_file(&root.join("available_tracers"))?;
        if !tracers.split_whitespace().any(|t| t == "function_graph") {
            return Err(KernelError::NoGraphTracer);
        }
        let lock = Lock::take()?;
        let graph_functions = root.join("set_graph_function");
        if read_file(&root.join("current_tracer"))?.trim() == "function_graph" {
            return Err(KernelError::GraphInUse);
        }
        if remove_stale_instances(&root) {
            // A trace that was killed left its settings: they are nobody's now.
            write_file(&graph_functions, "\n")?;
            write_file(&root.join("max_graph_depth"), "0")?;
        }
        let set = read_file(&graph_functions)?;
        if set
            .lines()
            .any(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            return Err(KernelError::InUse("set_graph_function"));
        }
        let available = read_file(&root.join("available_filter_functions"))?;
        let traceable: std::collections::HashSet<&str> = available
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let wanted: Vec<&str> = (calls.iter().map(String::as_str))
            .chain([FAULT_ROOT])
            .filter(|f| traceable.contains(f))
            .collect();
        let old_depth = read_file(&root.join("max_graph_depth"))?.trim().to_string();

        let dir = root
            .join("instances")
            .join(format!("mmscope-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| KernelError::Io(dir.clone(), e))?;
        // From here on, dropping it undoes what was done.
        let mut graph = Self {
            root: root.clone(),
            pipe: None,
            dir: dir.clone(),
            partial: Vec::new(),
            tasks: pids.iter().map(|&p| (p, Task::default())).collect(),
            process: pids.first().copied().unwrap_or(0),
            follow_all,
            ignored: HashSet::new(),
            old_depth,
            lost: 0,
            _lock: lock,
        };
        write_file(&dir.join("tracing_on"), "0")?;
        write_file(&graph_functions, &(wanted.join("\n") + "\n"))?;
        write_file(&root.join("max_graph_depth"), &depth.to_string())?;
        // The instance starts with the top level's options: each one the parser depends on
        // is set. Options this kernel does not have are not needed.
        for (option, on) in [
            ("context-info", true),
            ("latency-format", false),
            ("funcgraph-proc", true),
            ("funcgraph-abstime", false),
            ("funcgraph-cpu", true),
            ("funcgraph-duration", true),
            ("funcgraph-overhead", true),
            ("funcgraph-tail", true),
            ("funcgraph-irqs", false),
            ("funcgraph-args", false),
            ("funcgraph-retval", false),
            ("funcgraph-retaddr", false),
            ("funcgraph-overrun", false),
            ("function-fork", true),
        ] {
            let path = dir.join("options").join(option);
            if path.exists() {
                write_file(&path, if on { "1" } else { "0" })?;
            }
        }
        // One clock for every CPU's buffer, so that trace_pipe merges them in order.
        write_file(&dir.join("trace_clock"), "global")?;
        write_file(&dir.join("buffer_size_kb"), &BUFFER_KB.to_string())?;
        let pid_list: Vec<String> = pids.iter().map(i32::to_string).collect();
        write_file(&dir.join("set_ftrace_pid"), &(pid_list.join(" ") + "\n"))?;
        write_file(&dir.join("current_tracer"), "function_graph")?;
        let pipe_path = dir.join("trace_pipe");
        graph.pipe = Some(
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&pipe_path)
                .map_err(|e| KernelError::Io(pipe_path, e))?,
        );
        write_file(&dir.join("tracing_on"), "1")?;
        Ok(graph)
    }

    /// Reads what the ring buffer holds now into each task's graphs.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 65536];
        loop {
            let Some(pipe) = self.pipe.as_mut() else {
                return;
            };
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
                        let line =
                            String::from_utf8_lossy(&self.partial[start..start + end]).into_owned();
                        self.line(&line);
                        start += end + 1;
                    }
                    self.partial.drain(..start);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: nothing more for now; any other error ends the reading.
                Err(_) => break,
            }
        }
    }

    /// The graphs task `tid` finished since they were last taken, with the events lost
    /// meanwhile. The task is at a stop, outside every graph: a function still open lost
    /// its return, and is ended here.
    pub fn take(&mut self, tid: i32) -> Graphs {
        let mut got = self
            .tasks
            .get_mut(&tid)
            .map(|t| {
                t.close_to(0);
                std::mem::take(&mut t.done)
            })
            .unwrap_or_default();
        got.lost = self.take_lost();
        got
    }

    /// The events lost since they were last taken.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Drops what task `tid` did so far (the old program's faults, and execve's own).
    pub fn discard(&mut self, tid: i32) {
        if let Some(t) = self.tasks.get_mut(&tid) {
            *t = Task::default();
        }
    }

    /// Follows task `tid` from now on (a thread or process the tracer follows started it).
    pub fn follow(&mut self, tid: i32) {
        self.ignored.remove(&tid);
        self.tasks.entry(tid).or_default();
    }

    /// The graphs of the calls task `tid` finished since they were last taken; its faults
    /// stay for [`KernelGraph::take`].
    pub fn take_calls(&mut self, tid: i32) -> Vec<Node> {
        self.tasks
            .get_mut(&tid)
            .map(|t| {
                t.close_to(0);
                std::mem::take(&mut t.done.calls)
            })
            .unwrap_or_default()
    }

    /// Forgets task `tid` (it is gone).
    pub fn forget(&mut self, tid: i32) {
        self.tasks.remove(&tid);
        // Its last lines may still be in the buffer.
        self.ignored.insert(tid);
    }

    /// One line of the function-graph tracer's output (`print_graph_*()` in
    /// `kernel/trace/trace_functions_graph.c`), with the CPU, the task and the duration:
    /// ` 1)  prog-123    |               |  do_brk_flags() {`, `... | 0.5 us | vma_expand();`,
    /// `... | 8.0 us | } /* do_brk_flags */`.
    fn line(&mut self, line: &str) {
        if line.contains("[LOST") {
            let n = line
                .split("[LOST ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            self.lost += n;
            return;
        }
        // From the right: the task's name (in the first field) may hold a '|'.
        let mut fields = line.rsplitn(3, '|');
        let (Some(text), Some(duration), Some(task)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        // "  1)  prog-123   ": the task after the CPU's parenthesis; its id after the last '-'.
        let Some(tid) = task
            .split_once(')')
            .and_then(|(_, t)| t.trim().rsplit('-').next())
            .and_then(|t| t.parse::<i32>().ok())
        else {
            return;
        };
        if !self.tasks.contains_key(&tid) {
            // A task the tracer has not heard of yet: a thread of the traced process, a
            // process it follows (-f), or one it lets go.
            if self.ignored.contains(&tid) {
                return;
            }
            if self.follow_all || tgid(tid) == Some(self.process) {
                self.tasks.insert(tid, Task::default());
            } else {
                self.ignored.insert(tid);
                return;
            }
        }
        let Some(task) = self.tasks.get_mut(&tid) else {
            return;
        };
        // Two spaces after the bar, then two for each level of depth.
        let Some(body) = text.strip_prefix("  ") else {
            return;
        };
        let content = body.trim_start();
        let depth = (body.len() - content.len()) / 2;
        let content = content.trim_end();
        let ns = parse_duration(duration);
        if let Some(name) = content.strip_suffix("() {") {
            task.close_to(depth);
            task.open.push((depth, Node::new(name)));
        } else if let Some(name) = content.strip_suffix("();") {
            task.close_to(depth);
            let mut node = Node::new(name);
            node.ns = ns;
            task.add(depth, node);
        } else if content.starts_with('}') {
            // The return of the function open at this depth; if its entry was lost, nothing.
            task.close_to(depth + 1);
            if task.open.last().is_some_and(|(d, _)| *d == depth) {
                if let Some((_, mut node)) = task.open.pop() {
                    node.ns = ns;
                    task.add(depth, node);
                }
            }
        }
    }
}

impl Task {
    /// Adds a finished call at `depth`: under the function that made it, or as a finished
    /// graph at depth 0; a call whose caller's entry was lost (none open above it) is
    /// dropped.
    fn add(&mut self, depth: usize, node: Node) {
        if let Some((_, parent)) = self.open.last_mut() {
            push_folded(&mut parent.calls, node);
        } else if depth > 0 {
            // Its caller's entry was lost: there is nothing to hang it on.
        } else if node.function == FAULT_ROOT {
            self.done.fault_count += node.count;
            if self.done.faults.len() < MAX_FAULT_GRAPHS {
                push_folded(&mut self.done.faults, node);
            }
        } else {
            self.done.calls.push(node);
        }
    }

    /// Ends the functions open at `depth` or deeper, whose returns were lost (or came out of
    /// order): each is kept with the calls seen, under its caller.
    fn close_to(&mut self, depth: usize) {
        while self.open.last().is_some_and(|(d, _)| *d >= depth) {
            if let Some((d, node)) = self.open.pop() {
                self.add(d, node);
            }
        }
    }
}

/// The process of task `tid` (`Tgid` in `/proc/TID/status`), if it still exists.
fn tgid(tid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The lock of the kernel-wide settings: a file holding the process id of the trace that
/// set them, removed when it ends. (A file, not flock(2): the guest's kernel has no file
/// locking.) `None` in the tests.
struct Lock(Option<PathBuf>);

impl Lock {
    /// Takes the lock, or says that another trace holds it; a lock whose trace is gone is
    /// taken over.
    fn take() -> Result<Self, KernelError> {
        let dir = if Path::new("/run").is_dir() {
            "/run"
        } else {
            "/tmp"
        };
        let path = Path::new(dir).join(LOCK_NAME);
        let me = std::process::id().to_string();
        // Written whole under another name, then linked into place: never seen empty.
        let mine = Path::new(dir).join(format!("{LOCK_NAME}.{me}"));
        fs::write(&mine, &me).map_err(|e| KernelError::Io(mine.clone(), e))?;
        let mut result = Err(KernelError::Busy(String::new()));
        for _ in 0..2 {
            match fs::hard_link(&mine, &path) {
                Ok(()) => {
                    result = Ok(Self(Some(path.clone())));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    let owner = owner.trim().to_string();
                    // Alive, and not this process (whose id a killed trace may have had).
                    if owner != me && Path::new("/proc").join(&owner).exists() {
                        result = Err(KernelError::Busy(owner));
                        break;
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    result = Err(KernelError::Io(path.clone(), e));
                    break;
                }
            }
        }
        let _ = fs::remove_file(&mine);
        result
    }
}

impl Drop for Lock {
    /// Gives the lock back, if it is still this trace's.
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let me = std::process::id().to_string();
            if fs::read_to_string(path).is_ok_and(|o| o.trim() == me) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Removes the instances of earlier traces: with the lock held, any is the instance of a
/// trace that was killed before it could remove it. Says whether there was one.
fn remove_stale_instances(root: &Path) -> bool {
    let Ok(entries) = fs::read_dir(root.join("instances")) else {
        return false;
    };
    let mut any = false;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("mmscope-") {
            continue;
        }
        let _ = write_file(&entry.path().join("tracing_on"), "0");
        let _ = write_file(&entry.path().join("current_tracer"), "nop");
        any |= fs::remove_dir(entry.path()).is_ok();
    }
    any
}

/// The duration column: `  0.512 us   `, `+ 12.345 us`, `! 123.456 us`; in nanoseconds.
fn parse_duration(field: &str) -> Option<u64> {
    let mut words = field
        .split_whitespace()
        .filter(|w| w.len() > 1 || w.chars().all(|c| c.is_ascii_digit()));
    let value: f64 = words.next()?.parse().ok()?;
    let scale = match words.next()? {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some((value * scale).round() as u64)
}

impl Drop for KernelGraph {
    /// Stops the tracer, removes the instance and gives the kernel-wide settings back, in
    /// that order: the pipe is closed first (the tracer cannot change while it is open), and
    /// the settings are given back only once the instance, which uses them, is gone.
    fn drop(&mut self) {
        self.pipe = None;
        let _ = write_file(&self.dir.join("tracing_on"), "0");
        let _ = write_file(&self.dir.join("current_tracer"), "nop");
        let _ = write_file(&self.dir.join("set_ftrace_pid"), "\n");
        if fs::remove_dir(&self.dir).is_ok() {
            let _ = write_file(&self.root.join("set_graph_function"), "\n");
            let _ = write_file(&self.root.join("max_graph_depth"), &self.old_depth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> KernelGraph {
        KernelGraph {
            root: PathBuf::new(),
            dir: PathBuf::new(),
            pipe: None,
            partial: Vec::new(),
            tasks: [42, 7, 5].map(|t| (t, Task::default())).into(),
            process: 42,
            follow_all: false,
            ignored: HashSet::new(),
            old_depth: String::new(),
            lost: 0,
            _lock: Lock(None),
        }
    }

    #[test]
    fn parses_nested_graphs_and_folds_repeats() {
        let mut g = graph();
        for l in [
            " 1)  prog-42    |               |  __x64_sys_brk() {",
            " 1)  prog-42    |               |    do_brk_flags() {",
            " 1)  prog-42    |   0.250 us    |      vma_expand();",
            " 1)  prog-42    |   0.250 us    |      vma_expand();",
            " 1)  prog-42    | + 12.500 us   |    } /* do_brk_flags */",
            " 0)  other-7    |   1.000 us    |  handle_mm_fault();",
            " 1)  prog-42    | + 20.000 us   |  } /* __x64_sys_brk */",
            " ------------------------------------------",
            " 1)  prog-42    |               |  handle_mm_fault() {",
            " 1)  prog-42    |   3.000 us    |    __do_fault();",
            " 1)  prog-42    |   5.000 us    |  } /* handle_mm_fault */",
            "CPU:1 [LOST 3 EVENTS]",
        ] {
            g.line(l);
        }
        let got = g.take(42);
        assert_eq!(got.calls.len(), 1);
        let brk = &got.calls[0];
        assert_eq!(brk.function, "__x64_sys_brk");
        assert_eq!(brk.ns, Some(20_000));
        assert_eq!(brk.calls[0].function, "do_brk_flags");
        assert_eq!(brk.calls[0].calls.len(), 1);
        assert_eq!(brk.calls[0].calls[0].count, 2);
        assert_eq!(brk.calls[0].calls[0].ns, Some(500));
        assert_eq!(
            brk.path_to("vma_expand"),
            Some(vec!["__x64_sys_brk", "do_brk_flags", "vma_expand"])
        );
        assert_eq!(got.fault_count, 1);
        assert!(got.faults[0].contains("__do_fault"));
        assert_eq!(got.lost, 3);
        assert_eq!(g.take(7).fault_count, 1);
        // Taken: nothing left.
        let again = g.take(42);
        assert!(again.calls.is_empty() && again.lost == 0);
    }

    #[test]
    fn depth_resynchronises_after_a_lost_return() {
        let mut g = graph();
        for l in [
            // do_mmap's return is lost: the next entry at depth 1 ends it.
            " 0)  a|b-5     |               |  __x64_sys_mmap() {",
            " 0)  a|b-5     |               |    do_mmap() {",
            " 0)  a|b-5     |   1.000 us    |      mmap_region();",
            " 0)  a|b-5     |   1.000 us    |    up_write();",
            " 0)  a|b-5     |   9.000 us    |  } /* __x64_sys_mmap */",
            // A task the tracer does not follow.
            " 1)  other-99  |   1.000 us    |  __x64_sys_brk();",
        ] {
            g.line(l);
        }
        let got = g.take(5);
        assert_eq!(got.calls.len(), 1);
        let names: Vec<&str> = got.calls[0]
            .calls
            .iter()
            .map(|c| c.function.as_str())
            .collect();
        assert_eq!(names, ["do_mmap", "up_write"]);
        assert!(got.calls[0].calls[0].contains("mmap_region"));
        assert!(g.take(99).calls.is_empty());
    }

    #[test]
    fn a_return_without_its_entry_closes_nothing() {
        let mut g = graph();
        for l in [
            " 0)  prog-5    |               |  __x64_sys_mmap() {",
            " 0)  prog-5    |   1.000 us    |    } /* vm_mmap_pgoff */",
            " 0)  prog-5    |   2.000 us    |  } /* __x64_sys_mmap */",
        ] {
            g.line(l);
        }
        let got = g.take(5);
        assert_eq!(got.calls.len(), 1);
        assert_eq!(got.calls[0].function, "__x64_sys_mmap");
    }

    #[test]
    fn lost_entries_make_no_false_roots() {
        let mut g = graph();
        for l in [
            // The entries of __x64_sys_brk and do_brk_flags were lost.
            " 0)  prog-42    |   0.250 us    |      vma_expand();",
            " 0)  prog-42    |   1.000 us    |    } /* do_brk_flags */",
            " 0)  prog-42    |   2.000 us    |  } /* __x64_sys_brk */",
            // A root whose return is lost: ended when the graphs are taken.
            " 0)  prog-42    |               |  __x64_sys_mmap() {",
            " 0)  prog-42    |   1.000 us    |    do_mmap();",
        ] {
            g.line(l);
        }
        let calls = g.take_calls(42);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function, "__x64_sys_mmap");
        assert!(calls[0].contains("do_mmap"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("   0.512 us    "), Some(512));
        assert_eq!(parse_duration(" + 12.345 us   "), Some(12_345));
        assert_eq!(parse_duration(" # 1234.500 us "), Some(1_234_500));
        assert_eq!(parse_duration("               "), None);
    }
}
