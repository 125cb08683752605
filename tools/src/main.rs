// SPDX-License-Identifier: GPL-2.0

//! `mmscope`: process memory management made visible, through `/dev/mmscope` or procfs.
//!
//! A thin command over the library: arguments, output streams, exit codes and the sentences
//! errors are told in. Exit status: 0 on success (for `trace`, the program's own status), 1 on
//! an error, 2 for a usage error.

use clap::{CommandFactory, Parser, Subcommand};
use mmscope::access::{read_process, AccessError};
use mmscope::lazy::{Lazy, Pattern, Row};
use mmscope::maps::{self, MapsJson};
use mmscope::report::{JsonReport, Summary, TextReport};
use mmscope::snapshot::page_size;
use mmscope::source::{self, Choice, Depth, Source};
use mmscope::style::{ColorChoice, Style};
use mmscope::trace::{self, Event, TraceError};
use mmscope::{procfs, units, Device};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Process memory management made visible: address spaces, what each memory system call does
/// to one, and demand paging, page by page.
///
/// Reads processes through the mmscope kernel module's /dev/mmscope: brk and start_brk exactly
/// as the kernel keeps them, every VMA, and the RSS counters. Without the module, through
/// procfs: the same VMAs and counters; brk exact in `trace` (followed call by call), unknown in
/// `maps`; mmap_base and task_size unknown.
#[derive(Parser)]
#[command(name = "mmscope", version, propagate_version = true)]
struct Cli {
    /// The mmscope device node.
    #[arg(long, global = true, value_name = "PATH", env = "MMSCOPE_DEVICE", default_value = mmscope::DEVICE_PATH)]
    device: PathBuf,

    /// Where to read address spaces: auto (the module if its device opens, else procfs),
    /// module, procfs.
    #[arg(long, global = true, value_name = "SOURCE", default_value = "auto")]
    source: Choice,

