// SPDX-License-Identifier: GPL-2.0

//! `mmscope trace --kernel`: the kernel functions each memory call ran, and the page-fault path
//! of the first touches between the calls, from ftrace's function-graph tracer.
//!
//! The tracer gets an instance of its own (`instances/mmscope-PID` in tracefs): its own ring
//! buffer and options, and `set_ftrace_pid` set to the program's tasks (`function-fork` adds
//! every task they start). Two settings are the kernel's, not an instance's
//! (`kernel/trace/ftrace.c`): `set_graph_function`, where the graphs start (each traced
//! memory call's `__x64_sys_*` entry, and `handle_mm_fault` for faults), and
//! `max_graph_depth`. They are set for the trace and restored after it; a trace does not
//! start while another user has set them.
//!
//! The graph of a call is complete when its thread stops at the call's exit (the kernel's
//! `__x64_sys_*` function has returned by then), so at each stop the tracer reads what the
//! instance's `trace_pipe` holds and gives each thread's finished graphs to its next call.
//! Functions the compiler inlined have no graph entry of their own (`__do_sys_brk`,
//! `__handle_mm_fault`, `do_anonymous_page` in Debian's 7.3 build), nor do `notrace` and
//! `noinstr` ones (`exc_page_fault`), nor Rust code, which the kernel does not build with
//! ftrace's entry hooks (this module's `fault`): its C helpers show under `__do_fault`.

use serde::Serialize;
use std::collections::HashMap;
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
/// [`FAULT_ROOT`]) and the memory calls it made.
#[derive(Clone, Debug, Default)]
pub struct Graphs {
    /// Page faults: each fault's graph, folded.
    pub faults: Vec<Node>,
    /// How many faults.
    pub fault_count: u32,
    /// The system calls' graphs.
    pub calls: Vec<Node>,
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
        io::ErrorKind::PermissionDenied => KernelError::NotRoot,
        _ => KernelError::Io(path.to_path_buf(), e),
    }
}

/// A task's graphs being read: the functions entered and not yet returned from, outermost
/// first, and the graphs finished since the tracer last took them.
#[derive(Default)]
struct Task {
    open: Vec<Node>,
    done: Graphs,
}

/// The function-graph tracer, on for the program's tasks until dropped.
pub struct KernelGraph {
    /// The tracefs mount.
    root: PathBuf,
    /// The instance.
    dir: PathBuf,
    /// Its `trace_pipe`, read without blocking.
    pipe: File,
    /// A line read in part.
    partial: Vec<u8>,
    /// Every task's graphs, by thread id.
    tasks: HashMap<i32, Task>,
    /// `max_graph_depth` as it was.
    old_depth: String,
    /// Events the ring buffer lost (it was full).
    pub lost: u64,
}

