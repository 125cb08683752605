// SPDX-License-Identifier: GPL-2.0

//! Tests of the `mmscope` command (`MMSCOPE_BIN`), each against ground truth it does not
//! compute itself: `/proc/<pid>/maps`, `stat` and `status`, what a helper program says it did,
//! and the arithmetic of demand paging.

use crate::harness::{Context, Outcome, TestResult};
use crate::sys::{self, kind_of_name, page_size, parse_maps_line, stat_field, status_kb};
use crate::{check, check_eq, skip};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

/// The `mmscope` binary the guest carries.
fn bin() -> Result<String, Outcome> {
    match std::env::var("MMSCOPE_BIN") {
        Ok(p) => Ok(p),
        Err(_) => Err(Outcome::Skip("MMSCOPE_BIN is not set".into())),
    }
}

/// `mmscope ARGS`, with stdin closed and NO_COLOR unset.
fn mmscope(args: &[&str]) -> Result<Command, Outcome> {
    let mut cmd = Command::new(bin()?);
    cmd.args(args).stdin(Stdio::null()).env_remove("NO_COLOR");
    Ok(cmd)
}

/// A child started with [`spawn_as`], its stdin, stdout and stderr on pipes.
pub(crate) struct UserChild {
    pub(crate) pid: i32,
    stdin: Option<std::fs::File>,
    pub(crate) stdout: Option<std::fs::File>,
    stderr: Option<std::fs::File>,
}

/// Starts `argv` as `uid` (group `uid`, no supplementary groups).
///
/// By hand rather than with `std::process::Command`: whenever it must fork (as for
/// `CommandExt::uid`), std makes an `AF_UNIX` socket pair, and the guest kernel has no
/// networking.
pub(crate) fn spawn_as(uid: u32, argv: &[&str]) -> std::io::Result<UserChild> {
    spawn_with(uid, argv, None)
}

/// As [`spawn_as`], with the execution domain `persona` (`personality(2)`) set in the child
/// before it execs, for the program and everything it starts.
pub(crate) fn spawn_with(
    uid: u32,
    argv: &[&str],
    persona: Option<libc::c_ulong>,
) -> std::io::Result<UserChild> {
    use std::ffi::CString;
    use std::os::fd::FromRawFd;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(*a).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL)))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut pipes = [[0; 2]; 3];
    for p in pipes.iter_mut() {
        // SAFETY: `p` has room for two descriptors.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: The test process is single-threaded; the child makes only async-signal-safe
    // system calls before it execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let id = uid as libc::c_long;
        // SAFETY: dup2 onto the standard descriptors (the pipes are close-on-exec), then the
        // raw credential calls (the child is single-threaded), then exec or exit.
        unsafe {
            libc::dup2(pipes[0][0], 0);
            libc::dup2(pipes[1][1], 1);
            libc::dup2(pipes[2][1], 2);
            if persona.is_some_and(|p| libc::personality(p) == -1) {
                libc::_exit(126);
            }
            if libc::syscall(libc::SYS_setgroups, 0, 0) == 0
                && libc::syscall(libc::SYS_setgid, id) == 0
                && libc::syscall(libc::SYS_setuid, id) == 0
            {
                libc::execv(ptrs[0], ptrs.as_ptr());
            }
            libc::_exit(127);
        }
    }
    // SAFETY: The parent owns its ends of the pipes, and closes the child's.
    unsafe {
        libc::close(pipes[0][0]);
        libc::close(pipes[1][1]);
        libc::close(pipes[2][1]);
        Ok(UserChild {
            pid,
            stdin: Some(std::fs::File::from_raw_fd(pipes[0][1])),
            stdout: Some(std::fs::File::from_raw_fd(pipes[1][0])),
            stderr: Some(std::fs::File::from_raw_fd(pipes[2][0])),
        })
    }
}

impl UserChild {
    /// Closes its stdin, collects its output and waits for it.
    pub(crate) fn output(mut self) -> std::io::Result<(Option<i32>, String, String)> {
        drop(self.stdin.take());
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut f) = self.stdout.take() {
            f.read_to_string(&mut out)?;
        }
        if let Some(mut f) = self.stderr.take() {
            f.read_to_string(&mut err)?;
        }
        Ok((self.wait(), out, err))
    }

    /// Waits for it; its exit status, `None` if a signal ended it.
    fn wait(&mut self) -> Option<i32> {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        if self.pid > 0 && unsafe { libc::waitpid(self.pid, &mut status, 0) } == self.pid {
            self.pid = 0;
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        None
    }
}

impl Drop for UserChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.wait();
    }
}

/// Runs a command to its end.
fn output(mut cmd: Command) -> Result<Output, Outcome> {
    cmd.output().context("run mmscope")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The exit status and one-sentence error of a run that must fail.
fn expect_failure(out: &Output, code: i32, what: &str, needle: &str) -> TestResult {
    let err = text(&out.stderr);
    check_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit status (stderr: {err})"
    );
    check!(
        err.contains(needle),
        "{what}: stderr should say {needle:?}: {err:?}"
    );
    check!(
        out.stdout.is_empty(),
        "{what}: nothing on stdout: {:?}",
        text(&out.stdout)
    );
    Ok(())
}

/// A helper process (`--helper NAME`) and what it printed on its first line. It ends when
/// dropped (its stdin closes).
struct Helper {
    child: UserChild,
    first: Value,
}

impl Helper {
    /// Starts `--helper name` as `uid` (0: root) and reads its first line.
    fn start(name: &str, uid: u32) -> Result<Self, Outcome> {
        let exe = std::env::current_exe().context("current_exe")?;
        let exe = exe.to_string_lossy().into_owned();
        let mut child = spawn_as(uid, &[&exe, "--helper", name]).context("start the helper")?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .context("read the helper's first line")?;
        }
        let first = serde_json::from_str(&line)
            .map_err(|e| Outcome::Fail(format!("helper printed {line:?}: {e}")))?;
        Ok(Self { child, first })
    }

    fn pid(&self) -> i32 {
        self.child.pid
    }

    fn field(&self, key: &str) -> Result<u64, Outcome> {
        self.first[key]
            .as_u64()
            .ok_or_else(|| Outcome::Fail(format!("helper line has no {key}: {}", self.first)))
    }
}

fn json(line: &str) -> Result<Value, Outcome> {
    serde_json::from_str(line).map_err(|e| Outcome::Fail(format!("not JSON ({e}): {line:?}")))
}

fn u(v: &Value, key: &str) -> Result<u64, Outcome> {
    v[key]
        .as_u64()
        .ok_or_else(|| Outcome::Fail(format!("no number {key} in {v}")))
}

/// The `mmscope maps --json` document for `pid`, checked against `/proc/<pid>/maps`, `stat`
/// and `status`, all read while the process holds still.
fn check_maps_json(doc: &Value, pid: i32) -> TestResult {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("read maps")?;
    let lines: Vec<&str> = maps
        .lines()
        .filter(|l| !l.ends_with("[vsyscall]"))
        .collect();
    let vmas = doc["vmas"]
        .as_array()
        .ok_or_else(|| Outcome::Fail(format!("no vmas in {doc}")))?;
    check_eq!(vmas.len(), lines.len(), "VMAs against maps lines");
    for (v, line) in vmas.iter().zip(&lines) {
        let m = parse_maps_line(line)
            .ok_or_else(|| Outcome::Fail(format!("cannot parse maps line {line:?}")))?;
        let dev = format!("{:02x}:{:02x}", m.dev.0, m.dev.1);
        let name = if m.name.is_empty() {
            None
        } else {
            Some(m.name)
        };
        let ours = (
            u(v, "start")?,
            u(v, "end")?,
            v["perms"].as_str(),
            u(v, "offset")?,
            v["dev"].as_str(),
            u(v, "inode")?,
            v["kind"].as_str(),
        );
        let want_kind = mmscope::abi::kind::name(kind_of_name(m.name));
        let theirs = (
            m.start,
            m.end,
            Some(m.perms),
            m.offset,
            Some(dev.as_str()),
            m.inode,
            Some(want_kind),
        );
        check_eq!(ours, theirs, "maps --json VMA against {line:?}");
        if let Some(name) = name.filter(|n| !n.starts_with("[vvar")) {
            check_eq!(v["name"].as_str(), Some(name), "name of {line:?}");
        }
        check_eq!(u(v, "size")?, m.end - m.start, "size of {line:?}");
    }
    let s = &doc["summary"];
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("read stat")?;
    for (name, n) in [
        ("start_code", 26),
        ("end_code", 27),
        ("start_stack", 28),
        ("start_data", 45),
        ("end_data", 46),
        ("start_brk", 47),
        ("arg_start", 48),
        ("env_end", 51),
    ] {
        check_eq!(
            Some(u(s, name)?),
            stat_field(&stat, n),
            "{name} against stat field {n}"
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("read status")?;
    let pk = page_size() as u64 / 1024;
    for (name, key) in [
        ("total_vm", "VmSize"),
        ("data_vm", "VmData"),
        ("rss_anon", "RssAnon"),
        ("rss_file", "RssFile"),
    ] {
        check_eq!(
            Some(u(s, name)? * pk),
            status_kb(&status, key),
            "{name} against {key}"
        );
    }
    check_eq!(
        u(s, "map_count")?,
        lines.len() as u64,
        "map_count against maps lines"
    );
    check_eq!(u(s, "page_size")?, page_size() as u64, "page_size");
    Ok(())
}

/// `mmscope maps --json PID` equals procfs for a process that holds still, and its `brk` is
/// the one the process itself reads with `brk(0)`.
pub fn cli_maps_json_matches_procfs() -> TestResult {
    let helper = Helper::start("hold", 0)?;
    let pid = helper.pid();
    let out = output(mmscope(&["maps", "--json", &pid.to_string()])?)?;
    check_eq!(
        out.status.code(),
        Some(0),
        "maps --json: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    check_eq!(
        stdout.lines().count(),
        1,
        "maps --json prints one line: {stdout:?}"
    );
    let doc = json(&stdout)?;
    check_eq!(doc["pid"].as_i64(), Some(pid as i64), "pid");
    check_eq!(
        u(&doc["summary"], "brk")?,
        helper.field("brk")?,
        "brk against the process's brk(0)"
    );
    let mapped = helper.field("mmap")?;
    check!(
        doc["vmas"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["start"].as_u64() == Some(mapped))),
        "the helper's mapping at {mapped:#x} is listed"
    );
    check_maps_json(&doc, pid)
}

/// The text of `mmscope maps PID`: the header's brk, a table row per maps line, and the
/// picture from high addresses to low with gaps and the heap at brk.
pub fn cli_maps_text_table_and_picture() -> TestResult {
    let helper = Helper::start("hold", 0)?;
    let pid = helper.pid();
    let out = output(mmscope(&["maps", &pid.to_string()])?)?;
    check_eq!(out.status.code(), Some(0), "maps: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    check!(!stdout.contains('\x1b'), "no colour into a pipe");
    let brk = helper.field("brk")?;
    check!(
        stdout.contains(&format!("brk {brk:#x}")),
        "the header shows brk {brk:#x}:\n{stdout}"
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("read maps")?;
    for line in maps.lines().filter(|l| !l.ends_with("[vsyscall]")) {
        let m = parse_maps_line(line).ok_or_else(|| Outcome::Fail(format!("maps {line:?}")))?;
        let row = format!("{:012x} {:012x}", m.start, m.end);
        let found = stdout
            .lines()
            .find(|l| l.starts_with(&row))
            .ok_or_else(|| Outcome::Fail(format!("no table row for {line:?}:\n{stdout}")))?;
        check!(
            found.contains(m.perms) && found.contains(&((m.end - m.start) / 1024).to_string()),
            "table row {found:?} against {line:?}"
        );
    }
    // The picture: rows that start with an address, from high to low.
    let picture: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("high addresses on top"))
        .collect();
    let addrs: Vec<u64> = picture
        .iter()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .collect();
    check!(addrs.len() > 5, "the picture has rows:\n{stdout}");
    check!(
        addrs.windows(2).all(|w| w[0] >= w[1]),
        "picture rows go from high to low addresses: {addrs:x?}"
    );
    check!(
        picture.iter().filter(|l| l.contains("unmapped")).count() >= 2,
        "gaps are collapsed into labelled rows:\n{stdout}"
    );
    check!(
        picture
            .iter()
            .any(|l| l.contains("heap") && l.contains(&format!("brk {brk:#x}"))),
        "the picture's heap row shows brk:\n{stdout}"
    );
    check!(
        picture.iter().any(|l| l.contains("mmap_base")),
        "the picture marks mmap_base"
    );
    Ok(())
}

/// Runs `cmd` with stdout on a pseudo-terminal and returns what it printed.
fn on_terminal(mut cmd: Command) -> Result<String, Outcome> {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; the name, termios and winsize are optional.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        skip!(
            "no pseudo-terminals here: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: openpty made both descriptors, which we now own.
    let (master, slave) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    };
    cmd.stdout(Stdio::from(slave));
    let status = cmd.status().context("run mmscope on a terminal")?;
    drop(cmd);
    check_eq!(status.code(), Some(0), "mmscope on a terminal");
    let mut out = Vec::new();
    let mut master = master;
    // Reading the master after the slave closed ends with EIO.
    let _ = master.read_to_end(&mut out);
    Ok(text(&out))
}

/// Colour: on a terminal by default, never into a pipe, never with NO_COLOR, always with
/// `--color always`.
pub fn cli_maps_colour_rules() -> TestResult {
    let tty = on_terminal(mmscope(&["maps"])?)?;
    check!(tty.contains("\x1b["), "colour on a terminal");
    let mut no_color = mmscope(&["maps"])?;
    no_color.env("NO_COLOR", "1");
    check!(
        !on_terminal(no_color)?.contains('\x1b'),
        "no colour with NO_COLOR"
    );
    let piped = output(mmscope(&["maps"])?)?;
    check!(
        !text(&piped.stdout).contains('\x1b'),
        "no colour into a pipe"
    );
    let forced = output(mmscope(&["--color", "always", "maps"])?)?;
    check!(
        text(&forced.stdout).contains("\x1b["),
        "colour with --color always"
    );
    Ok(())
}

/// Right after `insmod` (the guest's init loads the module and, having no udev, applies the
/// shipped udev rule), the device has the rule's mode, and an ordinary user (uid 1000, no
/// capabilities) opens it and traces a program of theirs with `mmscope trace`: every memory
/// call the program says it made is in the trace.
pub fn cli_user_traces_after_insmod() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to create processes of other users");
    }
    let Ok(rule) = std::env::var("MMSCOPE_UDEV_RULE") else {
        skip!("MMSCOPE_UDEV_RULE does not name the shipped udev rule");
    };
    let rules = std::fs::read_to_string(&rule).context("read the udev rule")?;
    let want = sys::udev_rule_mode(&rules)
        .ok_or_else(|| Outcome::Fail(format!("{rule} sets no MODE for mmscope")))?;
    let meta = std::fs::metadata(mmscope::DEVICE_PATH).context("stat the device")?;
    check_eq!(
        meta.permissions().mode() & 0o7777,
        want,
        "the device's mode is the rule's ({rule})"
    );

    // The user has no capability: setuid from root to another user clears them.
    let (code, status, err) = spawn_as(1000, &["/bin/cat", "/proc/self/status"])
        .and_then(UserChild::output)
        .context("cat /proc/self/status as uid 1000")?;
    check_eq!(code, Some(0), "cat as uid 1000: {err}");
    for cap in ["CapPrm", "CapEff"] {
        let line = status.lines().find(|l| l.starts_with(cap)).unwrap_or("");
        check!(
            line.ends_with("0000000000000000"),
            "uid 1000 has no capability: {line:?}"
        );
    }

    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let path = "/tmp/mmscope-user-trace.json";
    let _ = std::fs::remove_file(path);
    let bin = bin()?;
    let (code, out, err) = spawn_as(
        1000,
        &[
            &bin, "trace", "--json", "-o", path, "--", &exe, "--helper", "calls",
        ],
    )
    .and_then(UserChild::output)
    .context("run mmscope trace as uid 1000")?;
    check_eq!(code, Some(0), "mmscope trace as uid 1000: {err}");
    check!(err.is_empty(), "nothing on stderr with -o: {err}");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path).context("stat")?);
    check_eq!(owner, 1000, "the trace is the user's file");
    let said: Vec<Value> = out.lines().map(json).collect::<Result<_, _>>()?;
    check!(said.len() >= 10, "the helper made its calls: {said:?}");
    let events = trace_lines(path)?;
    // Through the device: without it the command would fall back to procfs and still trace.
    check_eq!(
        events.first().and_then(|e| e["source"].as_str()),
        Some("module"),
        "the user's trace read the address space through /dev/mmscope"
    );
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(summary["event"].as_str(), Some("summary"), "last event");
    check_eq!(summary["exit_code"].as_i64(), Some(0), "exit code");
    println!(
        "# uid 1000 (CapEff 0), /dev/mmscope mode {want:o} from the udev rule: mmscope trace of \
         its own program through the module, {} memory calls, exit 0",
        events.iter().filter(|e| e["event"] == "syscall").count()
    );
    let mut steps = events.iter().filter(|e| e["event"] == "syscall");
    for want in &said {
        check!(
            steps.any(|s| s["syscall"] == want["call"]
                && s["args"] == want["args"]
                && s["ret"].as_i64() == want["ret"].as_i64()),
            "{want} is in the trace, in order"
        );
    }
    Ok(())
}