    /// When to use colours: auto (a terminal, and NO_COLOR unset), always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    color: ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the address space of a process: its mm_struct, its VMAs as `pmap -x` would, and a
    /// picture with the heap, the mmap area and the stack where they really are.
    Maps {
        /// The process: a pid, or `self` (this command).
        #[arg(default_value = "self", value_parser = parse_pid)]
        pid: Target,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a program and show, call by call, what brk, mmap, munmap, mremap, mprotect, madvise,
    /// shmat and shmdt did to its address space, in every thread it starts.
    ///
    /// The trace goes to stderr (or FILE with -o), so the program keeps its stdout. The exit
    /// status is the program's (128 + N if signal N killed it).
    Trace {
        /// Write the trace to FILE instead of stderr.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print one JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Also plot heap size, anonymous mappings and resident anonymous memory over the
        /// steps, as SVG, to FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Also write the trace as one page to explore in a browser, to FILE: the address
        /// space over the steps (each VMA a band, brk and mmap_base as lines), the counters,
        /// each call in detail with its stack, filters, and with --faults the flame graph of
        /// resident memory. Self-contained: it opens from disk, with no network.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// At the end, draw the address space as the program left it (as its last thread
        /// exited), as `mmscope maps` does. Not with --json.
        #[arg(long, conflicts_with = "json")]
        picture: bool,
        /// Follow the processes the program starts (fork, vfork, clone), as `strace -f` does:
        /// each is shown with its pid, from its copy of its parent's address space on, and an
        /// execve in one as a new address space; the trace ends when the last of them has
        /// ended. The peaks in the summary stay the program's. With -f the program and its
        /// children run under a seccomp filter that stops them only at their memory calls (as
        /// `strace -f --seccomp-bpf`), so their other calls keep nearly their speed; without
        /// it every system call stops (the filter, which children inherit, needs a tracer for
        /// each of them).
        #[arg(short = 'f', long = "follow-forks")]
        follow_forks: bool,
        /// Show the caller's stack under each memory call, innermost frame first: unwound
        /// with the programs' and libraries' call-frame information (.eh_frame), with function
        /// names, and source files and lines where there is debug information.
        #[arg(long)]
        stacks: bool,
        /// Record every page fault with its stack (the kernel's page-fault event), and show
        /// resident anonymous memory by the code that first touched each page, net of what
        /// munmap, madvise, a shrinking brk and the exit gave back, checked page for page
        /// against the kernel's RssAnon at every stop. Needs perf events in the kernel
        /// (perf_event_paranoid <= 2 for the program's own faults, <= 1 or root for those the
        /// kernel takes in its memory during a system call).
        #[arg(long)]
        faults: bool,
        /// With --faults: write flame graphs of resident memory by stack, at its peak and at
        /// exit, to PREFIX-peak.svg and PREFIX-exit.svg (and their folded stacks to
        /// PREFIX-peak.folded and PREFIX-exit.folded).
        #[arg(long, value_name = "PREFIX", requires = "faults")]
        flame: Option<PathBuf>,
        /// Show the kernel functions each memory call ran, as a call graph under the call
        /// (`__x64_sys_brk`, `do_brk_flags`, `vma_merge_new_range`, ...), and the page-fault
        /// path of the first touches between the calls (from `handle_mm_fault`), from the
        /// kernel's function-graph tracer (ftrace). Needs root and a kernel with
        /// CONFIG_FUNCTION_GRAPH_TRACER; functions the compiler inlined, and Rust code, do
        /// not show.
        #[arg(long)]
        kernel: bool,
        /// With --kernel: how many levels of calls the graphs show, the entry function being
        /// the first.
        #[arg(long, value_name = "N", default_value_t = mmscope::kgraph::DEFAULT_DEPTH as u64,
              requires = "kernel", value_parser = clap::value_parser!(u64).range(1..=32))]
        kernel_depth: u64,
        /// With --stacks: at most N frames (with --faults: of each fault's stack too; 32
        /// without --stacks).
        #[arg(long, value_name = "N", default_value_t = 16, requires = "stacks",
              value_parser = clap::value_parser!(u64).range(1..=256))]
        stack_depth: u64,
        /// Attach to the running process PID instead of starting one, as `strace -p` does:
        /// every thread is traced, from the address space at attach on. The process stops at
        /// every system call (a running process cannot be given a seccomp filter, which a
        /// program mmscope starts gets with -f), so it runs slower while traced. Ctrl-C,
        /// SIGTERM or SIGHUP detach and leave it running.
        #[arg(
            short = 'p',
            long = "pid",
            value_name = "PID",
            conflicts_with = "command"
        )]
        attach: Option<i32>,
        /// The program and its arguments.
        #[arg(
            required_unless_present = "attach",
            trailing_var_arg = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
    /// Make the page `mmscope trace --html` makes from a trace saved with `mmscope trace
    /// --json`: the address space over the steps, the counters, each call in detail.
    Report {
        /// The trace: the file `mmscope trace --json -o FILE` wrote, or `-` for stdin.
        input: PathBuf,
        /// Write the page to FILE (default: the trace's name with .html).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Watch demand paging: map a /dev/mmscope object and anonymous memory of SIZE, touch both
    /// in PATTERN, and see faults and pages rise; then map the object again and see
    /// fault-around.
    Lazy {
        /// How much to map: bytes, or with K, M or G (binary units). Rounded up to a page.
        #[arg(default_value = "1M", value_parser = parse_size)]
        size: u64,
        /// The order of the touches: seq, stride:N (every Nth page) or random.
        #[arg(long, default_value = "seq", value_name = "PATTERN", value_parser = parse_pattern)]
        pattern: Pattern,
        /// The seed of the random order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many rows to report while touching.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
        rows: u64,
        /// Advise the object's mapping MADV_SEQUENTIAL first: each fault then allocates and
        /// maps the 16 pages from the faulting one on (fault-ahead).
        #[arg(long)]
        sequential: bool,
        /// Print one JSON object per row instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The process `maps` reads.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// This process.
    Myself,
    /// Another process, or this one by number.
    Pid(i32),
}

fn parse_pid(s: &str) -> Result<Target, String> {
    if s == "self" {
        return Ok(Target::Myself);
    }
    match s.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(Target::Pid(pid)),
        _ => Err(format!(
            "`{s}` is not a process id: give a positive number or `self`"
        )),
    }
}