impl KernelGraph {
    /// Starts the function-graph tracer for tasks `pids` (and every task they start), for the
    /// graphs of `calls` (kernel function names: `__x64_sys_brk`, ...; those this kernel
    /// cannot trace are left out) and of the page faults, at most `depth` functions deep.
    pub fn open(pids: &[i32], calls: &[String], depth: usize) -> Result<Self, KernelError> {
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
        let graph_functions = root.join("set_graph_function");
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
        // One left by a tracer of this pid that was killed.
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).map_err(|e| KernelError::Io(dir.clone(), e))?;
        // From here on, dropping it undoes what was done.
        let mut graph = Self {
            root: root.clone(),
            pipe: File::open("/dev/null").map_err(|e| KernelError::Io("/dev/null".into(), e))?,
            dir: dir.clone(),
            partial: Vec::new(),
            tasks: HashMap::new(),
            old_depth,
            lost: 0,
        };
        write_file(&dir.join("tracing_on"), "0")?;
        write_file(&graph_functions, &(wanted.join("\n") + "\n"))?;
        write_file(&root.join("max_graph_depth"), &depth.to_string())?;
        for (option, on) in [
            ("funcgraph-proc", true),
            ("funcgraph-abstime", false),
            ("funcgraph-cpu", true),
            ("funcgraph-duration", true),
            ("funcgraph-overhead", true),
            ("funcgraph-tail", true),
            ("funcgraph-irqs", false),
            ("function-fork", true),
        ] {
            write_file(
                &dir.join("options").join(option),
                if on { "1" } else { "0" },
            )?;
        }
        let pid_list: Vec<String> = pids.iter().map(i32::to_string).collect();
        write_file(&dir.join("set_ftrace_pid"), &(pid_list.join(" ") + "\n"))?;
        write_file(&dir.join("current_tracer"), "function_graph")?;
        let pipe_path = dir.join("trace_pipe");
        graph.pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&pipe_path)
            .map_err(|e| KernelError::Io(pipe_path, e))?;
        write_file(&dir.join("tracing_on"), "1")?;
        Ok(graph)
    }

    /// Reads what the ring buffer holds now into each task's graphs.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 65536];
        loop {
            match self.pipe.read(&mut buf) {
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

    /// The graphs task `tid` finished since they were last taken.
    pub fn take(&mut self, tid: i32) -> Graphs {
        self.tasks
            .get_mut(&tid)
            .map(|t| std::mem::take(&mut t.done))
            .unwrap_or_default()
    }

    /// The graphs of the calls task `tid` finished since they were last taken; its faults
    /// stay for [`KernelGraph::take`].
    pub fn take_calls(&mut self, tid: i32) -> Vec<Node> {
        self.tasks
            .get_mut(&tid)
            .map(|t| std::mem::take(&mut t.done.calls))
            .unwrap_or_default()
    }

    /// Forgets task `tid` (it is gone).
    pub fn forget(&mut self, tid: i32) {
        self.tasks.remove(&tid);
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
        let fields: Vec<&str> = line.split('|').collect();
        let [task, duration, text] = match fields[..] {
            [task, duration, text] => [task, duration, text],
            _ => return,
        };
        // "  1)  prog-123   ": the task after the CPU's parenthesis; its id after the last '-'.
        let Some(tid) = task
            .split_once(')')
            .and_then(|(_, t)| t.trim().rsplit('-').next())
            .and_then(|t| t.parse::<i32>().ok())
        else {
            return;
        };
        let ns = parse_duration(duration);
        let text = text.trim();
        let task = self.tasks.entry(tid).or_default();
        if let Some(name) = text.strip_suffix("() {") {
            task.open.push(Node::new(name));
        } else if let Some(name) = text.strip_suffix("();") {
            let mut node = Node::new(name);
            node.ns = ns;
            task.add(node);
        } else if text.starts_with('}') {
            // "} /* name */": a return; one whose entry the buffer lost closes nothing.
            let name = text
                .strip_prefix("} /* ")
                .and_then(|r| r.split(" */").next())
                .and_then(|r| r.split_whitespace().next());
            match (task.open.last(), name) {
                (Some(open), Some(name)) if open.function != name => {}
                (Some(_), _) => {
                    if let Some(mut node) = task.open.pop() {
                        node.ns = ns;
                        task.add(node);
                    }
                }
                (None, _) => {}
            }
        }
    }
}

impl Task {
    /// Adds a finished call: under the function that made it, or as a finished graph.
    fn add(&mut self, node: Node) {
        if let Some(parent) = self.open.last_mut() {
            push_folded(&mut parent.calls, node);
        } else if node.function == FAULT_ROOT {
            self.done.fault_count += node.count;
            push_folded(&mut self.done.faults, node);
        } else {
            self.done.calls.push(node);
        }
    }
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
    /// Stops the tracer, removes the instance and gives the kernel-wide settings back.
    fn drop(&mut self) {
        let _ = write_file(&self.dir.join("tracing_on"), "0");
        let _ = write_file(&self.dir.join("current_tracer"), "nop");
        let _ = write_file(&self.dir.join("set_ftrace_pid"), "\n");
        // The pipe must be closed before the instance can go.
        self.pipe = match File::open("/dev/null") {
            Ok(f) => f,
            Err(_) => return,
        };
        let _ = fs::remove_dir(&self.dir);
        let _ = write_file(&self.root.join("set_graph_function"), "\n");
        let _ = write_file(&self.root.join("max_graph_depth"), &self.old_depth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> KernelGraph {
        KernelGraph {
            root: PathBuf::new(),
            dir: PathBuf::new(),
            pipe: File::open("/dev/null").unwrap(),
            partial: Vec::new(),
            tasks: HashMap::new(),
            old_depth: String::new(),
            lost: 0,
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
        assert_eq!(g.take(7).fault_count, 1);
        assert_eq!(g.lost, 3);
        // Taken: nothing left.
        assert!(g.take(42).calls.is_empty());
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
    fn durations() {
        assert_eq!(parse_duration("   0.512 us    "), Some(512));
        assert_eq!(parse_duration(" + 12.345 us   "), Some(12_345));
        assert_eq!(parse_duration(" # 1234.500 us "), Some(1_234_500));
        assert_eq!(parse_duration("               "), None);
    }
}