/// An unprivileged user reads another process of theirs with `mmscope maps PID` (the command
/// seizes it, reads, and lets go: afterwards the process is not traced and still running),
/// and is refused another user's process with a sentence that says why.
pub fn cli_maps_other_process_as_user() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to create processes of other users");
    }
    let own = Helper::start("hold", 1000)?;
    let pid = own.pid();
    let pid_arg = pid.to_string();
    let bin = bin()?;
    let (code, out, err) = spawn_as(1000, &[&bin, "maps", "--json", &pid_arg])
        .and_then(UserChild::output)
        .context("run mmscope as uid 1000")?;
    check_eq!(code, Some(0), "maps of an own process: {err}");
    let doc = json(&out)?;
    check_eq!(u(&doc["summary"], "brk")?, own.field("brk")?, "brk");
    check_maps_json(&doc, pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("status")?;
    check!(
        status.lines().any(|l| l == "TracerPid:\t0"),
        "the process is let go afterwards: {status}"
    );
    check!(
        status
            .lines()
            .filter(|l| l.starts_with("State:"))
            .any(|l| !matches!(l.split_whitespace().nth(1), Some("t" | "T"))),
        "the process is not left stopped: {status}"
    );

    let (code, out, err) = spawn_as(1001, &[&bin, "maps", &pid_arg])
        .and_then(UserChild::output)
        .context("run mmscope as uid 1001")?;
    check_eq!(code, Some(1), "maps of another user's process: exit status");
    check!(out.is_empty(), "nothing on stdout: {out}");
    check!(
        err.contains("not allowed to read process") && err.contains("CAP_SYS_PTRACE"),
        "the refusal says why and what would allow it: {err}"
    );
    Ok(())
}

/// The lines of a `--json` trace written to `path`, each parsed.
fn trace_lines(path: &str) -> Result<Vec<Value>, Outcome> {
    let body = std::fs::read_to_string(path).context("read the trace")?;
    body.lines().map(json).collect()
}

/// `SELFTESTS --helper HELPER` untraced, stdin closed, which must exit 0: its output.
fn helper_untraced(helper: &str) -> Result<Output, Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let plain = Command::new(exe)
        .args(["--helper", helper])
        .stdin(Stdio::null())
        .output()
        .context("run the helper")?;
    check_eq!(
        plain.status.code(),
        Some(0),
        "untraced: {}",
        text(&plain.stderr)
    );
    Ok(plain)
}

/// `mmscope trace --json -o PATH -- SELFTESTS --helper HELPER`, which must exit 0: what the
/// helper printed (one JSON line) and the trace's lines.
fn trace_helper(helper: &str, path: &str) -> Result<(Value, Vec<Value>), Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let out = output(mmscope(&[
        "trace", "--json", "-o", path, "--", &exe, "--helper", helper,
    ])?)?;
    check_eq!(out.status.code(), Some(0), "trace: {}", text(&out.stderr));
    Ok((json(text(&out.stdout).trim())?, trace_lines(path)?))
}

/// Traces `--helper calls`, which makes known memory system calls and prints them: each
/// appears in the trace, in order, with its arguments and result, and its effect on `brk`,
/// the VMAs and the summary is the one the call must have.
pub fn cli_trace_known_calls() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let path = "/tmp/mmscope-trace-calls.json";
    let out = output(mmscope(&[
        "trace", "--json", "-o", path, "--", &exe, "--helper", "calls",
    ])?)?;
    check_eq!(out.status.code(), Some(0), "trace: {}", text(&out.stderr));
    check!(
        out.stderr.is_empty(),
        "nothing on stderr with -o: {}",
        text(&out.stderr)
    );
    let said: Vec<Value> = text(&out.stdout)
        .lines()
        .map(json)
        .collect::<Result<_, _>>()?;
    check!(said.len() >= 10, "the helper made its calls: {said:?}");
    let events = trace_lines(path)?;
    check_eq!(
        events.first().and_then(|e| e["event"].as_str()),
        Some("exec"),
        "first event"
    );
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(summary["event"].as_str(), Some("summary"), "last event");
    check_eq!(
        summary["exit_code"].as_i64(),
        Some(0),
        "exit code in the summary"
    );

    let steps: Vec<&Value> = events.iter().filter(|e| e["event"] == "syscall").collect();
    let page = page_size() as u64;
    let mut at = 0;
    let mut per_kind = std::collections::HashMap::<String, u64>::new();
    for s in &steps {
        *per_kind
            .entry(s["syscall"].as_str().unwrap_or("").into())
            .or_default() += 1;
    }
    for want in &said {
        let name = want["call"].as_str().unwrap_or("");
        let ret = want["ret"].as_i64();
        let found = steps[at..]
            .iter()
            .position(|s| {
                s["syscall"].as_str() == Some(name)
                    && s["args"] == want["args"]
                    && s["ret"].as_i64() == ret
            })
            .ok_or_else(|| Outcome::Fail(format!("{want} is not in the trace after step {at}")))?;
        let step = steps[at + found];
        at += found + 1;
        check_eq!(step["ret"].as_i64(), ret, "result of {want}");
        let added = step["added"].as_array().cloned().unwrap_or_default();
        let removed = step["removed"].as_array().cloned().unwrap_or_default();
        let args: Vec<u64> = want["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let ret = ret.unwrap_or(0);
        match name {
            "brk" => {
                check_eq!(u(step, "brk_after")?, ret as u64, "brk after {want}");
                if args[0] != 0 {
                    check_eq!(
                        u(step, "brk_after")?,
                        args[0],
                        "brk is exact, not page aligned"
                    );
                    check_eq!(
                        u(step, "heap_bytes")?,
                        args[0] - u(step, "start_brk")?,
                        "heap bytes"
                    );
                }
            }
            "mmap" => {
                // The new mapping may merge with a neighbour of the same kind.
                let end = ret as u64 + args[1];
                check!(
                    added.iter().any(|v| v["start"].as_u64() <= Some(ret as u64)
                        && v["end"].as_u64() >= Some(end)),
                    "mmap {want} adds a VMA covering {ret:#x}..{end:#x}: {added:?}"
                );
            }
            "mprotect" => {
                check!(
                    added.iter().any(|v| v["start"].as_u64() == Some(args[0])
                        && v["end"].as_u64() == Some(args[0] + args[1])
                        && v["perms"] == "---p"),
                    "mprotect splits off a ---p VMA: {added:?}"
                );
            }
            "madvise" => {
                check!(
                    added.is_empty() && removed.is_empty(),
                    "madvise changes no VMA"
                );
                let before = u(&step["rss_before"], "anon")?;
                let after = u(&step["rss"], "anon")?;
                check_eq!(before - after, page, "MADV_DONTNEED drops the touched page");
            }
            "mremap" => {
                check!(
                    added.iter().any(|v| v["start"].as_u64() == Some(ret as u64)
                        && v["size"].as_u64() == Some(8 * page)),
                    "mremap adds the grown mapping: {added:?}"
                );
                check!(
                    removed.iter().any(|v| v["start"].as_u64() == Some(args[0])),
                    "and removes the old one: {removed:?}"
                );
            }
            "munmap" if ret == 0 => {
                check!(
                    removed.iter().any(|v| v["start"].as_u64() <= Some(args[0])),
                    "munmap removes a VMA: {removed:?}"
                );
            }
            "munmap" => {
                check_eq!(
                    step["errno"].as_str(),
                    Some("EINVAL"),
                    "a failed munmap's errno"
                );
                check!(
                    added.is_empty() && removed.is_empty(),
                    "a failed call changes nothing"
                );
            }
            "shmat" => {
                check!(
                    added.iter().any(|v| v["start"].as_u64() == Some(ret as u64)
                        && v["kind"] == "shmem"
                        && v["perms"] == "rw-s"),
                    "shmat adds a shared VMA: {added:?}"
                );
            }
            "shmdt" => {
                check!(
                    removed.iter().any(|v| v["start"].as_u64() == Some(args[0])),
                    "shmdt removes it"
                );
            }
            _ => {}
        }
    }
    for (name, n) in &per_kind {
        check_eq!(
            summary["calls"][name.as_str()].as_u64(),
            Some(*n),
            "summary count of {name}"
        );
    }
    check!(
        summary["failed"].as_u64() >= Some(1),
        "the failed munmap is counted"
    );
    Ok(())
}

/// Threads: every thread's calls are traced with its own tid, and each new thread is reported.
pub fn cli_trace_threads() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let path = "/tmp/mmscope-trace-threads.json";
    let out = output(mmscope(&[
        "trace", "--json", "-o", path, "--", &exe, "--helper", "threads",
    ])?)?;
    check_eq!(out.status.code(), Some(0), "trace: {}", text(&out.stderr));
    let said: Vec<Value> = text(&out.stdout)
        .lines()
        .map(json)
        .collect::<Result<_, _>>()?;
    check_eq!(said.len(), 2, "two threads reported");
    let events = trace_lines(path)?;
    let started: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "thread")
        .filter_map(|e| e["tid"].as_u64())
        .collect();
    for t in &said {
        let tid = u(t, "tid")?;
        let addr = u(t, "mmap")?;
        check!(
            started.contains(&tid),
            "thread {tid} reported as started: {started:?}"
        );
        for call in ["mmap", "munmap"] {
            check!(
                events.iter().any(|e| e["event"] == "syscall"
                    && e["tid"].as_u64() == Some(tid)
                    && e["syscall"] == call
                    && (e["ret"].as_u64() == Some(addr) || e["args"][0].as_u64() == Some(addr))),
                "{call} of {addr:#x} by thread {tid} is in the trace"
            );
        }
    }
    let summary = events.last().cloned().unwrap_or_default();
    check!(
        summary["threads"].as_u64() >= Some(2),
        "summary counts the threads: {summary}"
    );
    Ok(())
}

/// A program that exits with a status, or is killed mid-trace: the trace ends cleanly, the
/// summary says how, and `mmscope trace` exits as a shell would report the program.
pub fn cli_trace_exit_and_kill() -> TestResult {
    let path = "/tmp/mmscope-trace-end.json";
    let out = output(mmscope(&[
        "trace", "--json", "-o", path, "--", "sh", "-c", "exit 3",
    ])?)?;
    check_eq!(
        out.status.code(),
        Some(3),
        "the program's status: {}",
        text(&out.stderr)
    );
    let summary = trace_lines(path)?.last().cloned().unwrap_or_default();
    check_eq!(summary["exit_code"].as_i64(), Some(3), "summary exit code");

    let out = output(mmscope(&[
        "trace",
        "--json",
        "-o",
        path,
        "--",
        "sh",
        "-c",
        "kill -9 $$",
    ])?)?;
    check_eq!(
        out.status.code(),
        Some(128 + 9),
        "128 + SIGKILL: {}",
        text(&out.stderr)
    );
    let events = trace_lines(path)?;
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(
        summary["signal"].as_i64(),
        Some(9),
        "summary signal: {summary}"
    );
    check!(
        events.iter().any(|e| e["event"] == "exec"),
        "the program started"
    );

    // Killed from outside while it runs (its comm is `sleep`: it has execed), and as soon as
    // it exists (before or during its exec, whose event a SIGKILL may overtake): either way
    // the end is the program's, as a shell would report it.
    for early in [false, true] {
        let how = if early { "at once" } else { "while it runs" };
        let mut cmd = mmscope(&[
            "trace",
            "-o",
            "/tmp/mmscope-trace-killed.txt",
            "--",
            "sleep",
            "30",
        ])?;
        if early {
            // A large environment, which execve copies before the new program starts: the
            // kill lands in the exec more often than not.
            for i in 0..12 {
                cmd.env(format!("MMSCOPE_TEST_PAD{i}"), "x".repeat(100 << 10));
            }
        }
        let mut child = cmd.spawn().context("start the trace")?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let sleeper = loop {
            let found = std::fs::read_dir("/proc")
                .context("list /proc")?
                .find_map(|e| {
                    let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let ppid = stat_field(&stat, 4)?;
                    (ppid == child.id() as u64 && (early || stat.contains("(sleep)")))
                        .then_some(pid)
                });
            if let Some(pid) = found {
                break pid;
            }
            check!(
                std::time::Instant::now() < deadline,
                "the traced sleep never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(if early { 1 } else { 50 }));
        };
        // SAFETY: kill has no memory-safety requirements.
        unsafe { libc::kill(sleeper, libc::SIGKILL) };
        let status = child.wait().context("wait for the trace")?;
        check_eq!(status.code(), Some(128 + 9), "killed from outside {how}");
        let body =
            std::fs::read_to_string("/tmp/mmscope-trace-killed.txt").context("read trace")?;
        check!(
            body.contains("killed by SIGKILL"),
            "killed {how}: the text summary says so:\n{body}"
        );
    }
    Ok(())
}

/// The text trace shows each call as strace would, brk before and after, the VMA diff and the
/// RSS counters; the SVG parses and holds the three series, one point pair per snapshot.
pub fn cli_trace_text_and_svg() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let svg = "/tmp/mmscope-trace.svg";
    let out = output(mmscope(&[
        "trace", "--svg", svg, "--", &exe, "--helper", "calls",
    ])?)?;
    check_eq!(out.status.code(), Some(0), "trace: {}", text(&out.stderr));
    let err = text(&out.stderr);
    check!(!err.contains('\x1b'), "no colour into a pipe");
    for needle in [
        "exec pid ",
        "brk(NULL) = 0x",
        "mmap(NULL, ",
        "PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x",
        "munmap(",
        "= -1 EINVAL (Invalid argument)",
        "      brk   0x",
        "      + ",
        "      - ",
        "RSS anon ",
        "summary: ",
        "peak heap ",
        "the program exited with status 0",
    ] {
        check!(
            err.contains(needle),
            "the text trace shows {needle:?}:\n{err}"
        );
    }
    // JSON stays out of the text, and the program's own output stays on its stdout.
    check!(!err.contains("{\""), "no JSON in the text trace");
    check!(
        text(&out.stdout).contains("\"call\":\"brk\""),
        "the program's stdout is its own"
    );

    let body = std::fs::read_to_string(svg).context("read the SVG")?;
    let doc = roxmltree::Document::parse(&body)
        .map_err(|e| Outcome::Fail(format!("the SVG does not parse: {e}")))?;
    check_eq!(doc.root_element().tag_name().name(), "svg", "root element");
    let texts: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for series in mmscope::plot::SERIES {
        check!(texts.contains(&series), "the legend names {series:?}");
    }
    let steps = text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('#'))
        .count();
    let lines: Vec<usize> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "polyline")
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect();
    check!(
        lines.iter().filter(|&&n| n >= 2 * steps).count() >= 3,
        "three series with a point per snapshot ({steps} steps): {lines:?}"
    );
    Ok(())
}

/// How far `RssAnon`, `RssFile` and `RssShmem` in `/proc/<pid>/status` may be from the sum
/// of the kernel's per-CPU RSS counters, which the module reads (`get_mm_counter_sum()`), in
/// pages. In the kernels this project builds (7.2, 7.3) `task_mem()` (`fs/proc/task_mmu.c`)
/// reads the same sum: 0. Before (the change came in 6.16), it read `get_mm_counter()`, `percpu_counter_read_positive()`, which misses what each online
/// CPU has not folded in yet: less than `percpu_counter_batch`, max(32, 2 x online CPUs)
/// (`lib/percpu_counter.c`), per CPU.
fn rss_status_bound() -> u64 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= (6, 16) {
        return 0;
    }
    // SAFETY: sysconf has no memory-safety requirements.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
    32u64.max(2 * cpus) * cpus
}