fn parse_pattern(s: &str) -> Result<Pattern, String> {
    Pattern::parse(s, 0).ok_or_else(|| {
        format!("`{s}` is not a pattern: use seq, stride:N with N above 0, or random")
    })
}

fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = units::parse_size(s).ok_or_else(|| {
        format!("`{s}` is not a size: give a number of bytes above 0, or one with K, M or G")
    })?;
    let page = page_size();
    bytes
        .checked_next_multiple_of(page)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// An error for a person: one sentence that says what happened and what to do.
struct Failure(String);

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure(format!("{e}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure(msg)) => {
            eprintln!("mmscope: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let style = Style::for_stdout(cli.color);
    match cli.command {
        Command::Maps { pid, json } => {
            let src = open_source(cli.source, &cli.device)?;
            maps_cmd(src.as_ref(), pid, json, &style)
        }
        Command::Trace {
            output,
            json,
            svg,
            html,
            picture,
            follow_forks,
            stacks,
            faults,
            flame,
            stack_depth,
            kernel,
            kernel_depth,
            attach,
            command,
        } => {
            let src = open_source(cli.source, &cli.device)?;
            let shape = TraceOutput {
                json,
                svg,
                html,
                picture,
                flame,
                options: trace::TraceOptions {
                    follow_forks,
                    stack_depth: stacks.then_some(stack_depth as usize),
                    faults,
                    kernel_depth: kernel.then_some(kernel_depth as usize),
                },
            };
            let what = match attach {
                Some(pid) => Traced::Pid(pid),
                None => Traced::Command(command),
            };
            trace_cmd(src.as_ref(), output, shape, what, cli.color)
        }
        Command::Lazy {
            size,
            pattern,
            seed,
            rows,
            sequential,
            json,
        } => {
            let pattern = match pattern {
                Pattern::Random(_) => Pattern::Random(seed),
                other => other,
            };
            if cli.source == Choice::Procfs {
                return Err(Failure(
                    "mmscope lazy maps the module's device and reads its counters, which \
                     procfs does not have; load the module and leave out --source procfs"
                        .to_string(),
                ));
            }
            let dev = open_device(&cli.device, "mmscope lazy needs the mmscope module: ")?;
            let run = Lazy {
                size,
                pattern,
                rows: rows as usize,
                sequential,
            };
            lazy_cmd(&dev, run, json)
        }
        Command::Report { input, output } => report_cmd(&input, output),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mmscope", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens the source `choice` names, explaining what to do if that fails.
fn open_source(choice: Choice, device: &std::path::Path) -> Result<Box<dyn Source>, Failure> {
    source::open(choice, device).map_err(|e| device_failure(device, e, ""))
}

/// Opens the device, explaining what to do if that fails; `why` starts the sentence.
fn open_device(path: &std::path::Path, why: &str) -> Result<Device, Failure> {
    Device::open_path(path).map_err(|e| device_failure(path, e, why))
}

/// The sentence for a device that does not open, after `why`.
fn device_failure(path: &std::path::Path, e: io::Error, why: &str) -> Failure {
    let shown = path.display();
    Failure(
        why.to_string()
            + &match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => format!(
                "{shown} does not exist: the mmscope module is not loaded; load it as root with \
                 `insmod mmscope.ko` (built by `make`), then try again"
            ),
                Some(libc::EACCES) | Some(libc::EPERM) => format!(
                    "{shown} is not readable and writable for you; as root, install the udev rule \
                 that opens it to every user (udev/60-mmscope.rules in the mmscope sources) \
                 and reload the module, or run mmscope as root"
                ),
                _ => format!("cannot open {shown}: {e}"),
            },
    )
}

/// The sentence for a process that cannot be read.
fn access_failure(pid: i32, e: AccessError) -> Failure {
    Failure(match e {
        AccessError::NoProcess => format!(
            "there is no process {pid} (or it has exited, or it is a kernel thread with no \
             address space); `ps` lists the processes there are"
        ),
        AccessError::NotAllowed => format!(
            "not allowed to read process {pid}: mmscope reads another process only from its \
             tracer, and attaching to it as one was refused (another user's process, a setuid \
             program, or Yama's ptrace_scope); run mmscope as root, or with CAP_SYS_PTRACE \
             (/proc/{pid}/maps may still show its mappings)"
        ),
        AccessError::AlreadyTraced => format!(
            "process {pid} is already being traced (by a debugger or strace), and mmscope reads \
             another process only as its tracer; detach the other tracer, or run mmscope as root"
        ),
        AccessError::Other(e) => format!("cannot read process {pid}: {e}"),
    })
}

fn maps_cmd(
    src: &dyn Source,
    target: Target,
    json: bool,
    style: &Style,
) -> Result<ExitCode, Failure> {
    let (pid, snap) = match target {
        Target::Myself => (std::process::id() as i32, src.snapshot(None, Depth::Full)?),
        Target::Pid(pid) => {
            let own = pid == std::process::id() as i32;
            let who = if own { None } else { Some(pid) };
            let snap = read_process(pid, || src.snapshot(who, Depth::Full))
                .map_err(|e| access_failure(pid, e))?;
            (pid, snap)
        }
    };
    let who = (pid != std::process::id() as i32).then_some(pid);
    let names = procfs::names(who);
    let comm = procfs::comm(who);
    let mut out = io::stdout().lock();
    let res = if json {
        let doc = MapsJson::new(pid, src.name(), comm, &snap, &names);
        writeln!(out, "{}", serde_json::to_string(&doc).unwrap_or_default())
    } else {
        write!(
            out,
            "{}\n{}\n{}",
            maps::header(&snap, pid, comm.as_deref(), &src.describe(), style),
            maps::table(&snap, &names, style),
            maps::picture(&snap, &names, style)
        )
    };
    finish_output(res)?;
    Ok(ExitCode::SUCCESS)
}

/// Ends quietly when the reader went away (`mmscope maps | head`).
fn finish_output(res: io::Result<()>) -> Result<(), Failure> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Failure(format!("cannot write the output: {e}"))),
    }
}

/// What `mmscope trace` writes besides the trace itself.
struct TraceOutput {
    /// JSON lines instead of text.
    json: bool,
    /// The plot, to this file.
    svg: Option<PathBuf>,
    /// The page to explore, to this file.
    html: Option<PathBuf>,
    /// The address-space picture at the end.
    picture: bool,
    /// `--flame`: where the flame graphs go.
    flame: Option<PathBuf>,
    /// What to follow and record.
    options: trace::TraceOptions,
}

/// What `mmscope trace` traces.
enum Traced {
    /// A program it starts.
    Command(Vec<OsString>),
    /// A running process it attaches to (`-p`).
    Pid(i32),
}

fn trace_cmd(
    src: &dyn Source,
    output: Option<PathBuf>,
    shape: TraceOutput,
    what: Traced,
    color: ColorChoice,
) -> Result<ExitCode, Failure> {
    let TraceOutput {
        json,
        svg,
        html,
        picture,
        flame,
        options,
    } = shape;
    if let (Some(out), Some(page)) = (&output, &html) {
        if same_file(out, page) {
            return Err(Failure(format!(
                "-o and --html both name {}; give the page a name of its own",
                page.display()
            )));
        }
    }
    // The page's file is created now, so that a path it cannot have fails before the trace.
    let page_file = match &html {
        Some(path) => Some(File::create(path).map_err(|e| {
            Failure(format!(
                "cannot create {}: {e}; choose a writable path for --html",
                path.display()
            ))
        })?),
        None => None,
    };
    let (mut sink, style): (Box<dyn Write>, Style) = match &output {
        Some(path) => {
            let file = File::create(path).map_err(|e| {
                Failure(format!(
                    "cannot create {}: {e}; choose a writable path for -o",
                    path.display()
                ))
            })?;
            let style = Style::new(color, false);
            (Box::new(io::BufWriter::new(file)), style)
        }
        None => {
            let style = Style::new(color, std::io::IsTerminal::is_terminal(&io::stderr()));
            (Box::new(io::stderr()), style)
        }
    };
    let program = match &what {
        Traced::Command(command) => command
            .first()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Traced::Pid(pid) => format!("pid {pid}"),
    };
    let mut report = TextReport::new(style);
    let mut json_report = JsonReport::default();
    let mut summary = Summary::new();
    if let Traced::Command(command) = &what {
        summary.command = (command.iter())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
    }
    // --html: the page, made of the JSON lines as they come.
    let mut page = html.as_ref().map(|_| mmscope::html::Page::new());
    let mut write_err = None;
    // The address space as the last thread left it, and its VMAs' names, read while the
    // thread is stopped at its exit and the process still exists.
    let mut last = None;
    let on_event = |event: Event| {
        if let Event::Compat32 { .. } = event {
            eprintln!(
                "mmscope: mmscope traces the x86-64 system calls; this program makes 32-bit ones \
                 (int 0x80), which are not shown"
            );
        }
        if let (
            true,
            Event::ThreadExit {
                pid,
                tid,
                snap: Some(snap),
            },
        ) = (picture, &event)
        {
            // The program's (the first process reported), not a child's.
            if summary.program.is_none_or(|p| p == *pid) {
                last = Some((snap.clone(), procfs::names(Some(*tid))));
            }
        }
        summary.observe(&event);
        let line = (json || page.is_some()).then(|| json_report.event(&event));
        if let (Some(page), Some(line)) = (&mut page, &line) {
            page.push(line);
        }
        let text = match line {
            Some(line) if json => line + "\n",
            _ => report.event(&event),
        };
        if let Err(e) = sink.write_all(text.as_bytes()).and_then(|()| sink.flush()) {
            write_err.get_or_insert(e);
        }
    };
    let result = match &what {
        Traced::Command(command) => trace::run(src, command, &options, on_event),
        Traced::Pid(pid) => trace::attach(src, *pid, &options, on_event),
    };
    if let (Err(_), Some(path)) = (&result, &html) {
        // No trace: no page, not an empty file.
        let _ = std::fs::remove_file(path);
    }
    let ending = result.map_err(|e| match e {
        TraceError::NoProcess => Failure(format!(
            "there is no process {} (or it has exited); `ps` lists the processes there are",
            program.trim_start_matches("pid ")
        )),
        TraceError::NotAllowed(yama) => Failure(match yama {
            Some(scope) => format!(
                "not allowed to attach to {program}: /proc/sys/kernel/yama/ptrace_scope is \
                 {scope}, which lets a process trace only its descendants (or only root trace); \
                 run mmscope as root, or with CAP_SYS_PTRACE"
            ),
            None => format!(
                "not allowed to attach to {program}: it is another user's process or a setuid \
                 program; run mmscope as root, or with CAP_SYS_PTRACE"
            ),
        }),
        TraceError::AlreadyTraced(by) => Failure(format!(
            "{program} is already being traced by process {by} (a debugger or strace); a \
             process has one tracer at a time: detach the other one first"
        )),
        TraceError::Exec(e) => Failure(format!(
            "cannot run `{program}`: {e}; check the name, your PATH and its permissions"
        )),
        TraceError::Untraceable(e) => {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            Failure(format!(
                "`{program}` could not be traced: ptrace refused with {errno:?} ({}); \
                 another tracer, Yama's ptrace_scope or a seccomp policy forbids it",
                errno.desc()
            ))
        }
        TraceError::NulInArgument => {
            Failure("an argument of the command contains a NUL byte; remove it".to_string())
        }
        TraceError::Snapshot(e) if e.raw_os_error() == Some(libc::EACCES) => {
            Failure(match src.name() {
                "module" => format!(
                    "the loaded mmscope module does not let a tracer read its tracee ({e}); \
                     load the module built with this command (ABI version 4 or later), or run \
                     as root"
                ),
                _ => format!(
                    "procfs does not let this tracer read its tracee ({e}), a setuid program \
                     or one of another user; run as root"
                ),
            })
        }
        TraceError::Faults(e) => Failure(format!(
            "cannot record the page faults of `{program}` for --faults: perf_event_open: {e}; \
             the kernel needs CONFIG_PERF_EVENTS, and /proc/sys/kernel/perf_event_paranoid at \
             2 or lower (or run as root)"
        )),
        TraceError::Kernel(e) => Failure(format!(
            "cannot trace the kernel's functions for --kernel: {e}"
        )),
        other => Failure(format!("tracing `{program}` failed: {other}")),
    })?;
    summary.end(ending);
    let summary_line = serde_json::to_string(&summary).unwrap_or_default();
    let mut tail = if json {
        summary_line.clone() + "\n"
    } else {
        summary.text(&style)
    };
    if let Some((snap, names)) = &last {
        tail += &format!("\n{}", maps::picture(snap, names, &style));
    }
    if let Err(e) = sink.write_all(tail.as_bytes()).and_then(|()| sink.flush()) {
        write_err.get_or_insert(e);
    }
    if let (Some(path), Some(mut page), Some(mut file)) = (html, page, page_file) {
        page.push(&summary_line);
        file.write_all(page.finish().as_bytes()).map_err(|e| {
            Failure(format!(
                "cannot write the page to {}: {e}; choose a writable path for --html",
                path.display()
            ))
        })?;
    }
    if let Some(path) = svg {
        let title = format!("mmscope trace: {program}");
        mmscope::plot::write_svg(&path, &title, &summary.points).map_err(|e| {
            Failure(format!(
                "cannot write the plot to {}: {e}; choose a writable path for --svg",
                path.display()
            ))
        })?;
    }
    if let (Some(prefix), Some(resident)) = (&flame, &summary.resident) {
        let root = program.rsplit('/').next().unwrap_or(&program);
        for (peak, which, title) in [(true, "peak", "at its peak"), (false, "exit", "at exit")] {
            let folded = resident.folded(peak, root);
            let base = prefix.as_os_str().to_string_lossy();
            let title = format!("{root}: resident anonymous memory {title}, by first touch");
            mmscope::flame::write(&format!("{base}-{which}"), &title, &folded).map_err(|e| {
                Failure(format!(
                    "cannot write the flame graph {base}-{which}.svg: {e}; choose a writable \
                     prefix for --flame"
                ))
            })?;
        }
    }
    if let Some(e) = write_err {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(Failure(format!("cannot write the trace: {e}")));
        }
    }
    Ok(ExitCode::from(ending.shell_status().clamp(0, 255) as u8))
}