/// Stops `pid` (`SIGSTOP`) and waits until procfs shows it stopped; lets it go on drop.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Result<Self, Outcome> {
        // SAFETY: A signal to our own child.
        if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
            return Err(Outcome::Fail(format!(
                "SIGSTOP {pid}: {}",
                std::io::Error::last_os_error()
            )));
        }
        let stopped = Self(pid);
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
            {
                return Ok(stopped);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(Outcome::Fail(format!("process {pid} did not stop")))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: A signal to our own child.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// `mmscope maps --json --source SOURCE PID`, as a document.
fn maps_doc(source: &str, pid: i32) -> Result<Value, Outcome> {
    let out = output(mmscope(&[
        "maps",
        "--json",
        "--source",
        source,
        &pid.to_string(),
    ])?)?;
    check_eq!(
        out.status.code(),
        Some(0),
        "maps --source {source}: {}",
        text(&out.stderr)
    );
    let doc = json(&text(&out.stdout))?;
    check_eq!(doc["source"].as_str(), Some(source), "the source it names");
    Ok(doc)
}

/// The module and procfs, asked about the same stopped process, give the same VMAs, every
/// field of every one (kind and flags included), the same layout and VM counters, and RSS
/// counters within [`rss_status_bound`]; the peaks as procfs shows them (`VmHWM`, `VmPeak`,
/// with the current value folded in); procfs leaves `brk`, `mmap_base` and `task_size`
/// unknown, saying why.
pub fn cli_sources_agree_on_maps() -> TestResult {
    let helper = Helper::start("variety", 0)?;
    let pid = helper.pid();
    let (module, procfs) = {
        let _stopped = Stopped::new(pid)?;
        (maps_doc("module", pid)?, maps_doc("procfs", pid)?)
    };
    let (mv, pv) = (&module["vmas"], &procfs["vmas"]);
    let (mv, pv) = (
        mv.as_array().cloned().unwrap_or_default(),
        pv.as_array().cloned().unwrap_or_default(),
    );
    check_eq!(mv.len(), pv.len(), "as many VMAs from each source");
    for (m, p) in mv.iter().zip(&pv) {
        check_eq!(m, p, "the same VMA from the module and from procfs");
    }
    let kinds: std::collections::HashSet<&str> =
        mv.iter().filter_map(|v| v["kind"].as_str()).collect();
    let mut want = vec!["heap", "stack", "anon", "file", "shmem", "vdso", "vvar"];
    if helper.first["device"] == true {
        want.push("mmscope");
    }
    for kind in want {
        check!(kinds.contains(kind), "the helper has a VMA of kind {kind}");
    }
    for flag in ["lo", "dd", "dc", "mm", "sh", "ms", "ac", "nr"] {
        let somewhere = mv.iter().any(|v| {
            v["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == flag))
        });
        check!(
            somewhere || (flag == "mm" && helper.first["device"] != true),
            "some VMA has flag {flag}"
        );
    }

    let (ms, ps) = (&module["summary"], &procfs["summary"]);
    for field in [
        "page_size",
        "start_code",
        "end_code",
        "start_data",
        "end_data",
        "start_brk",
        "start_stack",
        "arg_start",
        "arg_end",
        "env_start",
        "env_end",
        "map_count",
        "total_vm",
        "locked_vm",
        "pinned_vm",
        "data_vm",
        "exec_vm",
        "stack_vm",
    ] {
        check_eq!(u(ps, field)?, u(ms, field)?, "summary field {field}");
    }
    let bound = rss_status_bound();
    println!("# RSS counters: status may differ from the module's sum by {bound} pages");
    for field in ["rss_anon", "rss_file", "rss_shmem"] {
        let (m, p) = (u(ms, field)?, u(ps, field)?);
        check!(
            m.abs_diff(p) <= bound,
            "{field}: module {m}, procfs {p}: more apart than {bound} pages"
        );
    }
    let rss = u(ms, "rss_anon")? + u(ms, "rss_file")? + u(ms, "rss_shmem")?;
    check!(
        u(ps, "hiwater_rss")?.abs_diff(u(ms, "hiwater_rss")?.max(rss)) <= 3 * bound,
        "VmHWM is max(hiwater_rss, rss): {ps} against {ms}"
    );
    check_eq!(
        u(ps, "hiwater_vm")?,
        u(ms, "hiwater_vm")?.max(u(ms, "total_vm")?),
        "VmPeak is max(hiwater_vm, total_vm)"
    );
    check_eq!(u(ms, "brk")?, helper.field("brk")?, "the module's brk");
    for field in ["brk", "mmap_base", "task_size"] {
        check!(u(ms, field)? > 0, "the module gives {field}");
        check!(ps[field].is_null(), "procfs leaves {field} unknown: {ps}");
        check!(
            ps["unknown"][field].as_str().is_some_and(|s| !s.is_empty()),
            "and says why"
        );
    }
    check!(
        ms["unknown"].as_object().is_some_and(|o| o.is_empty()),
        "the module knows every field: {ms}"
    );
    Ok(())
}

/// `mmscope trace --json --source SOURCE` of `--helper calls` with address-space randomization
/// off (`personality(ADDR_NO_RANDOMIZE)`, set before mmscope execs and inherited by the
/// program): the events.
fn trace_without_aslr(source: &str) -> Result<Vec<Value>, Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let path = format!("/tmp/mmscope-trace-{source}.json");
    let argv = [
        bin()?.as_str(),
        "--source",
        source,
        "trace",
        "--json",
        "-o",
        &path,
        "--",
        &exe,
        "--helper",
        "calls",
    ]
    .map(str::to_string);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let child = spawn_with(0, &argv, Some(libc::ADDR_NO_RANDOMIZE as libc::c_ulong))
        .context("start mmscope trace")?;
    let (code, _, err) = child.output().context("run mmscope trace")?;
    check_eq!(code, Some(0), "trace --source {source}: {err}");
    let events = trace_lines(&path)?;
    check_eq!(
        events.first().and_then(|e| e["source"].as_str()),
        Some(source),
        "the exec event names the source"
    );
    Ok(events)
}

/// VMA views with their flags cut to `known` (the flags a procfs trace reads at every call),
/// and without the inode of shared memory, a new object in each run (a System V segment).
fn masked(vmas: &Value, known: &[Value]) -> Vec<Value> {
    vmas.as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mut v = v.clone();
            if let Some(flags) = v["flags"].as_array_mut() {
                flags.retain(|f| known.contains(f));
            }
            if v["kind"] == "shmem" {
                v["inode"] = Value::Null;
            }
            v
        })
        .collect()
}

/// The same deterministic program, traced once through the module and once through procfs
/// with randomization off, shows the same calls with the same `brk` before and after each,
/// at exec and at exit, and the same VMA changes (flags compared as far as procfs reads them
/// at every call: `rd wr ex ms`).
pub fn cli_sources_agree_on_trace() -> TestResult {
    let module = trace_without_aslr("module")?;
    let procfs = trace_without_aslr("procfs")?;
    let known = procfs[0]["vma_flags_known"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    check_eq!(
        known.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
        vec!["rd", "wr", "ex", "ms"],
        "the flags procfs reads at every call"
    );
    check_eq!(
        module.len(),
        procfs.len(),
        "as many events from each source"
    );
    let mut brks = 0;
    for (m, p) in module.iter().zip(&procfs) {
        let event = m["event"].as_str().unwrap_or("");
        check_eq!(Some(event), p["event"].as_str(), "the same event");
        let keys: &[&str] = match event {
            "exec" => &["start_brk", "brk", "map_count"],
            "syscall" => &[
                "step",
                "syscall",
                "args",
                "ret",
                "start_brk",
                "brk_before",
                "brk_after",
                "map_count",
            ],
            "exit" => &["brk"],
            _ => &[],
        };
        for key in keys {
            let (mk, pk) = match (*key, m["syscall"].as_str()) {
                // The segment's id differs between runs (its sequence number counts up).
                ("args", Some("shmat")) => {
                    let tail = |v: &Value| {
                        v[key]
                            .as_array()
                            .map(|a| a.iter().skip(1).cloned().collect())
                            .unwrap_or_default()
                    };
                    (tail(m), tail(p))
                }
                _ => (vec![m[key].clone()], vec![p[key].clone()]),
            };
            check_eq!(mk, pk, "{key} of {event} {m}");
        }
        brks += keys.iter().filter(|k| k.contains("brk")).count();
        for list in ["vmas", "added", "removed"] {
            check_eq!(
                masked(&m[list], &known),
                masked(&p[list], &known),
                "{list} of {event} {m}"
            );
        }
    }
    check_eq!(
        module[0]["brk"].as_u64(),
        module[0]["start_brk"].as_u64(),
        "brk is start_brk at exec"
    );
    println!("# {} events, {brks} brk values compared", module.len());
    Ok(())
}

/// Runs `mmscope` with `args` (a `lazy ... --json` command), expects success, and parses its
/// rows.
fn lazy_json(args: &[&str]) -> Result<Vec<Value>, Outcome> {
    let out = output(mmscope(args)?)?;
    check_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout).lines().map(json).collect()
}

/// The rows of `mmscope lazy --json` reported while touching.
fn first_touch_rows(rows: &[Value]) -> Vec<&Value> {
    rows.iter()
        .filter(|r| r["phase"] == "first_touch")
        .collect()
}

/// `mmscope lazy`: touching k pages takes k faults and k pages in the object and k resident
/// anonymous pages; a second mapping reads them back with fault-around.
pub fn cli_lazy_counts_pages() -> TestResult {
    let pages = 64u64;
    let size = format!("{}K", pages * page_size() as u64 / 1024);
    for (pattern, touched) in [("seq", pages), ("stride:4", pages / 4), ("random", pages)] {
        let rows = lazy_json(&["lazy", &size, "--pattern", pattern, "--json"])?;
        let first = first_touch_rows(&rows);
        check!(first.len() >= 2, "rows while touching: {rows:?}");
        check!(
            first
                .windows(2)
                .all(|w| u(w[0], "touched").ok() < u(w[1], "touched").ok()
                    && u(w[0], "mmscope_pages").ok() <= u(w[1], "mmscope_pages").ok()),
            "{pattern}: touched and pages held rise"
        );
        for r in &first {
            let t = u(r, "touched")?;
            // Anonymous memory too takes one fault per page: the guest kernel has no THP.
            check_eq!(
                (
                    u(r, "mmscope_faults")?,
                    u(r, "mmscope_pages")?,
                    u(r, "anon_faults")?,
                    u(r, "anon_pages")?
                ),
                (t, t, t, t),
                "{pattern}: after {t} first touches, faults and pages held, anonymous faults \
                 and RssAnon pages"
            );
        }
        check_eq!(
            u(first[first.len() - 1], "touched")?,
            touched,
            "{pattern}: pages touched"
        );
        let again = rows
            .iter()
            .find(|r| r["phase"] == "second_mapping")
            .ok_or_else(|| Outcome::Fail("no second_mapping row".into()))?;
        let (faults, around) = (
            u(again, "mmscope_faults")?,
            u(again, "mmscope_faultaround")?,
        );
        check_eq!(
            faults + around,
            touched,
            "{pattern}: every page mapped once on read-back"
        );
        check_eq!(
            u(again, "mmscope_pages")?,
            touched,
            "{pattern}: no page allocated on read-back"
        );
        if pattern == "seq" {
            // The 64 KiB fault-around window maps up to 16 pages per fault.
            let window = 65536 / page_size() as u64;
            check!(
                faults <= touched / window + 1,
                "seq read-back takes about one fault per 64 KiB: {faults}"
            );
        }
    }
    let text_out = output(mmscope(&["lazy", &size])?)?;
    let body = text(&text_out.stdout);
    check!(
        body.contains("fault-around") && body.contains("A second mapping"),
        "the text report:\n{body}"
    );
    Ok(())
}

/// `mmscope lazy --sequential`: with the object's mapping advised `MADV_SEQUENTIAL`, each
/// fault allocates and maps 16 pages, so after t touches in order the object has taken
/// ⌈t/16⌉ faults and holds ⌈t/16⌉ × 16 pages, and anonymous memory t resident pages.
pub fn cli_lazy_sequential() -> TestResult {
    let pages = 64u64;
    let ahead = 16u64;
    let size = format!("{}K", pages * page_size() as u64 / 1024);
    let rows = lazy_json(&["lazy", &size, "--sequential", "--rows", "64", "--json"])?;
    let first = first_touch_rows(&rows);
    check_eq!(
        first.len() as u64,
        pages + 1,
        "rows: one per page and the start"
    );
    for r in &first {
        let t = u(r, "touched")?;
        let faults = t.div_ceil(ahead);
        check_eq!(
            (
                u(r, "mmscope_faults")?,
                u(r, "mmscope_pages")?,
                u(r, "mmscope_faultaround")?,
                u(r, "anon_pages")?
            ),
            (faults, faults * ahead, faults * (ahead - 1), t),
            "after {t} touches: faults, pages held, pages mapped ahead, RssAnon pages"
        );
    }
    let text_out = output(mmscope(&["lazy", &size, "--sequential"])?)?;
    let body = text(&text_out.stdout);
    check!(
        body.contains("MADV_SEQUENTIAL") && body.contains("fault-ahead"),
        "the text report names the advice and fault-ahead:\n{body}"
    );
    Ok(())
}

/// Bad input gets one sentence on stderr, nothing on stdout, and the usual exit status: 2 for
/// usage, 1 for the rest.
pub fn cli_bad_input() -> TestResult {
    let run = |args: &[&str]| -> Result<Output, Outcome> { output(mmscope(args)?) };
    expect_failure(
        &run(&["maps", "abc"])?,
        2,
        "a pid that is not a number",
        "not a process id",
    )?;
    expect_failure(&run(&["maps", "0"])?, 2, "pid 0", "not a process id")?;
    expect_failure(
        &run(&["maps", "999999"])?,
        1,
        "an unknown pid",
        "there is no process 999999",
    )?;
    expect_failure(&run(&["lazy", "12Q"])?, 2, "a bad SIZE", "is not a size")?;
    expect_failure(&run(&["lazy", "0"])?, 2, "SIZE 0", "is not a size")?;
    expect_failure(
        &run(&["lazy", "64G"])?,
        1,
        "a SIZE past the limits",
        "give a smaller SIZE",
    )?;
    expect_failure(
        &run(&["lazy", "64K", "--pattern", "zigzag"])?,
        2,
        "a bad pattern",
        "is not a pattern",
    )?;
    expect_failure(&run(&["trace"])?, 2, "trace without a command", "CMD")?;
    expect_failure(
        &run(&["trace", "--", "/no/such/program"])?,
        1,
        "a command that cannot run",
        "cannot run `/no/such/program`",
    )?;
    expect_failure(
        &run(&["trace", "-o", "/no/such/dir/t", "--", "true"])?,
        1,
        "an unwritable -o",
        "cannot create /no/such/dir/t",
    )?;
    expect_failure(
        &run(&["--device", "/dev/no-mmscope", "--source", "module", "maps"])?,
        1,
        "a missing device with --source module",
        "the mmscope module is not loaded",
    )?;
    expect_failure(
        &run(&["--device", "/dev/no-mmscope", "lazy"])?,
        1,
        "lazy with a missing device",
        "mmscope lazy needs the mmscope module",
    )?;
    expect_failure(
        &run(&["--source", "procfs", "lazy"])?,
        1,
        "lazy from procfs",
        "procfs does not have",
    )?;
    expect_failure(
        &run(&["--source", "kernel", "maps"])?,
        2,
        "an unknown source",
        "invalid value 'kernel'",
    )?;
    // Without the device, by default: procfs, and it says so.
    let out = run(&["--device", "/dev/no-mmscope", "maps", "--json"])?;
    check_eq!(out.status.code(), Some(0), "maps from procfs");
    let doc = json(&text(&out.stdout))?;
    check_eq!(
        doc["source"].as_str(),
        Some("procfs"),
        "a missing device, by default"
    );
    expect_failure(
        &run(&["frobnicate"])?,
        2,
        "an unknown subcommand",
        "unrecognized",
    )?;
    let version = run(&["--version"])?;
    check_eq!(version.status.code(), Some(0), "--version");
    check!(
        text(&version.stdout).starts_with("mmscope "),
        "--version says what it is"
    );
    let completions = run(&["completions", "bash"])?;
    check!(
        completions.status.success() && text(&completions.stdout).contains("mmscope"),
        "bash completions"
    );
    Ok(())
}

/// With the module unloaded, the command reads procfs by default and says so; asked for the
/// module, it says how to load it; loading it back works.
pub fn cli_missing_module_says_how_to_load() -> TestResult {
    let Ok(ko) = std::env::var("MMSCOPE_KO") else {
        skip!("MMSCOPE_KO is not set");
    };
    sys::delete_module("mmscope").context("rmmod mmscope")?;
    let out = output(mmscope(&["--source", "module", "maps"])?);
    let auto = output(mmscope(&["maps"])?);
    let reload = sys::load_module_with(&ko, "");
    let (out, auto) = (out?, auto?);
    reload.context("insmod mmscope again")?;
    expect_failure(&out, 1, "maps without the module", "insmod mmscope.ko")?;
    check_eq!(text(&out.stderr).lines().count(), 1, "one sentence");
    check_eq!(
        auto.status.code(),
        Some(0),
        "maps from procfs: {}",
        text(&auto.stderr)
    );
    let auto = text(&auto.stdout);
    check!(
        auto.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("  source     procfs")),
        "maps without the module names procfs: {auto}"
    );
    check!(
        auto.contains("brk unknown: procfs shows only start_brk"),
        "and says brk is unknown: {auto}"
    );
    Ok(())
}

/// Traces a real, dynamically linked program nobody here wrote (GNU sort from the host,
/// with the loader and libc the initramfs carries): it runs correctly under the tracer, the
/// trace shows the loader mapping libc and glibc's malloc moving `brk`, and sort's largest
/// anonymous mapping is far larger than what ever became resident (demand paging).
pub fn cli_trace_real_program() -> TestResult {
    let sort = "/usr/bin/sort";
    if !std::path::Path::new(sort).exists() {
        skip!("{sort} is not in this guest");
    }
    // 50,000 numbers from a fixed linear congruential sequence.
    let mut x: u64 = 1;
    let mut numbers: Vec<u64> = (0..50_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 34
        })
        .collect();
    let input: String = numbers.iter().map(|n| format!("{n}\n")).collect();
    let (inp, outp, path) = (
        "/tmp/mmscope-sort-in",
        "/tmp/mmscope-sort-out",
        "/tmp/mmscope-trace-sort.json",
    );
    std::fs::write(inp, &input).context(inp)?;
    let out = output(mmscope(&[
        "trace", "--json", "-o", path, "--", sort, "-n", "-o", outp, inp,
    ])?)?;
    check_eq!(
        out.status.code(),
        Some(0),
        "trace sort: {}",
        text(&out.stderr)
    );
    numbers.sort_unstable();
    let want: String = numbers.iter().map(|n| format!("{n}\n")).collect();
    let got = std::fs::read_to_string(outp).context(outp)?;
    check!(got == want, "sort under the tracer did not sort its input");

    let raw = std::fs::read_to_string(path).context(path)?;
    check!(
        raw.contains("libc.so.6"),
        "the trace shows the loader mapping libc.so.6"
    );
    let events = trace_lines(path)?;
    let steps: Vec<&Value> = events.iter().filter(|e| e["event"] == "syscall").collect();
    let arg = |s: &Value, i: usize| s["args"][i].as_u64().unwrap_or(0);
    check!(
        steps.iter().any(|s| s["syscall"] == "brk"
            && arg(s, 0) != 0
            && s["ret"].as_u64() == Some(arg(s, 0))),
        "glibc's malloc moved brk"
    );
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let largest = steps
        .iter()
        .filter(|s| s["syscall"] == "mmap" && arg(s, 2) == rw && arg(s, 3) & anon == anon)
        .map(|s| arg(s, 1))
        .max()
        .unwrap_or(0);
    let summary = events.last().cloned().unwrap_or_default();
    let peak_rss_anon = summary["peak_rss_anon_bytes"].as_u64().unwrap_or(u64::MAX);
    println!("# sort: largest anonymous mapping {largest} B, peak RssAnon {peak_rss_anon} B");
    check!(
        largest > 2 * peak_rss_anon,
        "sort's largest anonymous mapping ({largest} B) is mostly never touched \
         (peak RssAnon {peak_rss_anon} B)"
    );
    Ok(())
}

/// `EROFS_SUPER_MAGIC_V1`: the filesystem of the guest's disk (`scripts/disk.sh`).
const EROFS_SUPER_MAGIC: i64 = 0xE0F5_E1E2;

/// The programs the guest traces run from its disk, as on any machine: the text of GNU sort
/// and of libc is on a block device (the device the maps line names is the file's, with a
/// major number), on EROFS by `statfs`, and counts as `RssFile`, not `RssShmem` (which it would
/// from the initramfs, a tmpfs); the module classifies it as a file, as procfs names it.
pub fn programs_run_from_disk() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let sort = "/usr/bin/sort";
    let meta = match std::fs::metadata(sort) {
        Ok(m) => m,
        Err(_) => skip!("{sort} is not in this guest"),
    };
    let path = std::ffi::CString::new(sort).map_err(|e| Outcome::Fail(e.to_string()))?;
    // SAFETY: `statfs` is plain old data; zeroes are a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `fs` a live statfs to fill.
    let ret = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    check_eq!(ret, 0, "statfs({sort})");
    check_eq!(
        fs.f_type as i64,
        EROFS_SUPER_MAGIC,
        "{sort} is on the guest's EROFS disk"
    );
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    check!(
        major != 0,
        "{sort} is on a block device (its st_dev {major}:{minor} has a major number)"
    );
    // sort waits for its input on a pipe held open here: a process that holds still.
    let mut child = Command::new(sort)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("start sort")?;
    let pid = child.id() as i32;
    let res = (|| -> TestResult {
        // Until sort has mapped its text and read from the pipe.
        let maps_path = format!("/proc/{pid}/maps");
        let mut maps = String::new();
        for _ in 0..500 {
            maps = std::fs::read_to_string(&maps_path).context("read maps")?;
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            if maps.contains(sort) && maps.contains("libc.so.6") && wchan.contains("pipe") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let code = maps
            .lines()
            .filter_map(parse_maps_line)
            .find(|m| m.name == sort && m.perms == "r-xp")
            .ok_or_else(|| Outcome::Fail(format!("no r-xp line of {sort} in {maps}")))?;
        check_eq!(
            (code.dev, code.inode),
            ((major, minor), meta.ino()),
            "sort's text maps the file on the disk"
        );
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).context("read status")?;
        let file_kb = status_kb(&status, "RssFile").unwrap_or(0);
        let shmem_kb = status_kb(&status, "RssShmem").unwrap_or(u64::MAX);
        println!("# sort from the disk: RssFile {file_kb} kB, RssShmem {shmem_kb} kB");
        check!(file_kb > 0, "sort's text and libraries count as RssFile");
        check_eq!(shmem_kb, 0, "nothing of sort counts as RssShmem");
        let out = output(mmscope(&["maps", "--json", &pid.to_string()])?)?;
        check_eq!(out.status.code(), Some(0), "maps: {}", text(&out.stderr));
        let doc = json(&text(&out.stdout))?;
        let kind = doc["vmas"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["start"].as_u64() == Some(code.start)))
            .and_then(|v| v["kind"].as_str())
            .map(str::to_owned);
        check_eq!(
            kind.as_deref(),
            Some("file"),
            "the module's kind of sort's text"
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    res
}

/// A trace's diff shows every kind of change a call can make to a VMA, from either source,
/// against what the program says it did (the helper `changes`): an `mprotect` of a whole
/// mapping (only the flags change: the same range leaves with `rw-p` and comes back `r--p`),
/// the same file mapped again in place at another offset (only the offset), and another file
/// in its place (only the file: inode and name). The text shows each on its `~` line.
pub fn cli_trace_diff_shows_every_change() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let page = page_size() as u64;
    let (file_a, file_b) = ("/tmp/mmscope-changes-a", "/tmp/mmscope-changes-b");
    for source in ["module", "procfs"] {
        let path = format!("/tmp/mmscope-trace-changes-{source}.json");
        let out = output(mmscope(&[
            "--source", source, "trace", "--json", "-o", &path, "--", &exe, "--helper", "changes",
        ])?)?;
        check_eq!(
            out.status.code(),
            Some(0),
            "trace ({source}): {}",
            text(&out.stderr)
        );
        let said: Vec<Value> = text(&out.stdout)
            .lines()
            .map(json)
            .collect::<Result<_, _>>()?;
        check_eq!(said.len(), 6, "the helper's calls: {said:?}");
        let events = trace_lines(&path)?;
        let steps: Vec<&Value> = events.iter().filter(|e| e["event"] == "syscall").collect();
        // The trace's step for each call the helper made, in order.
        let mut found = Vec::new();
        let mut rest = steps.iter();
        for want in &said {
            let step = rest
                .find(|s| s["syscall"] == want["call"] && s["args"] == want["args"])
                .ok_or_else(|| Outcome::Fail(format!("{want} is not in the {source} trace")))?;
            found.push(*step);
        }
        let a = said[1]["ret"].as_u64().unwrap_or(0);
        let b = said[3]["ret"].as_u64().unwrap_or(0);
        let one = |step: &Value, side: &str| -> Result<Value, Outcome> {
            match step[side].as_array().map(Vec::as_slice) {
                Some([v]) => Ok(v.clone()),
                other => Err(Outcome::Fail(format!(
                    "{source}: one VMA {side} by {}, not {other:?}",
                    step["call"]
                ))),
            }
        };
        let view = |v: &Value| {
            (
                v["start"].as_u64(),
                v["end"].as_u64(),
                v["perms"].as_str().map(str::to_owned),
                v["offset"].as_u64(),
                v["name"].as_str().map(str::to_owned),
            )
        };
        // mprotect of the whole mapping: the same range, the flags only.
        let (gone, came) = (one(found[2], "removed")?, one(found[2], "added")?);
        check_eq!(
            (view(&gone), view(&came)),
            (
                (
                    Some(a),
                    Some(a + 3 * page),
                    Some("rw-p".into()),
                    Some(0),
                    None
                ),
                (
                    Some(a),
                    Some(a + 3 * page),
                    Some("r--p".into()),
                    Some(0),
                    None
                )
            ),
            "{source}: mprotect(PROT_READ) of the whole mapping"
        );
        check!(
            gone["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&"wr".into()))
                && came["flags"]
                    .as_array()
                    .is_some_and(|f| !f.contains(&"wr".into())),
            "{source}: the flags lose wr: {gone} -> {came}"
        );
        // The same file in place at the next page of it: the offset only.
        let (gone, came) = (one(found[4], "removed")?, one(found[4], "added")?);
        check_eq!(
            (view(&gone), view(&came)),
            (
                (
                    Some(b),
                    Some(b + page),
                    Some("r--p".into()),
                    Some(0),
                    Some(file_a.into())
                ),
                (
                    Some(b),
                    Some(b + page),
                    Some("r--p".into()),
                    Some(page),
                    Some(file_a.into())
                )
            ),
            "{source}: the same file again at another offset"
        );
        // Another file in its place: the file only.
        let (gone, came) = (one(found[5], "removed")?, one(found[5], "added")?);
        check_eq!(
            (view(&gone), view(&came)),
            (
                (
                    Some(b),
                    Some(b + page),
                    Some("r--p".into()),
                    Some(page),
                    Some(file_a.into())
                ),
                (
                    Some(b),
                    Some(b + page),
                    Some("r--p".into()),
                    Some(page),
                    Some(file_b.into())
                )
            ),
            "{source}: another file in its place"
        );
        check!(
            gone["inode"] != came["inode"],
            "{source}: the inode changes with the file: {gone} -> {came}"
        );
    }
    // The text: each change on its `~` line.
    let path = "/tmp/mmscope-trace-changes.txt";
    let out = output(mmscope(&[
        "trace", "-o", path, "--", &exe, "--helper", "changes",
    ])?)?;
    check_eq!(
        out.status.code(),
        Some(0),
        "trace (text): {}",
        text(&out.stderr)
    );
    let trace = std::fs::read_to_string(path).context(path)?;
    let tilde: Vec<&str> = trace
        .lines()
        .filter(|l| l.trim_start().starts_with('~'))
        .collect();
    for (what, needle) in [
        ("the flags", "rw-p->r--p anon"),
        (
            "the offset",
            &format!("offset 0x0->{page:#x} {file_a}") as &str,
        ),
        ("the file", &format!("{file_a} -> {file_b}")),
    ] {
        check!(
            tilde.iter().any(|l| l.contains(needle)),
            "a `~` line shows {what} ({needle:?}): {tilde:#?}"
        );
    }
    Ok(())
}

/// How a program ended, as its parent saw it: the exit status or the signal (and whether it
/// dumped core), and what it printed.
#[derive(Debug, PartialEq)]
struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    core: bool,
    stdout: String,
}

impl Ran {
    fn of(out: &Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: out.status.code(),
            signal: out.status.signal(),
            core: out.status.core_dumped(),
            stdout: text(&out.stdout),
        }
    }

    /// The same program's end as `mmscope trace` reports it: its own status (128 + the
    /// signal) and the `--json` summary in `trace`.
    fn traced(out: &Output, trace: &str) -> Result<Self, Outcome> {
        let summary = trace_lines(trace)?.last().cloned().unwrap_or_default();
        let signal = summary["signal"].as_i64().map(|s| s as i32);
        let code = summary["exit_code"].as_i64().map(|c| c as i32);
        let shell = signal.map_or(code, |s| Some(128 + s));
        check_eq!(
            out.status.code(),
            shell,
            "mmscope's status is the program's as a shell reports it: {summary}"
        );
        Ok(Self {
            code,
            signal,
            core: summary["core_dumped"].as_bool().unwrap_or(false),
            stdout: text(&out.stdout),
        })
    }
}

/// `--helper signals MODE` run untraced, then under `mmscope trace --json -o TRACE`: how
/// each ended.
fn both_ways(mode: &str) -> Result<(Ran, Ran), Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let mut plain = Command::new(&exe);
    plain
        .args(["--helper", "signals", mode])
        .stdin(Stdio::null());
    let plain = Ran::of(&plain.output().context("run the helper")?);
    let trace = format!("/tmp/mmscope-trace-signals-{mode}.json");
    let out = output(mmscope(&[
        "trace", "--json", "-o", &trace, "--", &exe, "--helper", "signals", mode,
    ])?)?;
    let traced = Ran::traced(&out, &trace).map_err(|e| match e {
        Outcome::Fail(m) => Outcome::Fail(format!("{m} (stderr: {})", text(&out.stderr))),
        other => other,
    })?;
    Ok((plain, traced))
}

/// Real-time signals (`sigqueue` with a value, a POSIX timer) reach a traced program as they
/// reach it untraced, one that kills it is reported by its name, and a death by `SIGABRT`
/// keeps its core-dump flag: each run both ways, compared.
pub fn cli_trace_delivers_signals() -> TestResult {
    let (plain, traced) = both_ways("rt")?;
    check!(
        plain.stdout.contains("seen 0b110 value 42"),
        "untraced, the helper saw both real-time signals: {plain:?}"
    );
    check_eq!(traced, plain, "the rt helper traced and untraced");

    let (plain, traced) = both_ways("die-rt")?;
    check_eq!(
        plain.signal,
        Some(libc::SIGRTMIN() + 5),
        "untraced, SIGRTMIN+5 killed it"
    );
    check_eq!(traced, plain, "killed by SIGRTMIN+5, traced and untraced");

    let (plain, traced) = both_ways("abort")?;
    check_eq!(
        plain.signal,
        Some(libc::SIGABRT),
        "untraced, SIGABRT killed it"
    );
    check_eq!(
        traced,
        plain,
        "abort(), traced and untraced (core dumped or not)"
    );
    let _ = std::fs::remove_file("/tmp/core");
    if plain.core {
        let exe = std::env::current_exe().context("current_exe")?;
        let out = output(mmscope(&[
            "trace",
            "-o",
            "/tmp/mmscope-trace-abort.txt",
            "--",
            &exe.to_string_lossy(),
            "--helper",
            "signals",
            "abort",
        ])?)?;
        let _ = std::fs::remove_file("/tmp/core");
        check_eq!(
            out.status.code(),
            Some(128 + libc::SIGABRT),
            "mmscope's status"
        );
        let body =
            std::fs::read_to_string("/tmp/mmscope-trace-abort.txt").context("read the trace")?;
        check!(
            body.contains("killed by SIGABRT (core dumped)"),
            "the text summary says the core was dumped:\n{body}"
        );
    } else {
        println!("# abort() dumped no core here; the flag is compared unset");
    }
    Ok(())
}

/// A program of the guest's `/mmscope/progs` (built from `demo/*.c`; `MMSCOPE_PROGS` names
/// another directory).
fn prog(name: &str) -> Result<String, Outcome> {
    let dir = std::env::var("MMSCOPE_PROGS").unwrap_or_else(|_| "/mmscope/progs".into());
    let path = format!("{dir}/{name}");
    if !std::path::Path::new(&path).exists() {
        skip!("{path} is missing (make progs)");
    }
    Ok(path)
}

/// A run's status as a shell reports it, the signal that killed it, what it printed.
type Ended = (Option<i32>, Option<i32>, String);

/// `sigstate ARGS` (`demo/sigstate.c`) untraced and under `mmscope trace`: what each printed
/// and how it ended, the trace's text summary, after reading one line of its output and
/// closing the pipe.
fn sigstate_both(args: &[&str]) -> Result<[Ended; 2], Outcome> {
    use std::os::unix::process::ExitStatusExt;
    let sigstate = prog("sigstate")?;
    let run = |mut cmd: Command| -> Result<Ended, Outcome> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("start sigstate")?;
        let mut line = String::new();
        BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| Outcome::Fail("no stdout".into()))?,
        )
        .read_line(&mut line)
        .context("read the first line")?;
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        let status = child.wait().context("wait for sigstate")?;
        // A death by a signal, as `mmscope trace` reports it: 128 + the signal.
        let code = status.code().or(status.signal().map(|s| 128 + s));
        Ok((code, status.signal(), line + &err))
    };
    let mut plain = Command::new(&sigstate);
    plain.args(args);
    let plain = run(plain)?;
    let mut argv = vec![
        "trace",
        "-o",
        "/tmp/mmscope-trace-sigstate.txt",
        "--",
        &sigstate,
    ];
    argv.extend_from_slice(args);
    let (code, _, out) = run(mmscope(&argv)?)?;
    let body =
        std::fs::read_to_string("/tmp/mmscope-trace-sigstate.txt").context("read the trace")?;
    Ok([plain, (code, None, format!("{out}{body}"))])
}

/// The program starts with the signal dispositions and mask it would have untraced, not the
/// tracer's (Rust's runtime ignores `SIGPIPE`; exec keeps what is ignored or blocked): none
/// ignored or blocked, and a writer whose reader goes away dies by `SIGPIPE`, traced as
/// untraced (`mmscope trace -- yes | head -1`).
pub fn cli_trace_default_dispositions() -> TestResult {
    let [plain, traced] = sigstate_both(&[])?;
    check_eq!(plain.2.trim(), "ignored blocked", "untraced: {plain:?}");
    check!(
        traced.2.starts_with(plain.2.as_str()),
        "traced, the same dispositions and mask: {} against {}",
        traced.2,
        plain.2
    );
    check_eq!(traced.0, plain.0, "sigstate's status, traced and untraced");

    let [plain, traced] = sigstate_both(&["write"])?;
    check_eq!(
        plain.1,
        Some(libc::SIGPIPE),
        "untraced, SIGPIPE killed the writer: {plain:?}"
    );
    check_eq!(
        traced.0,
        plain.0,
        "traced, SIGPIPE killed the writer (128 + 13): {}",
        traced.2
    );
    check!(
        traced.2.contains("killed by SIGPIPE") && !traced.2.contains("write:"),
        "the summary says SIGPIPE, and no write failed:\n{}",
        traced.2
    );
    Ok(())
}