/// Whether `a` and `b` name one file: the same path, or the same file by its device and
/// inode where both exist.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

fn report_cmd(input: &std::path::Path, output: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let stdin = input.as_os_str() == "-";
    let output = match (output, stdin) {
        (Some(path), _) => path,
        (None, false) => input.with_extension("html"),
        (None, true) => {
            return Err(Failure(
                "the trace comes from stdin, so the page has no name: give one with -o FILE"
                    .to_string(),
            ))
        }
    };
    if !stdin && same_file(&output, input) {
        return Err(Failure(format!(
            "{} would be written over the trace it is made from; give another name with -o FILE",
            output.display()
        )));
    }
    let text = if stdin {
        io::read_to_string(io::stdin())
    } else {
        std::fs::read_to_string(input)
    }
    .map_err(|e| {
        Failure(format!(
            "cannot read the trace {}: {e}; give the file `mmscope trace --json -o FILE` wrote",
            input.display()
        ))
    })?;
    let lines = mmscope::html::read_trace(&text).map_err(|e| {
        Failure(format!(
            "{} is not a trace of `mmscope trace --json`: {e}; give the file that command \
             wrote with -o",
            input.display()
        ))
    })?;
    std::fs::write(&output, mmscope::html::page(&lines)).map_err(|e| {
        Failure(format!(
            "cannot write the page to {}: {e}; choose a writable path for -o",
            output.display()
        ))
    })?;
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}