/// `mmscope trace -- true` started by `--helper HELPER ARGS`: its status and stderr, or a
/// failure if it still waits after 20 s.
fn trace_true_under(helper: &[&str]) -> Result<(Option<i32>, String), Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let bin = bin()?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--helper")
        .args(helper)
        .args([bin.as_str(), "trace", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("start mmscope")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().context("wait for mmscope")? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Outcome::Fail(format!(
                "mmscope trace under {helper:?} still waits 20 s after ptrace was refused"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    Ok((status.code(), err))
}

/// A program `ptrace` may not trace (its child is traced already, by a tracer that follows
/// forks as `strace -f` does; or, where the kernel has seccomp filters, a policy fails the
/// tracer's `ptrace` calls with `EPERM`): `mmscope trace` says so in a sentence and exits 1
/// at once, rather than wait; a program that cannot be run gets its own sentence.
pub fn cli_trace_refused() -> TestResult {
    let mut policies = vec![vec!["traced"]];
    let (code, err) = trace_true_under(&["no-ptrace"])?;
    if code == Some(4) && err.contains("seccomp") {
        println!(
            "# no seccomp filters here ({}): refused by a tracer only",
            err.trim()
        );
    } else {
        policies.push(vec!["no-ptrace"]);
    }
    for helper in policies {
        let (code, err) = trace_true_under(&helper)?;
        check_eq!(
            code,
            Some(1),
            "under {helper:?}: exit status (stderr: {err})"
        );
        check!(
            err.contains("could not be traced") && err.contains("Operation not permitted"),
            "under {helper:?}: the sentence says it could not be traced, and why: {err}"
        );
    }
    let out = output(mmscope(&["trace", "--", "/no/such/program"])?)?;
    expect_failure(&out, 1, "a missing program", "cannot run")?;
    check!(
        !text(&out.stderr).contains("could not be traced"),
        "a missing program is not called untraceable"
    );
    Ok(())
}

/// A `--helper ticker FILE` started by `cmd` (with FILE as its last argument): its pid and
/// a way to read its count, once it has started counting.
struct Ticker {
    child: std::process::Child,
    file: String,
    pid: i32,
}

impl Ticker {
    fn start(mut cmd: Command, file: &str) -> Result<Self, Outcome> {
        let _ = std::fs::remove_file(file);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let child = cmd.spawn().context("start the ticker")?;
        let mut t = Self {
            child,
            file: file.to_string(),
            pid: 0,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut started = None;
        check!(
            sys::wait_until(deadline, || {
                started = t.read().filter(|&(_, count)| count > 0);
                started.is_some()
            }),
            "the ticker never started counting"
        );
        t.pid = started.map_or(0, |(pid, _)| pid);
        Ok(t)
    }

    fn read(&self) -> Option<(i32, u64)> {
        let body = std::fs::read_to_string(&self.file).ok()?;
        let mut words = body.split_whitespace();
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    }

    fn count(&self) -> u64 {
        self.read().map_or(0, |(_, c)| c)
    }

    /// Sends `sig` to the ticker: whether it stopped counting, and whether it counted again
    /// after `SIGCONT`.
    ///
    /// However slow the guest is: "stopped" is the count standing still for 300 ms at some
    /// point within 10 s of the signal (a running ticker counts every 5 ms), "resumed" its
    /// moving again within 10 s of `SIGCONT`.
    fn stop_and_continue(&self, sig: i32) -> (bool, bool) {
        let pause = |ms| std::thread::sleep(std::time::Duration::from_millis(ms));
        let within = |f: &dyn Fn() -> bool| {
            sys::wait_until(
                std::time::Instant::now() + std::time::Duration::from_secs(10),
                f,
            )
        };
        // SAFETY: kill has no memory-safety requirements.
        unsafe { libc::kill(self.pid, sig) };
        let stopped = within(&|| {
            let before = self.count();
            pause(300);
            self.count() == before
        });
        let held = self.count();
        // SAFETY: As above.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
        (stopped, within(&|| self.count() > held))
    }

    /// Ends the ticker with `sig` sent to `to` (its pid, the trace's, or minus a process
    /// group), and reports the status of the process `cmd` started, as a shell would.
    fn end(mut self, to: i32, sig: i32) -> Result<Option<i32>, Outcome> {
        use std::os::unix::process::ExitStatusExt;
        // SAFETY: kill has no memory-safety requirements.
        unsafe { libc::kill(to, sig) };
        let status = self.child.wait().context("wait for the ticker")?;
        Ok(status.code().or(status.signal().map(|s| 128 + s)))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A ticker, untraced or under `mmscope trace -o TRACE` (then also in a process group of
/// its own with `in_group`).
fn ticker(traced: bool, in_group: bool, trace: &str) -> Result<Ticker, Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let file = "/tmp/mmscope-ticker";
    let mut argv: Vec<String> = Vec::new();
    if in_group {
        argv.extend(["--helper".into(), "pgrp".into()]);
        argv.push(if traced { bin()? } else { exe.clone() });
    } else if traced {
        argv.push(bin()?);
    }
    if traced {
        argv.extend(["trace", "-o", trace, "--", &exe].map(String::from));
    }
    argv.extend(["--helper", "ticker", file].map(String::from));
    let mut cmd = Command::new(if argv[0] == "--helper" {
        &exe
    } else {
        &argv[0]
    });
    let skip = usize::from(argv[0] != "--helper");
    cmd.args(&argv[skip..]).env_remove("NO_COLOR");
    Ticker::start(cmd, file)
}

/// `kill -STOP` and `kill -TSTP` stop a traced program and `kill -CONT` resumes it, as
/// untraced (held with `PTRACE_LISTEN`); its calls are traced before and after, and
/// `SIGTERM` ends it as untraced.
pub fn cli_trace_keeps_group_stops() -> TestResult {
    let trace = "/tmp/mmscope-trace-stops.txt";
    let mut seen = Vec::new();
    for traced in [false, true] {
        let t = ticker(traced, false, trace)?;
        let stops = [libc::SIGSTOP, libc::SIGTSTP].map(|sig| t.stop_and_continue(sig));
        // 60 counts more, three mmap/munmap pairs of the ticker's after the stops, however
        // slow the guest is today.
        let target = t.count() + 60;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        sys::wait_until(deadline, || t.count() >= target);
        let pid = t.pid;
        let end = t.end(pid, libc::SIGTERM)?;
        seen.push((stops, end));
    }
    check_eq!(
        seen[0].0[0],
        (true, true),
        "untraced, SIGSTOP stops the ticker and SIGCONT resumes it"
    );
    check_eq!(
        seen[1],
        seen[0],
        "(stopped, resumed) by SIGSTOP and SIGTSTP, and the end: traced against untraced"
    );
    let body = std::fs::read_to_string(trace).context("read the trace")?;
    check!(
        body.matches("munmap(").count() >= 3 && body.contains("killed by SIGTERM"),
        "the calls are traced through the stops, and the summary says SIGTERM:\n{}",
        body.lines().rev().take(6).collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

/// Ctrl-C (`SIGINT` to the job's process group) and a `SIGTERM` sent to `mmscope` alone end
/// the traced program as they end it untraced, and `mmscope` still writes its summary.
pub fn cli_trace_terminal_signals() -> TestResult {
    let trace = "/tmp/mmscope-trace-interrupted.txt";
    for (sig, group) in [(libc::SIGINT, true), (libc::SIGTERM, false)] {
        let t = ticker(false, true, trace)?;
        let to = if group { -t.pid } else { t.pid };
        let plain = t.end(to, sig)?;
        check_eq!(
            plain,
            Some(128 + sig),
            "untraced, signal {sig} ends the ticker"
        );

        let _ = std::fs::remove_file(trace);
        let t = ticker(true, true, trace)?;
        // The trace's pid: the ticker's parent.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", t.pid))
            .context("read the ticker's stat")?;
        let mmscope = stat_field(&stat, 4).unwrap_or(0) as i32;
        check!(mmscope > 0, "the ticker's parent");
        let to = if group { -mmscope } else { mmscope };
        let traced = t.end(to, sig)?;
        let body = std::fs::read_to_string(trace).unwrap_or_default();
        check_eq!(
            traced,
            plain,
            "traced, signal {sig} to {}: mmscope's status is the ticker's (trace: {})",
            if group {
                "the process group"
            } else {
                "mmscope"
            },
            body.lines().last().unwrap_or("")
        );
        let name = if group { "SIGINT" } else { "SIGTERM" };
        check!(
            body.contains("summary:") && body.contains(&format!("killed by {name}")),
            "the summary is written and says {name}:\n{body}"
        );
    }
    Ok(())
}

/// A `clone()` child of another thread group (exit signal `SIGUSR2`, which
/// `PTRACE_O_TRACECLONE` attaches) is let go as a forked one would be: it is not reported as
/// a thread, none of its calls are in the trace, its 16 MiB are not in the program's peaks,
/// and the program runs as untraced.
pub fn cli_trace_lets_other_processes_go() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let plain = helper_untraced("clone-process")?;
    let plain = json(text(&plain.stdout).trim())?;
    let path = "/tmp/mmscope-trace-clone.json";
    let out = output(mmscope(&[
        "trace",
        "--json",
        "-o",
        path,
        "--",
        &exe,
        "--helper",
        "clone-process",
    ])?)?;
    check_eq!(out.status.code(), Some(0), "traced: {}", text(&out.stderr));
    let traced = json(text(&out.stdout).trim())?;
    check_eq!(traced["status"], plain["status"], "the child's wait status");
    let child = u(&traced, "child")?;
    let events = trace_lines(path)?;
    check!(
        !events.iter().any(|e| e["tid"].as_u64() == Some(child)),
        "nothing of process {child} is in the trace"
    );
    check!(
        events
            .iter()
            .any(|e| e["event"] == "syscall" && e["syscall"] == "munmap"),
        "the program's own calls are traced"
    );
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(
        summary["threads"].as_u64(),
        Some(0),
        "no threads: {summary}"
    );
    check!(
        summary["peak_anon_bytes"].as_u64() < Some(16 << 20),
        "the child's 16 MiB are not the program's: {summary}"
    );
    Ok(())
}

/// A process whose leader calls `pthread_exit()` while another thread runs on
/// (`demo/leader-exit.c`) exits when that thread does: the trace's `exit pid` line comes
/// once, after that thread's calls, and the status is the untraced one.
pub fn cli_trace_exit_is_the_last_thread() -> TestResult {
    let prog = prog("leader-exit")?;
    let plain = Command::new(&prog).output().context("run leader-exit")?;
    check_eq!(
        plain.status.code(),
        Some(5),
        "untraced leader-exit's status"
    );
    let path = "/tmp/mmscope-trace-leader-exit.txt";
    let out = output(mmscope(&["trace", "-o", path, "--", &prog])?)?;
    check_eq!(out.status.code(), Some(5), "traced: {}", text(&out.stderr));
    let (said, plain_said) = (text(&out.stdout), text(&plain.stdout));
    check_eq!(
        said.split(" mapped ").next(),
        plain_said.split(" mapped ").next(),
        "what it printed"
    );
    let body = std::fs::read_to_string(path).context("read the trace")?;
    let lines: Vec<&str> = body.lines().collect();
    let exits: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("exit pid"))
        .collect();
    let last_munmap = lines.iter().rposition(|l| l.contains("] munmap("));
    check!(
        exits.len() == 1 && last_munmap.is_some_and(|m| exits[0] > m),
        "one exit line, after the last thread's calls:\n{body}"
    );
    Ok(())
}

/// A `brk` the kernel refuses (it returns the break unchanged, not an errno) counts as
/// failed in the summary, as `-1 ENOMEM` calls do.
pub fn cli_trace_counts_refused_brk() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let path = "/tmp/mmscope-trace-brk-refused.json";
    let out = output(mmscope(&[
        "trace",
        "--json",
        "-o",
        path,
        "--",
        &exe.to_string_lossy(),
        "--helper",
        "brk-refused",
    ])?)?;
    check_eq!(out.status.code(), Some(0), "trace: {}", text(&out.stderr));
    let said = json(text(&out.stdout).trim())?;
    check!(
        said["asked"] != said["got"],
        "the kernel refused the break: {said}"
    );
    let events = trace_lines(path)?;
    check!(
        events.iter().any(|e| e["syscall"] == "brk"
            && e["args"][0] == said["asked"]
            && e["ret"] == said["got"]),
        "the refused brk is in the trace"
    );
    let errnos = events
        .iter()
        .filter(|e| e["event"] == "syscall" && !e["errno"].is_null())
        .count() as u64;
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(
        summary["failed"].as_u64(),
        Some(errnos + 1),
        "failed: the calls with an errno and the refused brk"
    );
    Ok(())
}

/// A 32-bit program (the compat test program, `int 0x80`) runs traced as untraced, and
/// `mmscope trace` says once that its calls are not shown, rather than a silently empty
/// trace.
pub fn cli_trace_warns_of_32bit_calls() -> TestResult {
    let Ok(path) = std::env::var("MMSCOPE_COMPAT32") else {
        skip!("MMSCOPE_COMPAT32 does not name the 32-bit test program");
    };
    let plain = match Command::new(&path).output() {
        Ok(out) => out,
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            skip!("the kernel cannot run 32-bit programs (CONFIG_IA32_EMULATION=n)")
        }
        Err(e) => return Err(Outcome::Fail(format!("run {path}: {e}"))),
    };
    let out = output(mmscope(&[
        "trace",
        "-o",
        "/tmp/mmscope-trace-32.txt",
        "--",
        &path,
    ])?)?;
    check_eq!(
        out.status.code(),
        plain.status.code(),
        "the status, traced and untraced"
    );
    let err = text(&out.stderr);
    check_eq!(
        err.matches("makes 32-bit ones (int 0x80), which are not shown")
            .count(),
        1,
        "one warning on stderr: {err}"
    );
    Ok(())
}

/// A thread's id is forgotten as it exits: with `pid_max` lowered so that ids come round, a
/// process the program starts with `clone()` that gets an exited thread's id is let go like
/// any other, and nothing with that id is in the trace after the thread's exit.
pub fn cli_trace_forgets_exited_threads() -> TestResult {
    let pid_max = "/proc/sys/kernel/pid_max";
    let old = std::fs::read_to_string(pid_max).context("read pid_max")?;
    std::fs::write(pid_max, "400").context("lower pid_max")?;
    let exe = std::env::current_exe().context("current_exe")?;
    let path = "/tmp/mmscope-trace-reuse.json";
    let out = mmscope(&[
        "trace",
        "--json",
        "-o",
        path,
        "--",
        &exe.to_string_lossy(),
        "--helper",
        "reuse-tid",
    ])
    .and_then(output);
    std::fs::write(pid_max, old.trim()).context("restore pid_max")?;
    let out = out?;
    check_eq!(out.status.code(), Some(0), "trace: {}", text(&out.stderr));
    let said = json(text(&out.stdout).trim())?;
    if said["reused"] != true {
        skip!("no clone() child got the thread's id in 3000 tries: {said}");
    }
    let tid = u(&said, "thread")?;
    let events = trace_lines(path)?;
    let exit = events
        .iter()
        .position(|e| e["event"] == "exit" && e["tid"].as_u64() == Some(tid));
    check!(exit.is_some(), "thread {tid}'s exit is in the trace");
    let after: Vec<&Value> = events[exit.unwrap_or(0) + 1..]
        .iter()
        .filter(|e| e["tid"].as_u64() == Some(tid))
        .collect();
    check!(
        after.is_empty(),
        "after thread {tid} exited, its id (now another process's) is in the trace: {:?}",
        after.first()
    );
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(
        summary["threads"].as_u64(),
        Some(1),
        "one thread: {summary}"
    );
    Ok(())
}

/// An `attachee` helper, running untraced.
fn attachee(file: &str) -> Result<Ticker, Outcome> {
    attachee_with_threads(file, 0)
}

/// An `attachee` helper with `threads` more threads, asleep, running untraced.
fn attachee_with_threads(file: &str, threads: usize) -> Result<Ticker, Outcome> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut cmd = Command::new(exe);
    cmd.args(["--helper", "attachee", file, &threads.to_string()]);
    Ticker::start(cmd, file)
}

/// `mmscope trace -p PID --json -o TRACE`, started.
fn attach_to(pid: i32, trace: &str) -> Result<std::process::Child, Outcome> {
    let _ = std::fs::remove_file(trace);
    let pid = pid.to_string();
    let mut cmd = mmscope(&["trace", "-p", &pid, "--json", "-o", trace])?;
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().context("start mmscope trace -p")
}

/// `TracerPid` of every thread of `pid`.
fn tracers(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| {
                let status =
                    std::fs::read_to_string(e.ok()?.path().join("status")).unwrap_or_default();
                Some(
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("TracerPid:"))?
                        .trim()
                        .to_string(),
                )
            })
            .collect()
        })
        .unwrap_or_default()
}