fn lazy_cmd(dev: &Device, run: Lazy, json: bool) -> Result<ExitCode, Failure> {
    let Lazy { size, pattern, .. } = run;
    let stats = dev.mem_stats()?;
    let limit = stats.obj_limit_pages * page_size();
    // What this user may still allocate: the rest of its allowance (max_mb), and of the
    // module-wide cap (total_max_mb) shared by all users. Both are in the fdinfo of modules
    // that have them; a module without them had one cap for all users (max_mb).
    let info = dev.fdinfo().unwrap_or_default();
    let user_room = stats
        .max_pages
        .saturating_sub(*info.get("mmscope-user-pages").unwrap_or(&stats.pages));
    let total_room = info
        .get("mmscope-total-max-pages")
        .map_or(u64::MAX, |max| max.saturating_sub(stats.pages));
    let (room, cap) = if user_room <= total_room {
        (user_room, "your allowance, the module parameter max_mb")
    } else {
        (
            total_room,
            "the module-wide cap of all users, the module parameter total_max_mb",
        )
    };
    let room = room * page_size();
    if size > room {
        return Err(Failure(format!(
            "{} is more than the module can still allocate for you ({} of {cap}, are free); \
             give a smaller SIZE",
            units::size(size),
            units::size(room)
        )));
    }
    if size > limit {
        return Err(Failure(format!(
            "{} is more than an object may hold ({}, the module parameter object_max_mb); give a \
             smaller SIZE",
            units::size(size),
            units::size(limit)
        )));
    }
    let pages = size / page_size();
    let mut out = io::stdout().lock();
    let mut res = Ok(());
    if !json {
        res = write!(
            out,
            "{} of /dev/mmscope (MAP_SHARED{}) and of anonymous memory (MAP_PRIVATE), {pages} \
             pages each, touched {}:\n\n{:>8}  {:>10} {:>10} {:>13}   {:>10} {:>10}\n{:>8}  {:>10} {:>10} {:>13}   {:>10} {:>10}\n",
            units::size(size),
            if run.sequential {
                ", advised MADV_SEQUENTIAL"
            } else {
                ""
            },
            match pattern {
                Pattern::Seq => "page by page, in order".to_string(),
                Pattern::Stride(n) => format!("every {n}th page"),
                Pattern::Random(seed) => format!("page by page, in random order (seed {seed})"),
            },
            "", "mmscope", "", "", "anonymous", "",
            "touched", "faults", "pages held",
            if run.sequential { "fault-ahead" } else { "fault-around" },
            "faults", "RssAnon +"
        );
    }
    let run = run.run(dev, |row: &Row| {
        if res.is_err() {
            return;
        }
        res = if json {
            writeln!(out, "{}", serde_json::to_string(row).unwrap_or_default())
        } else if row.phase == "second_mapping" {
            writeln!(
                out,
                "\nA second mapping of the same object, reading the {} touched pages back: {} \
                 faults, {} pages mapped by fault-around, {} pages held (none new).",
                row.touched, row.mmscope_faults, row.mmscope_faultaround, row.mmscope_pages
            )
        } else {
            writeln!(
                out,
                "{:>8}  {:>10} {:>10} {:>13}   {:>10} {:>10}",
                row.touched,
                row.mmscope_faults,
                row.mmscope_pages,
                row.mmscope_faultaround,
                row.anon_faults,
                row.anon_pages
            )
        };
    });
    // The device refuses a mapping that reaches past the object's size limit with EINVAL,
    // which other causes share: the limit, read again, tells which it was.
    let limit_now = || dev.mem_stats().map(|s| s.obj_limit_pages * page_size());
    run.map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) if limit_now().is_ok_and(|limit| size > limit) => Failure(format!(
            "the device refused to map {}: it is more than an object may hold ({}, the module \
             parameter object_max_mb); give a smaller SIZE",
            units::size(size),
            units::size(limit_now().unwrap_or(0))
        )),
        Some(libc::EFBIG) => Failure(format!(
            "{} does not fit in this machine's address space; give a smaller SIZE",
            units::size(size)
        )),
        Some(libc::ENOMEM) => Failure(format!(
            "there is not enough memory to map {} twice; give a smaller SIZE",
            units::size(size)
        )),
        _ => Failure(format!("the experiment failed: {e}")),
    })?;
    finish_output(res)?;
    Ok(ExitCode::SUCCESS)
}