/// `mmscope trace -p` on a running helper with `threads` more threads (asleep), then `sig` to
/// mmscope: it exits 0; the trace starts with the address space at attach (the VMAs of
/// /proc/PID/maps, but for the ones the helper keeps changing) and every thread, has the
/// helper's calls with their sizes, and says it detached; the helper runs on, no thread of it
/// traced, still making its calls.
fn attach_and_let_go(sig: i32, threads: usize) -> TestResult {
    let path = "/tmp/mmscope-attach.json";
    let t = attachee_with_threads("/tmp/mmscope-attachee", threads)?;
    let pid = t.pid;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .context("read the helper's tasks")?;
    check_eq!(tasks, threads + 1, "the helper's threads, untraced");
    let mut m = attach_to(pid, path)?;
    // Until the trace holds the attach and the helper has gone 8 more rounds under the
    // tracer (each an mmap, a munmap and two brk calls), however slow the guest is today.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let attached =
        || std::fs::read_to_string(path).is_ok_and(|b| b.contains("\"event\":\"attach\""));
    sys::wait_until(deadline, attached);
    let target = t.count() + 8;
    sys::wait_until(deadline, || t.count() >= target);
    // SAFETY: kill has no memory-safety requirements.
    unsafe { libc::kill(m.id() as i32, sig) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = m.try_wait().context("wait for mmscope")? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = m.kill();
            let _ = m.wait();
            check!(false, "mmscope did not end within 10 s of signal {sig}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = m.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    check_eq!(status.code(), Some(0), "mmscope after signal {sig}: {err}");
    let events = trace_lines(path)?;
    let first = events.first().cloned().unwrap_or_default();
    check_eq!(first["event"], "attach", "the first event: {first}");
    check_eq!(first["pid"].as_u64(), Some(pid as u64), "{first}");
    check_eq!(
        first["threads"].as_u64(),
        Some(tasks as u64),
        "every thread seized at attach"
    );
    let start_brk = u(&first, "start_brk")?;
    // The VMAs the helper does not touch: all but its 7-page mapping and the heap; and not
    // [vsyscall], which /proc/PID/maps shows but is no VMA of the process.
    let steady = |v: &[(u64, u64)]| {
        let mut v: Vec<(u64, u64)> = v
            .iter()
            .copied()
            .filter(|&(s, e)| e - s != 7 * 4096 && s != start_brk && s < 0xffff_8000_0000_0000)
            .collect();
        v.sort_unstable();
        v
    };
    let at_attach: Vec<(u64, u64)> = first["vmas"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| Some((v["start"].as_u64()?, v["end"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("read maps")?;
    let now: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (s, e) = range.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .collect();
    check_eq!(
        steady(&at_attach),
        steady(&now),
        "the VMAs at attach are those of /proc/{pid}/maps"
    );
    let calls = |name: &str, size: Option<u64>| {
        events
            .iter()
            .filter(|e| e["event"] == "syscall" && e["syscall"] == name)
            .filter(|e| size.is_none() || e["args"][1].as_u64() == size)
            .count()
    };
    check!(
        calls("mmap", Some(7 * 4096)) >= 5 && calls("munmap", Some(7 * 4096)) >= 5,
        "the helper's 7-page mmap and munmap calls are in the trace"
    );
    check!(
        calls("brk", None) >= 5,
        "the helper's brk calls are in the trace"
    );
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(summary["event"], "summary", "{summary}");
    check_eq!(summary["detached"].as_u64(), Some(pid as u64), "{summary}");
    let tracer = tracers(pid);
    check!(
        !tracer.is_empty() && tracer.iter().all(|t| t == "0"),
        "after mmscope let go, TracerPid of pid {pid}'s threads: {tracer:?}"
    );
    let before = t.count();
    std::thread::sleep(std::time::Duration::from_millis(300));
    check!(
        t.count() > before,
        "the helper runs on after mmscope let go"
    );
    Ok(())
}

/// `mmscope trace -p`, then Ctrl-C (SIGINT): mmscope lets go, and the process runs on.
pub fn cli_trace_attach_sigint() -> TestResult {
    attach_and_let_go(libc::SIGINT, 0)
}

/// `mmscope trace -p` of a process with 3 more threads (asleep in `nanosleep` at attach), then
/// SIGHUP (the terminal closed): mmscope lets go of every thread, and the process runs on.
pub fn cli_trace_attach_sighup_threads() -> TestResult {
    attach_and_let_go(libc::SIGHUP, 3)
}

/// `mmscope trace -p` of a process that a signal kills while traced (`SIGTERM`, which it does
/// not catch): mmscope ends by itself, as the process does, with the process's exit in the
/// trace and its death in the summary (and as its status, 128 + 15). (Not `SIGKILL`: the
/// kernel may skip a killed task's `PTRACE_EVENT_EXIT` stop, and with it the exit's reading.)
pub fn cli_trace_attach_until_the_end() -> TestResult {
    let path = "/tmp/mmscope-attach-end.json";
    let mut t = attachee("/tmp/mmscope-attachee-end")?;
    let pid = t.pid;
    let mut m = attach_to(pid, path)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let attached =
        || std::fs::read_to_string(path).is_ok_and(|b| b.contains("\"event\":\"attach\""));
    sys::wait_until(deadline, attached);
    let target = t.count() + 3;
    sys::wait_until(deadline, || t.count() >= target);
    // SAFETY: kill has no memory-safety requirements.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = t.child.wait();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = m.try_wait().context("wait for mmscope")? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = m.kill();
            let _ = m.wait();
            check!(
                false,
                "mmscope did not end within 20 s of its process's death"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    check_eq!(
        status.code(),
        Some(128 + 15),
        "mmscope's status: the process's"
    );
    let events = trace_lines(path)?;
    check!(
        events.iter().any(|e| e["event"] == "exit"),
        "the process's exit is in the trace"
    );
    let summary = events.last().cloned().unwrap_or_default();
    check_eq!(summary["signal"].as_i64(), Some(15), "{summary}");
    check!(summary.get("detached").is_none(), "not detached: {summary}");
    Ok(())
}

/// `mmscope trace -p`, then SIGTERM: mmscope lets go, and the process runs on.
pub fn cli_trace_attach_sigterm() -> TestResult {
    attach_and_let_go(libc::SIGTERM, 0)
}

/// `mmscope trace -p` of no process, and of a process already traced: exit 1 and the
/// sentence.
pub fn cli_trace_attach_refused() -> TestResult {
    let out = output(mmscope(&["trace", "-p", "2147483000"])?)?;
    check_eq!(out.status.code(), Some(1), "-p of no process");
    check!(
        text(&out.stderr).contains("there is no process 2147483000"),
        "-p of no process: {}",
        text(&out.stderr)
    );
    let t = attachee("/tmp/mmscope-attachee2")?;
    let mut first = attach_to(t.pid, "/tmp/mmscope-attach2.json")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tracers(t.pid).iter().all(|t| t == "0") {
        check!(
            std::time::Instant::now() < deadline,
            "the first mmscope never attached"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = t.pid.to_string();
    let out = output(mmscope(&["trace", "-p", &pid])?)?;
    // SAFETY: kill has no memory-safety requirements.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let _ = first.wait();
    check_eq!(out.status.code(), Some(1), "-p of a traced process");
    check!(
        text(&out.stderr).contains("is already being traced"),
        "-p of a traced process: {}",
        text(&out.stderr)
    );
    Ok(())
}

/// The lines a `--helper forks` run printed: the two `forks exec` probes (by pid) and the
/// parent's report, the last line.
fn forks_output(stdout: &[u8]) -> Result<(std::collections::HashMap<u64, Value>, Value), Outcome> {
    let lines = text(stdout)
        .lines()
        .map(json)
        .collect::<Result<Vec<_>, _>>()?;
    let Some((parent, probes)) = lines.split_last() else {
        return Err(Outcome::Fail("the helper printed nothing".to_string()));
    };
    let probes = probes
        .iter()
        .map(|p| Ok((u(p, "pid")?, p.clone())))
        .collect::<Result<std::collections::HashMap<_, _>, Outcome>>()?;
    Ok((probes, parent.clone()))
}

/// `-f` follows what a program starts (`--helper forks`: a `fork()` child that maps 3 MiB,
/// moves its break and execs; a `posix_spawn`; a `CLONE_VFORK` child that exits 5), each
/// with its pid: the forked child's first address space is its parent's as the parent read
/// it from `/proc/self/maps` just before forking, its own calls return what it saw, an
/// `execve` is a new address space whose `start_brk` is the one the new program reads from
/// its `/proc/self/stat`, and each child's end is its exit status; the programs run under
/// the tracer's seccomp filter. Without `-f` none of them is shown nor filtered, and with
/// or without, every status and every child's calls are what they are untraced (a child
/// under the filter but without a tracer would see its memory calls fail with `ENOSYS`).
pub fn cli_trace_follows_forks() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let plain = helper_untraced("forks")?;
    let (plain_probes, plain) = forks_output(&plain.stdout)?;
    check_eq!(plain_probes.len(), 2, "untraced: two programs execed");
    for follow in [false, true] {
        let path = format!("/tmp/mmscope-trace-forks-{follow}.json");
        let mut args = vec!["trace", "--json", "-o", &path];
        if follow {
            args.push("-f");
        }
        args.extend(["--", &exe, "--helper", "forks"]);
        let out = output(mmscope(&args)?)?;
        let how = if follow { "with -f" } else { "without -f" };
        check_eq!(out.status.code(), Some(0), "{how}: {}", text(&out.stderr));
        let (probes, parent) = forks_output(&out.stdout)?;
        for key in ["child_status", "spawn_status", "vfork_status"] {
            check_eq!(parent[key], plain[key], "{how}: {key}, as untraced");
        }
        check!(
            u(&parent, "child_mmap")? != u64::MAX && u(&parent, "child_brk")? > 0,
            "{how}: the forked child's mmap and brk worked: {parent}"
        );
        check_eq!(probes.len(), 2, "{how}: two programs execed");
        // With -f, under the tracer's seccomp filter (Seccomp: 2), which every child
        // inherits; without, as untraced (the filter would need a tracer for each child).
        let untraced = plain_probes.values().next().map(|p| p["seccomp"].clone());
        for (pid, probe) in &probes {
            let want = if follow {
                Some(Value::from("2"))
            } else {
                untraced.clone()
            };
            check_eq!(
                Some(probe["seccomp"].clone()),
                want,
                "{how}: program {pid}'s seccomp mode"
            );
        }
        let events = trace_lines(&path)?;
        let (child, spawned, vforked) = (
            u(&parent, "child")?,
            u(&parent, "spawned")?,
            u(&parent, "vforked")?,
        );
        let of = |pid: u64| {
            events
                .iter()
                .enumerate()
                .filter(move |(_, e)| e["pid"].as_u64() == Some(pid))
        };
        let summary = events.last().cloned().unwrap_or_default();
        if !follow {
            for pid in [child, spawned, vforked] {
                check_eq!(of(pid).count(), 0, "without -f: nothing of process {pid}");
            }
            check!(
                summary.get("processes").is_none(),
                "without -f: no processes counted: {summary}"
            );
            continue;
        }
        check_eq!(
            summary["processes"].as_u64(),
            Some(3),
            "three processes followed: {summary}"
        );
        // The forked child: its first address space, its calls, its exec, its end.
        let Some((at_fork, fork)) = of(child).next() else {
            return Err(Outcome::Fail(format!("no event of process {child}")));
        };
        check_eq!(fork["event"], "fork", "the first event of {child}: {fork}");
        check_eq!(fork["how"], "fork", "{child} was forked");
        check_eq!(fork["shared"], false, "a forked child has a copy");
        check_eq!(fork["parent"], parent["pid"], "{child}'s parent");
        let ranges = |vmas: &Value| -> Vec<String> {
            vmas.as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    format!(
                        "{:x}-{:x}",
                        u(v, "start").unwrap_or(0),
                        u(v, "end").unwrap_or(0)
                    )
                })
                .collect()
        };
        let maps: Vec<String> = parent["maps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            // The vsyscall page is in maps but is no VMA.
            .filter(|m| !m.starts_with("ffffffffff600000"))
            .map(str::to_string)
            .collect();
        check_eq!(
            ranges(&fork["vmas"]),
            maps,
            "the child's first address space is its parent's just before fork"
        );
        let (child_mmap, child_brk) = (u(&parent, "child_mmap")?, u(&parent, "child_brk")?);
        let calls: Vec<&Value> = of(child)
            .map(|(_, e)| e)
            .filter(|e| e["event"] == "syscall")
            .collect();
        check!(
            calls.iter().any(|e| e["syscall"] == "mmap"
                && e["ret"].as_u64() == Some(child_mmap)
                && e["args"][1].as_u64() == Some(3 << 20)),
            "the child's 3 MiB mmap returned what it saw: {calls:?}"
        );
        check!(
            calls
                .iter()
                .any(|e| e["syscall"] == "brk" && e["brk_after"].as_u64() == Some(child_brk)),
            "the child's brk moved its break to what it saw"
        );
        check!(
            of(child).all(|(i, _)| i >= at_fork),
            "nothing of {child} before its fork event"
        );
        for (pid, how, shared) in [(child, "fork", false), (spawned, "vfork", true)] {
            let exec = of(pid).find(|(_, e)| e["event"] == "exec").map(|(_, e)| e);
            let Some(exec) = exec else {
                return Err(Outcome::Fail(format!("no exec of process {pid}")));
            };
            let probe = probes.get(&pid).cloned().unwrap_or_default();
            check_eq!(
                exec["start_brk"],
                probe["start_brk"],
                "{pid}'s exec: start_brk as the new program reads it"
            );
            let fork = of(pid).find(|(_, e)| e["event"] == "fork").map(|(_, e)| e);
            check_eq!(
                fork.map(|f| (f["how"].clone(), f["shared"].clone())),
                Some((Value::from(how), Value::from(shared))),
                "how {pid} was started"
            );
        }
        for (pid, status) in [(child, 7), (spawned, 7), (vforked, 5)] {
            let end = of(pid).find(|(_, e)| e["event"] == "end").map(|(_, e)| e);
            check_eq!(
                end.and_then(|e| e["exit_code"].as_i64()),
                Some(status),
                "process {pid} ends with its status"
            );
        }
        let vfork = of(vforked)
            .next()
            .map(|(_, e)| e.clone())
            .unwrap_or_default();
        check_eq!(
            (vfork["how"].as_str(), vfork["shared"].as_bool()),
            (Some("vfork"), Some(false)),
            "CLONE_VFORK without CLONE_VM: {vfork}"
        );
    }
    Ok(())
}

/// A VMA change `mmscope trace` does not stop at (`mlock` of page A) between two calls it does
/// (`mmap` of A, then of B) is not shown as part of the second: B's diff adds B and nothing
/// else touches A. The tracer takes a call's starting VMAs from the last call's when the
/// module says no writer of the mmap lock came in between (`vma_seq`); if that were wrong, A's
/// new flags would show up in B's diff.
pub fn cli_trace_untraced_changes_stay_out_of_the_next_call() -> TestResult {
    let path = "/tmp/mmscope-trace-mlock.json";
    let (got, events) = trace_helper("mlock-between", path)?;
    let (a, b) = (u(&got, "a")?, u(&got, "b")?);
    let Some(call) = events.iter().find(|e| {
        e["event"] == "syscall" && e["syscall"] == "mmap" && e["ret"].as_u64() == Some(b)
    }) else {
        return Err(Outcome::Fail(format!(
            "no mmap returning {b:#x} in the trace"
        )));
    };
    let holds_a = |v: &Value| {
        v["start"].as_u64().is_some_and(|s| s <= a) && v["end"].as_u64().is_some_and(|e| e > a)
    };
    for side in ["removed", "added"] {
        let touching: Vec<&Value> = call[side]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| holds_a(v))
            .collect();
        check!(
            touching.is_empty(),
            "B's mmap {side} nothing that holds A ({a:#x}, locked before it): {touching:?}"
        );
    }
    check!(
        call["added"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["start"].as_u64() == Some(b)),
        "B's mmap adds B: {call}"
    );
    Ok(())
}

/// `-f` past a child that makes itself unreadable (`PR_SET_DUMPABLE` 0), traced by an
/// ordinary user, who may then no longer read it: the trace says so once (`unreadable`), the
/// child runs on and exits 0 with its own calls working, and the program's calls after it are
/// traced as before; nothing of the child is shown after.
pub fn cli_trace_follows_past_an_unreadable_child() -> TestResult {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let path = "/tmp/mmscope-trace-undumpable.json";
    let _ = std::fs::remove_file(path);
    let bin = bin()?;
    let (code, out, err) = spawn_as(
        1000,
        &[
            &bin,
            "trace",
            "-f",
            "--json",
            "-o",
            path,
            "--",
            &exe,
            "--helper",
            "undumpable",
        ],
    )
    .and_then(UserChild::output)
    .context("run mmscope trace -f as uid 1000")?;
    check_eq!(code, Some(0), "mmscope trace -f as uid 1000: {err}");
    let got = json(out.trim())?;
    check_eq!(got["status"].as_i64(), Some(0), "the child exited 0: {got}");
    check_eq!(
        got["mapped"].as_i64(),
        Some(1),
        "the program's own mapping worked"
    );
    let child = u(&got, "child")?;
    let events = trace_lines(path)?;
    let at = events
        .iter()
        .position(|e| e["event"] == "unreadable" && e["pid"].as_u64() == Some(child));
    let Some(at) = at else {
        return Err(Outcome::Fail(format!(
            "no `unreadable` event for the child {child}"
        )));
    };
    check!(
        events[at + 1..]
            .iter()
            .all(|e| e["pid"].as_u64() != Some(child) || e["event"] == "end"),
        "nothing of {child} but its end after it became unreadable"
    );
    check!(
        events[at..].iter().any(|e| e["event"] == "syscall"
            && e["syscall"] == "mmap"
            && e["args"][1].as_u64() == Some(6 * page_size() as u64)),
        "the program's own 6-page mmap after it is traced"
    );
    Ok(())
}

/// The function names of a call's `stack`, innermost first (`?` where unknown).
fn stack_functions(call: &Value) -> Vec<String> {
    call["stack"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["function"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Whether `names` holds frames matching `want` in that order (each a function name, or a
/// name glibc gives the same function under an alias: `mmap` is also `mmap64`, `__mmap`,
/// `malloc` is `__libc_malloc`, `__GI___libc_malloc`, `pthread_create` `__pthread_create_2_1`).
fn calls_in_order(names: &[String], want: &[&str]) -> bool {
    // Without a symbol version suffix (`_2_1`).
    let unversioned = |name: &str| -> String {
        let parts: Vec<&str> = name.rsplitn(3, '_').collect();
        match parts.as_slice() {
            [minor, major, stem]
                if [minor, major]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                stem.to_string()
            }
            _ => name.to_string(),
        }
    };
    let same = |name: &str, want: &str| {
        let name = unversioned(name);
        let name = name.as_str();
        let bare = name.trim_start_matches('_').trim_end_matches("64");
        name == want
            || bare == want
            || (bare.ends_with(&format!("_{want}")) && !want.starts_with('_'))
    };
    let mut rest = names.iter();
    want.iter().all(|w| rest.any(|n| same(n, w)))
}

/// `--stacks` on `demo/stacks.c`, linked statically and dynamically (its frames then cross
/// into the disk's libc, which has `.eh_frame` but no debug information): the heap growth
/// `grow_heap()` caused is a `brk` whose stack runs brk ← malloc ← grow_heap ← main (through
/// sysmalloc and _int_malloc where the symbols are there, the static glibc), the 3 MiB map
/// is map_direct's, the thread's stack pthread_create's, each at the source line the
/// program printed for it; the summary's top call sites give each of those functions what
/// its calls mapped; `--stack-depth 3` keeps 3 frames; without `--stacks` there is no stack.
pub fn cli_trace_stacks() -> TestResult {
    for name in ["stacks", "stacks-dynamic"] {
        let program = prog(name)?;
        let path = "/tmp/mmscope-trace-stacks.json";
        let out = output(mmscope(&[
            "trace", "--stacks", "--json", "-o", path, "--", &program,
        ])?)?;
        check_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let lines = json(text(&out.stdout).trim())?;
        let events = trace_lines(path)?;
        let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "syscall").collect();
        check!(
            calls
                .iter()
                .all(|c| c["stack"].as_array().is_some_and(|s| !s.is_empty())),
            "{name}: every call has a stack"
        );
        let frame_of = |call: &Value, function: &str| {
            call["stack"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["function"] == function)
                .cloned()
        };
        // Debian's libc has the names of its internal functions only in its detached debug
        // symbols (libc6-dbg), which the guest's disk carries where the host has them.
        let mut heap = vec!["brk", "malloc", "grow_heap", "main"];
        if name == "stacks" || std::path::Path::new("/usr/lib/debug/.build-id").is_dir() {
            heap = vec![
                "brk",
                "sbrk",
                "sysmalloc",
                "_int_malloc",
                "malloc",
                "grow_heap",
                "main",
            ];
        }
        let cases = [
            ("brk", heap),
            ("mmap", vec!["mmap", "map_direct", "main"]),
            (
                "mmap",
                vec!["mmap", "pthread_create", "start_thread", "main"],
            ),
        ];
        for (syscall, want) in cases {
            let caller = want[want.len() - 2];
            let found = calls
                .iter()
                .find(|c| c["syscall"] == syscall && calls_in_order(&stack_functions(c), &want));
            let Some(call) = found else {
                let seen: Vec<Vec<String>> = calls
                    .iter()
                    .filter(|c| c["syscall"] == syscall)
                    .map(|c| stack_functions(c))
                    .collect();
                return Err(Outcome::Fail(format!(
                    "{name}: no {syscall} with the frames {want:?}; seen {seen:?}"
                )));
            };
            let frame = frame_of(call, caller).unwrap_or_default();
            check_eq!(
                frame["line"].as_u64(),
                lines[caller].as_u64(),
                "{name}: {caller}'s frame is at the line of its call: {frame}"
            );
            check!(
                frame["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("stacks.c")),
                "{name}: {caller}'s frame names its source file: {frame}"
            );
        }
        // The summary's call sites: each is what the calls with exactly its named functions
        // mapped, recounted here from the calls; map_direct's is the 3 MiB the program asked
        // for, start_thread's the thread stack pthread_create mapped (that call's length).
        let summary = events.last().cloned().unwrap_or_default();
        let sites = summary["top_mapped"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let named = |c: &Value| -> Vec<Value> {
            c["stack"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["function"].is_string())
                .map(|f| f["function"].clone())
                .collect()
        };
        let mapped = |c: &Value| -> u64 {
            let arg = |i: usize| c["args"][i].as_u64().unwrap_or(0);
            if c["errno"].is_string() {
                return 0;
            }
            match c["syscall"].as_str() {
                Some("mmap") => arg(1),
                Some("mremap") => arg(2).saturating_sub(arg(1)),
                Some("brk") => u(c, "brk_after")
                    .unwrap_or(0)
                    .saturating_sub(u(c, "brk_before").unwrap_or(0)),
                _ => 0,
            }
        };
        check!(!sites.is_empty(), "{name}: the summary has call sites");
        for site in &sites {
            let stack = site["stack"].as_array().cloned().unwrap_or_default();
            let of_site: Vec<u64> = calls
                .iter()
                .filter(|c| named(c) == stack)
                .map(|c| mapped(c))
                .filter(|&b| b > 0)
                .collect();
            check_eq!(
                (site["bytes"].as_u64(), site["calls"].as_u64()),
                (Some(of_site.iter().sum()), Some(of_site.len() as u64)),
                "{name}: the call site {stack:?}, against its calls"
            );
        }
        let site_of = |function: &str| {
            sites
                .iter()
                .find(|s| {
                    s["stack"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|n| n == function))
                })
                .and_then(|s| s["bytes"].as_u64())
        };
        let thread_stack = calls
            .iter()
            .find(|c| {
                c["syscall"] == "mmap" && stack_functions(c).iter().any(|n| n == "start_thread")
            })
            .and_then(|c| c["args"][1].as_u64());
        check_eq!(
            site_of("map_direct"),
            Some(3 << 20),
            "{name}: map_direct's 3 MiB"
        );
        check_eq!(
            site_of("start_thread"),
            thread_stack,
            "{name}: the thread's stack"
        );
        let out = output(mmscope(&[
            "trace",
            "--stacks",
            "--stack-depth",
            "3",
            "--json",
            "-o",
            path,
            "--",
            &program,
        ])?)?;
        check_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let events = trace_lines(path)?;
        check!(
            events
                .iter()
                .filter(|e| e["event"] == "syscall")
                .all(|e| e["stack"]
                    .as_array()
                    .is_some_and(|s| (1..=3).contains(&s.len()))),
            "{name}: --stack-depth 3 keeps 1 to 3 frames"
        );
    }
    let out = output(mmscope(&[
        "trace",
        "--json",
        "-o",
        "/tmp/mmscope-trace-nostacks.json",
        "--",
        &prog("stacks")?,
    ])?)?;
    check_eq!(out.status.code(), Some(0), "without --stacks");
    let events = trace_lines("/tmp/mmscope-trace-nostacks.json")?;
    check!(
        events.iter().all(|e| e.get("stack").is_none()),
        "no stack without --stacks"
    );
    Ok(())
}

/// The named functions of a `resident` event's site, innermost first (or its label).
fn site_functions(site: &Value) -> Vec<String> {
    match site["label"].as_str() {
        Some(label) => vec![format!("[{label}]")],
        None => stack_functions(site),
    }
}

/// `mmscope trace -f --faults` on demo/firsttouch.c, static and dynamic: every page a known
/// function first touched is its own, exactly (the toucher's k pages, the kernel's writes
/// during the read() it asked for, none for the function that only mapped the block, all
/// given back by the munmap, kept through an mremap that moves them, MAP_POPULATE's pages
/// the mmap's and given back by MADV_DONTNEED, a forked child's own touches its), the pages
/// attributed equal the kernel's RssAnon at every stop, and the flame graphs' totals are the
/// attribution's.
pub fn cli_trace_faults() -> TestResult {
    let page = page_size();
    for name in ["firsttouch", "firsttouch-dynamic"] {
        let program = prog(name)?;
        let path = "/tmp/mmscope-trace-faults.json";
        let flame = "/tmp/mmscope-trace-faults";
        let out = output(mmscope(&[
            "trace", "-f", "--faults", "--flame", flame, "--json", "-o", path, "--", &program,
        ])?)?;
        let err = text(&out.stderr);
        // No perf events in the kernel (ENOENT, ENOSYS), or not allowed (EACCES): any other
        // error is a failure.
        if err.contains("perf_event_open")
            && ["os error 2)", "os error 38)", "os error 13)"]
                .iter()
                .any(|e| err.contains(e))
        {
            skip!("{name}: the kernel records no page faults here: {err}");
        }
        check_eq!(out.status.code(), Some(0), "{name}: {err}");
        let did = json(text(&out.stdout).trim())?;
        let events = trace_lines(path)?;
        let resident: Vec<&Value> = events.iter().filter(|e| e["event"] == "resident").collect();
        check!(!resident.is_empty(), "{name}: resident events");
        check!(
            events
                .iter()
                .filter(|e| e["event"] == "syscall")
                .all(|c| c.get("stack").is_none()),
            "{name}: no stacks on the calls without --stacks"
        );

        // The sum of every change of a process so far is the event's total, which is the
        // kernel's RssAnon at that stop.
        let mut totals: std::collections::HashMap<i64, i64> = Default::default();
        for e in &resident {
            let sites = e["sites"].as_array().cloned().unwrap_or_default();
            let sum: i64 = sites.iter().map(|s| s["pages"].as_i64().unwrap_or(0)).sum();
            let total = totals.entry(e["pid"].as_i64().unwrap_or(0)).or_default();
            *total += sum;
            let total = *total;
            if e["when"] == "ended" {
                check_eq!(total, 0, "{name}: every page is given back at the end: {e}");
                continue;
            }
            check_eq!(
                Some(total as u64),
                e["pages"].as_u64(),
                "{name}: the changes add up to the total: {e}"
            );
            check_eq!(
                e["pages"].as_u64(),
                e["rss_anon_pages"].as_u64(),
                "{name}: the pages attributed are the kernel's RssAnon: {e}"
            );
        }

        // Pages of process `pid` by site, at each event of a kind.
        let program_pid = events
            .iter()
            .find(|e| e["event"] == "exec")
            .map(|e| e["pid"].clone())
            .unwrap_or_default();
        type Has<'a> = &'a dyn Fn(&[String]) -> bool;
        let pages_in = |pid: &Value, when: &str, syscall: Option<&str>, has: Has<'_>| {
            resident
                .iter()
                .filter(|e| e["pid"] == *pid && e["when"] == when)
                .filter(|e| syscall.is_none_or(|s| e["syscall"] == s))
                .flat_map(|e| e["sites"].as_array().cloned().unwrap_or_default())
                .filter(|s| has(&site_functions(s)))
                .map(|s| s["pages"].as_i64().unwrap_or(0))
                .sum::<i64>()
        };
        let pages_of = |when: &str, syscall: Option<&str>, has: Has<'_>| {
            pages_in(&program_pid, when, syscall, has)
        };
        let inner = |f: &'static str| move |n: &[String]| n.first().is_some_and(|x| x == f);
        let within = |f: &'static str| move |n: &[String]| n.iter().any(|x| x == f);
        let touched = did["touched"].as_i64().unwrap_or(-1);
        check_eq!(
            pages_of("before", None, &inner("touch_pages")),
            touched,
            "{name}: touch_pages first touched exactly its pages"
        );
        check_eq!(
            pages_of("after", Some("munmap"), &inner("touch_pages")),
            -touched,
            "{name}: free_block's munmap gave them all back"
        );
        check!(
            !resident
                .iter()
                .flat_map(|e| e["sites"].as_array().cloned().unwrap_or_default())
                .any(|s| site_functions(&s).iter().any(|f| f == "allocate_block")),
            "{name}: allocate_block, which only maps, made no page resident"
        );
        let site = resident
            .iter()
            .flat_map(|e| e["sites"].as_array().cloned().unwrap_or_default())
            .find(|s| {
                site_functions(s)
                    .first()
                    .is_some_and(|f| f == "touch_pages")
            })
            .unwrap_or_default();
        check_eq!(
            site["stack"][0]["line"].as_u64(),
            did["touch_line"].as_u64(),
            "{name}: the touch's source line"
        );
        check!(
            calls_in_order(&site_functions(&site), &["touch_pages", "main"]),
            "{name}: touch_pages is called by main: {site}"
        );
        check!(
            pages_of("before", None, &|n: &[String]| calls_in_order(
                n,
                &["malloc", "grow_heap", "main"]
            )) > 0,
            "{name}: malloc, called by grow_heap, wrote the heap's new pages"
        );

        // The kernel's writes into a block during read(): the read's caller's, where the
        // kernel lets the tracer see them (root), else labelled; moved by mremap, still its.
        let summary = events.last().cloned().unwrap_or_default();
        let r = &summary["resident"];
        let filled = did["filled"].as_i64().unwrap_or(-1);
        check_eq!(
            did["read"].as_i64(),
            Some(filled * page as i64),
            "{name}: the read filled the block"
        );
        if r["kernel_faults"] == true {
            check_eq!(
                pages_of("before", None, &within("fill_by_kernel")),
                filled,
                "{name}: the pages the kernel wrote during fill_by_kernel's read are its own"
            );
            check_eq!(
                pages_of("ended", None, &within("fill_by_kernel")),
                -filled,
                "{name}: they stayed its own through the mremap that moved them"
            );
        } else {
            let label = "[made resident with no fault of the program's]";
            check!(
                pages_of("before", None, &inner(label)) >= filled,
                "{name}: without the kernel's faults, the pages it wrote are labelled"
            );
        }
        check_eq!(
            pages_of("after", Some("mremap"), &|_: &[String]| true),
            0,
            "{name}: the mremap that moved the block changed nothing"
        );
        let populated = did["populated"].as_i64().unwrap_or(-1);
        let by_mmap = "[made resident by mmap itself]";
        check_eq!(
            pages_of("after", Some("mmap"), &inner(by_mmap)),
            populated,
            "{name}: MAP_POPULATE's pages are the mmap's, with no fault"
        );
        check_eq!(
            pages_of("after", Some("madvise"), &inner(by_mmap)),
            -populated,
            "{name}: MADV_DONTNEED gave them back"
        );

        // The child: a copy of the parent's pages as it starts, and its own touches.
        let child = &did["child_pid"];
        check_eq!(
            pages_in(child, "exit", None, &inner("child_touch")),
            did["child"].as_i64().unwrap_or(-1),
            "{name}: the child's touches are its own"
        );
        check_eq!(
            pages_of("exit", None, &inner("child_touch")),
            0,
            "{name}: and not its parent's"
        );
        check!(
            pages_in(child, "start", None, &within("grow_heap")) > 0,
            "{name}: the child starts with its parent's pages, grow_heap's among them"
        );

        // The summary and the flame graphs.
        let exit = resident
            .iter()
            .rfind(|e| e["pid"] == program_pid && e["when"] == "exit")
            .cloned()
            .unwrap_or_default();
        check_eq!(
            r["exit_pages"].as_u64(),
            exit["rss_anon_pages"].as_u64().filter(|&p| p > 0),
            "{name}: the summary's pages at exit are the program's RssAnon as it exited"
        );
        check_eq!(r["unequal"].as_u64(), Some(0), "{name}: {r}");
        check!(r["compared"].as_u64().unwrap_or(0) > 3, "{name}: {r}");
        let kib = page as u64 / 1024;
        for (which, pages, touch) in [
            ("peak", r["peak_pages"].as_u64(), touched as u64),
            ("exit", r["exit_pages"].as_u64(), 0),
        ] {
            let folded = std::fs::read_to_string(format!("{flame}-{which}.folded"))
                .map_err(|e| Outcome::Fail(format!("{name}: {flame}-{which}.folded: {e}")))?;
            let count = |l: &str| -> u64 {
                l.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            let sum: u64 = folded.lines().map(count).sum();
            check_eq!(
                Some(sum),
                pages.map(|p| p * kib),
                "{name}: {which}: {folded}"
            );
            let touch_kib: u64 = folded
                .lines()
                .filter(|l| {
                    l.split(' ')
                        .next()
                        .is_some_and(|s| s.ends_with(";touch_pages"))
                })
                .map(count)
                .sum();
            check_eq!(
                touch_kib,
                touch * kib,
                "{name}: {which}: touch_pages: {folded}"
            );
            let svg = std::fs::read_to_string(format!("{flame}-{which}.svg"))
                .map_err(|e| Outcome::Fail(format!("{name}: {flame}-{which}.svg: {e}")))?;
            let opts = roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            };
            let doc = roxmltree::Document::parse_with_options(&svg, opts)
                .map_err(|e| Outcome::Fail(format!("{name}: {which}.svg does not parse: {e}")))?;
            let all = doc
                .descendants()
                .filter(|n| n.has_tag_name("title"))
                .filter_map(|n| n.text())
                .find(|t| t.starts_with("all ("))
                .unwrap_or_default()
                .to_string();
            check_eq!(
                all,
                format!("all ({sum} KiB, 100%)"),
                "{name}: the {which} flame graph's total"
            );
        }
    }
    Ok(())
}

/// The chain of calls from `node` (a `--kernel` graph in JSON) down to `function`, if it runs
/// in it.
fn graph_path<'a>(node: &'a Value, function: &str) -> Option<Vec<&'a str>> {
    let name = node["function"].as_str()?;
    if name == function {
        return Some(vec![name]);
    }
    node["calls"].as_array()?.iter().find_map(|c| {
        graph_path(c, function).map(|mut p| {
            p.insert(0, name);
            p
        })
    })
}

/// Whether `function` runs anywhere in the graphs `nodes`.
fn graph_has(nodes: &Value, function: &str) -> bool {
    (nodes.as_array().into_iter().flatten()).any(|n| graph_path(n, function).is_some())
}

/// Checks that the graphs `nodes` run the functions of `chain` in that order, each called
/// (directly or not) by the one before: the code path the kernel's source gives. A name
/// marked `~` is defined in the same file as its caller, where the compiler may inline it
/// (there is no LTO here): the graph then cannot show it, and it is left out if absent; every
/// other call crosses files, and must show.
fn check_chain(what: &str, nodes: &Value, chain: &[&str]) -> TestResult {
    let name = |f: &&str| f.trim_start_matches('~').to_string();
    // The deepest function of the chain the graphs show; every one the chain requires after
    // it is missing.
    let Some(deepest) = chain.iter().rposition(|f| graph_has(nodes, &name(f))) else {
        return Err(Outcome::Fail(format!(
            "{what}: none of {chain:?} in {nodes}"
        )));
    };
    let missing: Vec<&str> = (chain[deepest + 1..].iter().copied())
        .filter(|f| !f.starts_with('~'))
        .collect();
    check!(
        missing.is_empty(),
        "{what}: {missing:?} not in the graph {nodes}"
    );
    let target = name(&chain[deepest]);
    let path = (nodes.as_array().into_iter().flatten())
        .find_map(|n| graph_path(n, &target))
        .ok_or_else(|| Outcome::Fail(format!("{what}: {target} is not in the graph")))?;
    let mut inlined = Vec::new();
    let mut at = path.iter();
    for f in &chain[..=deepest] {
        match f.strip_prefix('~') {
            Some(f) if !path.contains(&f) => inlined.push(f),
            Some(f) => check!(
                at.any(|p| *p == f),
                "{what}: {f} out of order in {}",
                path.join(" → ")
            ),
            None => check!(
                at.any(|p| p == f),
                "{what}: {f} is not on the path to {target}: {}",
                path.join(" → ")
            ),
        }
    }
    println!("# {what}: {}", path.join(" → "));
    if !inlined.is_empty() {
        println!(
            "#   inlined into their callers here: {}",
            inlined.join(", ")
        );
    }
    Ok(())
}

/// Where the pages of `mmscope trace --html` go for the host's browser tests
/// (tools/tests/browser.rs): `MMSCOPE_OUT/pages` (`/tmp/pages` without it), made if need be.
fn pages_dir() -> Result<std::path::PathBuf, Outcome> {
    let out = std::env::var("MMSCOPE_OUT").unwrap_or_else(|_| "/tmp".to_string());
    let pages = std::path::Path::new(&out).join("pages");
    std::fs::create_dir_all(&pages).context("create the pages' directory")?;
    Ok(pages)
}

/// Keeps the JSON trace `trace` of page `name` beside it in `pages`, gzip-compressed
/// (`NAME.jsonl.gz`): the browser tests hold the page against it.
fn keep_trace(pages: &std::path::Path, name: &str, trace: &[u8]) -> Result<(), Outcome> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, trace).context("compress the trace")?;
    let gz = gz.finish().context("compress the trace")?;
    std::fs::write(pages.join(format!("{name}.jsonl.gz")), gz).context("write the trace")
}

/// `mmscope trace --kernel`: each call of `demo/kernelpaths.c` shows the kernel functions the
/// 7.3 source says it runs (each chain below with where in the source the calls are), the
/// page faults between the calls show the fault path, and calls that do something else do not
/// run them.
pub fn cli_trace_kernel() -> TestResult {
    let program = prog("kernelpaths")?;
    let path = "/tmp/mmscope-trace-kernel.json";
    // Its page too, for the browser tests on the host (tools/tests/browser.rs).
    let pages = pages_dir()?;
    let page = pages.join("kernelpaths.html");
    let out = output(mmscope(&[
        "trace",
        "--kernel",
        "--kernel-depth",
        "9",
        "--json",
        "-o",
        path,
        "--html",
        &page.to_string_lossy(),
        "--",
        &program,
    ])?)?;
    let err = text(&out.stderr);
    if err.contains("no function-graph tracer") || err.contains("tracefs is not mounted") {
        skip!("this kernel has no function-graph tracer: {err}");
    }
    // Refused, as it must be, in a guest under QEMU's multi-threaded TCG (scripts/run-guest.sh):
    // `make test` runs this test again in a boot of its own with one TCG thread.
    let threaded = std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|a| a == "mmscope.accel=tcg");
    if threaded {
        check!(
            err.contains("multi-threaded TCG") && out.status.code() == Some(1),
            "--kernel under multi-threaded TCG must refuse: {err}"
        );
        skip!("QEMU's multi-threaded TCG: make test runs this in a boot with one TCG thread");
    }
    check_eq!(out.status.code(), Some(0), "{err}");
    let did = json(text(&out.stdout).trim())?;
    let at = |key: &str| did[key].as_u64().unwrap_or(0);
    let events = trace_lines(path)?;
    let trace = std::fs::read(path).context("read the trace")?;
    keep_trace(&pages, "kernelpaths", &trace)?;
    let page = page_size() as u64;
    let calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "syscall").collect();
    // Every call has its graph, from its own entry.
    for c in &calls {
        let entry = format!("__x64_sys_{}", c["syscall"].as_str().unwrap_or(""));
        check_eq!(
            c["kernel"]["call"][0]["function"].as_str(),
            Some(entry.as_str()),
            "the graph of {}",
            c["call"]
        );
    }
    let find = |syscall: &str, arg0: u64, what: &str| {
        calls
            .iter()
            .copied()
            .find(|c| c["syscall"] == syscall && c["args"][0].as_u64() == Some(arg0))
            .ok_or_else(|| Outcome::Fail(format!("no {what} in the trace")))
    };
    let start = at("brk");
    let grow = find("brk", start + 16 * page, "brk growing the heap")?;
    let shrink = find("brk", start + 8 * page, "brk shrinking the heap")?;
    let merge = find("mmap", at("lower"), "mmap below a mapping")?;
    let split = find("mprotect", at("middle"), "mprotect of a middle page")?;

    // Where each call is in the 7.3 source: `~` marks a function defined in the same file as
    // its caller (see check_chain). brk growing an existing heap: SYSCALL_DEFINE1(brk)
    // (mm/mmap.c:117, whose __do_sys_brk the macro makes `static inline`) calls
    // do_brk_flags() (mm/vma.c:3021, another file) at mm/mmap.c:196, which expands the heap's
    // VMA: vma_merge_new_range() (mm/vma.c:3056) → vma_expand() (:1195).
    check_chain(
        "brk grow",
        &grow["kernel"]["call"],
        &[
            "__x64_sys_brk",
            "~__do_sys_brk",
            "do_brk_flags",
            "~vma_merge_new_range",
            "~vma_expand",
        ],
    )?;
    check!(
        !graph_has(&grow["kernel"]["call"], "do_vmi_align_munmap"),
        "brk grow unmaps nothing"
    );
    // brk shrinking: sys_brk() calls do_vmi_align_munmap() (mm/vma.c:1668) at mm/mmap.c:175;
    // it splits the heap's VMA (:1680 vms_gather_munmap_vmas() → :1512 __split_vma()) and
    // unmaps the top (:1689 vms_complete_munmap_vmas() → :1430 vms_clear_ptes() →
    // unmap_region() → unmap_vmas(), mm/memory.c:2292).
    check_chain(
        "brk shrink",
        &shrink["kernel"]["call"],
        &[
            "__x64_sys_brk",
            "~__do_sys_brk",
            "do_vmi_align_munmap",
            "~vms_gather_munmap_vmas",
            "~__split_vma",
        ],
    )?;
    check_chain(
        "brk shrink",
        &shrink["kernel"]["call"],
        &[
            "__x64_sys_brk",
            "~__do_sys_brk",
            "do_vmi_align_munmap",
            "~vms_complete_munmap_vmas",
            "~vms_clear_ptes",
            "~unmap_region",
            "unmap_vmas",
        ],
    )?;
    check!(
        !graph_has(&shrink["kernel"]["call"], "do_brk_flags"),
        "brk shrink grows nothing"
    );
    // An anonymous mmap right below a compatible mapping: ksys_mmap_pgoff()
    // (arch/x86/kernel/sys_x86_64.c:96 → mm/mmap.c:581) → vm_mmap_pgoff() (mm/mmap.c:619 →
    // mm/util.c:565) → do_mmap() (mm/util.c:581 → mm/mmap.c:338) → mmap_region() (mm/mmap.c:573
    // → mm/vma.c:2971) → __mmap_region() → vma_merge_new_range() (mm/vma.c:2907) →
    // vma_expand() (:1195): no new VMA.
    check_chain(
        "mmap merge",
        &merge["kernel"]["call"],
        &[
            "__x64_sys_mmap",
            "ksys_mmap_pgoff",
            "vm_mmap_pgoff",
            "do_mmap",
            "mmap_region",
            "~__mmap_region",
            "~vma_merge_new_range",
            "~vma_expand",
        ],
    )?;
    let added = merge["added"].as_array().cloned().unwrap_or_default();
    check!(
        added
            .iter()
            .any(|v| v["start"].as_u64() == Some(at("lower"))
                && v["end"].as_u64() == Some(at("upper") + 4 * page)),
        "the mmap below made one VMA of both: {added:?}"
    );
    // mprotect of a middle page: do_mprotect_pkey() → mprotect_fixup() (mm/mprotect.c:1002),
    // which calls vma_modify_flags() (mm/vma.c:1793) at mm/mprotect.c:824 → vma_modify()
    // (mm/vma.c:1804) → split_vma() (:1776, :1784) → __split_vma() (:643).
    check_chain(
        "mprotect split",
        &split["kernel"]["call"],
        &[
            "__x64_sys_mprotect",
            "~do_mprotect_pkey",
            "~mprotect_fixup",
            "vma_modify_flags",
            "~vma_modify",
            "~split_vma",
            "~__split_vma",
        ],
    )?;
    check_eq!(
        split["added"].as_array().map(Vec::len),
        Some(3),
        "mprotect of the middle page leaves three VMAs"
    );

    // The first touches before the first madvise: anonymous faults. handle_mm_fault()
    // (called from arch/x86/mm/fault.c:1343) → __handle_mm_fault() → handle_pte_fault() →
    // do_pte_missing() → do_anonymous_page() (mm/memory.c:5428), which maps the new page
    // (:5520 map_anon_folio_pte_pf() → :5417 map_anon_folio_pte_nopf()) and adds it to the
    // VMA's anon_vma: folio_add_new_anon_rmap() (mm/rmap.c:1652).
    let markers: Vec<&Value> = calls
        .iter()
        .copied()
        .filter(|c| c["syscall"] == "madvise")
        .collect();
    let anon = markers
        .first()
        .ok_or_else(|| Outcome::Fail("no madvise in the trace".into()))?;
    let touched = at("touched");
    check!(
        anon["kernel"]["fault_count"].as_u64().unwrap_or(0) >= touched,
        "{touched} first touches before the madvise: {}",
        anon["kernel"]
    );
    check_chain(
        "anonymous fault",
        &anon["kernel"]["faults"],
        &[
            "handle_mm_fault",
            "~__handle_mm_fault",
            "~handle_pte_fault",
            "~do_pte_missing",
            "~do_anonymous_page",
            "~map_anon_folio_pte_pf",
            "~map_anon_folio_pte_nopf",
            "folio_add_new_anon_rmap",
        ],
    )?;
    // The module's pages: a shared mapping's write fault, do_fault() → do_shared_fault() →
    // __do_fault() (mm/memory.c:6001, :5539), which calls the module's fault callback (Rust,
    // not traced itself): no anonymous page anywhere.
    if at("device") != 0 {
        let device = markers
            .get(1)
            .ok_or_else(|| Outcome::Fail("no second madvise".into()))?;
        check_chain(
            "the module's fault",
            &device["kernel"]["faults"],
            &[
                "handle_mm_fault",
                "~__handle_mm_fault",
                "~handle_pte_fault",
                "~do_pte_missing",
                "~do_fault",
                "~do_shared_fault",
                "~finish_fault",
                "~set_pte_range",
                "folio_add_file_rmap_ptes",
            ],
        )?;
        check!(
            !graph_has(&device["kernel"]["faults"], "folio_add_new_anon_rmap"),
            "the module's pages are not anonymous"
        );
    }

    // The text shows the same graphs under each call.
    let out = output(mmscope(&["trace", "--kernel", "--", &program])?)?;
    let shown = text(&out.stdout) + &text(&out.stderr);
    check!(
        shown.contains("      kernel:\n        __x64_sys_brk"),
        "the text's graph under brk: {shown}"
    );
    check!(
        shown.contains("page faults between the calls:\n        handle_mm_fault"),
        "the text's faults before a call: {shown}"
    );
    // One trace at a time: a second is refused while the first runs; a trace killed (it
    // cannot clean up) leaves its instance and settings, which the next trace clears.
    let exe = std::env::current_exe().context("the selftests' path")?;
    let count = "/tmp/mmscope-kernel-ticker";
    let _ = std::fs::remove_file(count);
    let mut first = mmscope(&["trace", "--kernel", "-o", "/dev/null", "--"])?
        .arg(&exe)
        .args(["--helper", "ticker", count])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("mmscope trace --kernel of the ticker")?;
    let started = std::time::Instant::now();
    while !std::path::Path::new(count).exists() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = output(mmscope(&["trace", "--kernel", "--", &program])?)?;
    let _ = first.kill();
    let _ = first.wait();
    let refused = text(&second.stderr);
    check!(
        second.status.code() == Some(1)
            && refused.contains("another mmscope trace --kernel (process"),
        "a second trace while the first runs: {refused}"
    );
    let third = output(mmscope(&[
        "trace",
        "--kernel",
        "-o",
        "/dev/null",
        "--",
        &program,
    ])?)?;
    check_eq!(
        third.status.code(),
        Some(0),
        "a trace after one was killed: {}",
        text(&third.stderr)
    );

    // Tracing is off again, the kernel's settings as they were.
    check_eq!(
        std::fs::read_to_string("/sys/kernel/tracing/set_graph_function")
            .context("set_graph_function")?
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count(),
        0,
        "set_graph_function cleared after the trace"
    );
    check!(
        std::fs::read_dir("/sys/kernel/tracing/instances")
            .context("instances")?
            .next()
            .is_none(),
        "the trace's tracefs instance removed"
    );
    Ok(())
}

/// `mmscope trace --html`: one page per trace, self-contained (nothing fetched: no URL, no
/// `src`, `href`, `@import` or `url(`), smaller than the trace's JSON, and the very page
/// `mmscope report` makes from that JSON afterwards; `report` refuses what is not a trace,
/// naming the line. The pages of a heap scenario (glibc's `thread`, with stacks), of GNU sort
/// (with stacks and page faults), of 10,000 calls (`demo/manysteps.c`) and of a shell
/// pipeline with its processes (`-f`) go with their JSON
/// traces, gzip-compressed, to `MMSCOPE_OUT/pages`, where the host's browser tests
/// (tools/tests/browser.rs) open them.
pub fn cli_trace_html() -> TestResult {
    let pages = pages_dir()?;
    let heap = crate::heap::heap_dir()?;
    let thread = heap.join("glibc/thread").to_string_lossy().into_owned();
    let sort = "/usr/bin/sort";
    if !std::path::Path::new(sort).exists() {
        skip!("{sort} is not on the guest's disk");
    }
    let numbers: String = (0..20_000u64)
        .map(|i| format!("{}\n", i.wrapping_mul(2_654_435_761) % 1_000_000_007))
        .collect();
    std::fs::write("/tmp/html-numbers", numbers).context("write the numbers")?;
    let many = prog("manysteps")?;
    let pipeline = "/usr/bin/sort -n /tmp/html-numbers | tail -n 1";
    let runs: [(&str, &[&str], Vec<&str>); 4] = [
        ("thread", &["--stacks"], vec![thread.as_str()]),
        (
            "sort",
            &["--stacks", "--faults"],
            vec![sort, "-n", "-o", "/tmp/html-sorted", "/tmp/html-numbers"],
        ),
        ("manysteps", &[], vec![many.as_str()]),
        ("follow", &["-f"], vec!["/bin/sh", "-c", pipeline]),
    ];
    for (name, options, command) in runs {
        let json = format!("/tmp/{name}.jsonl");
        let html = pages.join(format!("{name}.html"));
        let html = html.to_string_lossy();
        let mut args = vec!["trace", "--json", "-o", &json, "--html", &html];
        args.extend_from_slice(options);
        args.push("--");
        args.extend(command.iter().copied());
        let run = output(mmscope(&args)?)?;
        check_eq!(run.status.code(), Some(0), "{name}: {}", text(&run.stderr));
        let page = std::fs::read_to_string(&*html).context("read the page")?;
        let trace = std::fs::read_to_string(&json).context("read the JSON trace")?;
        let steps = trace
            .lines()
            .filter(|l| l.contains("\"event\":\"syscall\""))
            .count();
        for needle in [
            "http:", "https:", " src=", " href=", "<link", "@import", "url(",
        ] {
            check!(
                !page.contains(needle),
                "{name}: the page loads nothing ({needle:?})"
            );
        }
        check!(
            page.contains(&format!("<title>mmscope trace: {}", command.join(" "))),
            "{name}: the page's title names the command"
        );
        // The trace in it is compressed: smaller than its JSON (the page's script and style
        // come on top, the same for every page).
        let data = page
            .split_once("data-encoding=\"gzip-base64\">")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(data, _)| data);
        check!(
            !data.is_empty() && data.len() < trace.len(),
            "{name}: the trace in the page ({} bytes) is smaller than its JSON ({} bytes)",
            data.len(),
            trace.len()
        );
        println!(
            "# {name}: {steps} steps, page {} bytes ({} per step), JSON {} bytes",
            page.len(),
            page.len() / steps.max(1),
            trace.len()
        );
        let again = format!("/tmp/{name}-report.html");
        let report = output(mmscope(&["report", &json, "-o", &again])?)?;
        check_eq!(
            report.status.code(),
            Some(0),
            "{name}: report: {}",
            text(&report.stderr)
        );
        let named = text(&report.stdout);
        check_eq!(
            named.trim(),
            again.as_str(),
            "{name}: report names the page"
        );
        check!(
            std::fs::read(&again).context("read the report's page")? == page.as_bytes(),
            "{name}: mmscope report made the page --html made"
        );
        keep_trace(&pages, name, trace.as_bytes())?;
        if name == "manysteps" {
            check!(steps >= 10_000, "manysteps made {steps} calls");
            // Its stack grew between two calls: that change is in the call after it.
            let grew = trace.lines().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|e| {
                    (e["added_before"].as_array().into_iter().flatten())
                        .any(|v| v["kind"] == "stack" && v["size"].as_u64() > Some(512 << 10))
                })
            });
            check!(
                grew,
                "manysteps: the stack's growth between two calls is in the JSON"
            );
        }
        let _ = std::fs::remove_file(&json);
        let _ = std::fs::remove_file(&again);
    }

    // A page never takes the place of a trace, nor is left empty by a trace that failed.
    let run = output(mmscope(&[
        "trace",
        "--json",
        "-o",
        "/tmp/html-same.jsonl",
        "--html",
        "/tmp/html-same.jsonl",
        "--",
        "/bin/true",
    ])?)?;
    check_eq!(run.status.code(), Some(1), "-o and --html naming one file");
    check!(
        text(&run.stderr).contains("both name /tmp/html-same.jsonl"),
        "-o and --html naming one file: {}",
        text(&run.stderr)
    );
    let run = output(mmscope(&[
        "trace",
        "--json",
        "-o",
        "/tmp/html-kept.jsonl",
        "--",
        "/bin/true",
    ])?)?;
    check_eq!(
        run.status.code(),
        Some(0),
        "a trace to keep: {}",
        text(&run.stderr)
    );
    let kept = std::fs::read("/tmp/html-kept.jsonl").context("read the trace")?;
    let over = output(mmscope(&[
        "report",
        "/tmp/html-kept.jsonl",
        "-o",
        "/tmp/./html-kept.jsonl",
    ])?)?;
    check_eq!(over.status.code(), Some(1), "report over its own trace");
    check!(
        std::fs::read("/tmp/html-kept.jsonl").context("read the trace")? == kept,
        "the trace is kept: {}",
        text(&over.stderr)
    );
    let _ = std::fs::remove_file("/tmp/html-failed.html");
    let failed = output(mmscope(&[
        "trace",
        "--html",
        "/tmp/html-failed.html",
        "--",
        "/no/such/program",
    ])?)?;
    check_eq!(
        failed.status.code(),
        Some(1),
        "a trace of a program that is not there"
    );
    check!(
        !std::path::Path::new("/tmp/html-failed.html").exists(),
        "no page (not even an empty one) from a trace that never started"
    );

    // Not a trace: what is wrong and where; nothing written.
    std::fs::write(
        "/tmp/html-bad.jsonl",
        "{\"event\":\"exec\",\"pid\":1}\nnot json\n",
    )
    .context("write a bad trace")?;
    let _ = std::fs::remove_file("/tmp/html-bad.html");
    let bad = output(mmscope(&["report", "/tmp/html-bad.jsonl"])?)?;
    check_eq!(bad.status.code(), Some(1), "report of a bad trace");
    let said = text(&bad.stderr);
    check!(
        said.contains("line 2 is not a trace event") && said.contains("mmscope trace --json"),
        "report names the bad line and what to give: {said}"
    );
    check!(
        !std::path::Path::new("/tmp/html-bad.html").exists(),
        "no page from a bad trace"
    );
    let missing = output(mmscope(&["report", "/tmp/html-no-such.jsonl"])?)?;
    check_eq!(missing.status.code(), Some(1), "report of a missing file");
    check!(
        text(&missing.stderr).contains("cannot read the trace /tmp/html-no-such.jsonl"),
        "report says it cannot read the file: {}",
        text(&missing.stderr)
    );
    Ok(())
}
