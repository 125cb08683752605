// SPDX-License-Identifier: GPL-2.0

//! Thin wrappers around the system calls and procfs files the tests use as ground truth.

use mmscope::abi::kind;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;

/// Turns a C-style return value into an `io::Result`.
pub fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `delete_module(name, O_NONBLOCK)`, what `rmmod` does.
pub fn delete_module(name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    cvt(unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) })?;
    Ok(())
}

/// `finit_module(fd, params, 0)` on the module file at `path`, what `insmod path params` does,
/// then what udev does with the new device node: [`apply_udev_rule`].
pub fn load_module_with(path: &str, params: &str) -> io::Result<()> {
    let file = fs::File::open(path)?;
    let params = CString::new(params).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: The fd is open and `params` is a valid C string for the duration of the call.
    cvt(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) })?;
    apply_udev_rule()
}

/// Gives the device node the mode that the shipped udev rule (`udev/60-mmscope.rules`, at the
/// path `MMSCOPE_UDEV_RULE` names) sets, as udev does when the module is loaded: the guest has
/// no udev, and its init does the same after its own `insmod`. Nothing if the variable is unset.
pub fn apply_udev_rule() -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = std::env::var("MMSCOPE_UDEV_RULE") else {
        return Ok(());
    };
    let mode = udev_rule_mode(&fs::read_to_string(&path)?)
        .ok_or_else(|| io::Error::other(format!("{path} sets no MODE for mmscope")))?;
    fs::set_permissions(mmscope::DEVICE_PATH, fs::Permissions::from_mode(mode))
}

/// The `MODE` that the udev rules `rules` give the device `mmscope`.
pub fn udev_rule_mode(rules: &str) -> Option<u32> {
    rules
        .lines()
        .filter(|l| l.starts_with("KERNEL==\"mmscope\","))
        .find_map(|l| {
            let (_, rest) = l.split_once("MODE=\"")?;
            let (mode, _) = rest.split_once('"')?;
            u32::from_str_radix(mode, 8).ok()
        })
}

/// Unloads `name` if it is loaded, then loads the module at `path` with `params`.
pub fn reload_module(name: &str, path: &str, params: &str) -> io::Result<()> {
    match delete_module(name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        res => res?,
    }
    load_module_with(path, params)
}

/// The reference count `/proc/modules` shows for `name`, or `None` if it is not loaded.
pub fn module_refcount(name: &str) -> io::Result<Option<u64>> {
    let modules = fs::read_to_string("/proc/modules")?;
    for line in modules.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some(name) {
            let count = fields.nth(1).and_then(|f| f.parse().ok());
            return count.map(Some).ok_or_else(|| {
                io::Error::other(format!("cannot parse /proc/modules line {line:?}"))
            });
        }
    }
    Ok(None)
}

/// The minor number `/proc/misc` lists for the misc device `name`.
pub fn misc_minor(name: &str) -> io::Result<Option<u32>> {
    let misc = fs::read_to_string("/proc/misc")?;
    Ok(misc.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let minor = fields.next()?.parse().ok()?;
        (fields.next() == Some(name)).then_some(minor)
    }))
}

/// The page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety requirements.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Pins the calling thread, and the processes it forks from now on, to the CPU it is running
/// on.
pub fn pin_to_this_cpu() -> io::Result<()> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = cvt(unsafe { libc::sched_getcpu() }.into())? as usize;
    // SAFETY: An all-zero `cpu_set_t` is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET sets a bit of `set`; a CPU past the set's size panics, never writes out of
    // bounds.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed, and outlives the call.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) }.into())?;
    Ok(())
}

/// How a forked child ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

/// Runs `f` in a forked child and reports how the child ended; `f`'s return value is its exit
/// status. For accesses that are expected to raise a signal, and for sharing across `fork`.
pub fn in_child(f: impl FnOnce() -> i32) -> io::Result<ChildEnd> {
    fork_child(f)?.wait()
}

/// A forked child that runs while its parent goes on: [`Forked::wait`] reports how it ended,
/// and dropping it unwaited kills and reaps it, so that a failing test leaves nothing behind.
pub struct Forked {
    pid: i32,
    /// How it ended, once reaped.
    end: Option<ChildEnd>,
}

/// How a child ended, from its `waitpid` status.
fn child_end(status: i32) -> ChildEnd {
    if libc::WIFSIGNALED(status) {
        ChildEnd::Signaled(libc::WTERMSIG(status))
    } else {
        ChildEnd::Exited(libc::WEXITSTATUS(status))
    }
}

/// Starts `f` in a forked child and returns at once; `f`'s return value is the child's exit
/// status.
pub fn fork_child(f: impl FnOnce() -> i32) -> io::Result<Forked> {
    // SAFETY: The test process is single-threaded when it forks; the child only runs `f`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = f();
        // SAFETY: _exit ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    Ok(Forked { pid, end: None })
}

impl Forked {
    /// The child's process ID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the child to end and reports how it did.
    pub fn wait(mut self) -> io::Result<ChildEnd> {
        self.reap(0)?
            .ok_or_else(|| io::Error::other("waitpid returned no child"))
    }

    /// How the child ended, or `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ChildEnd>> {
        self.reap(libc::WNOHANG)
    }

    /// `waitpid` with `options`, remembering the end once there is one.
    fn reap(&mut self, options: i32) -> io::Result<Option<ChildEnd>> {
        if self.end.is_none() {
            let mut status = 0;
            // SAFETY: `pid` is our child, not reaped yet, and `status` a valid out-pointer.
            match unsafe { libc::waitpid(self.pid, &mut status, options) } {
                0 => return Ok(None),
                pid if pid == self.pid => self.end = Some(child_end(status)),
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Ok(self.end.clone())
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.end.is_none() {
            // SAFETY: `pid` is our child, not reaped yet: it cannot be another process.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.reap(0);
        }
    }
}

/// A pipe that processes forked after it is made use to wait for one another, one byte a step.
pub struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
}

impl Pipe {
    /// A new pipe, closed on exec.
    pub fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
        // SAFETY: pipe2 returned two new descriptors that nothing else owns.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self { rd, wr })
    }

    /// Writes the byte `b`; false if it could not.
    pub fn send(&self, b: u8) -> bool {
        // SAFETY: Writes one byte from a live local to our descriptor.
        unsafe { libc::write(self.wr.as_raw_fd(), (&b as *const u8).cast(), 1) == 1 }
    }

    /// Waits for the next byte; `None` at end of file or on an error.
    pub fn recv(&self) -> Option<u8> {
        let mut b = 0u8;
        loop {
            // SAFETY: Reads at most one byte into a live local from our descriptor.
            let n = unsafe { libc::read(self.rd.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
            if n == 1 {
                return Some(b);
            }
            if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return None;
            }
        }
    }
}

/// Counters in a page of shared anonymous memory, made before `fork` so that parent and
/// children see the same ones: how a child reports what it did, even when it is killed.
pub struct SharedCounters {
    map: mmscope::Mapping,
}

impl SharedCounters {
    /// A page of counters, all 0, populated (charged to the caller's memory cgroup) now.
    pub fn new() -> io::Result<Self> {
        let map = mmscope::Mapping::new(
            page_size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )?;
        map.write(0, 0);
        Ok(Self { map })
    }

    /// Counter `i`.
    pub fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < page_size() / 8, "counter {i} is past the page");
        // SAFETY: The mapping is a page-aligned page that lives as long as `self`, so counter
        // `i` is inside it and aligned; it is only ever accessed atomically.
        unsafe { &*self.map.addr().cast::<AtomicU64>().add(i) }
    }
}

/// One line of `/proc/<pid>/maps`.
pub struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: &'a str,
    pub offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    pub name: &'a str,
}

/// Parses a line of `/proc/<pid>/maps`.
pub fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let mut rest = line;
    let mut fields = [""; 5];
    for f in fields.iter_mut() {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        *f = &rest[..end];
        rest = &rest[end..];
    }
    let (start, end) = fields[0].split_once('-')?;
    let (major, minor) = fields[3].split_once(':')?;
    Some(MapsLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms: fields[1],
        offset: u64::from_str_radix(fields[2], 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: fields[4].parse().ok()?,
        name: rest.trim(),
    })
}

/// The `Rss` that `/proc/self/smaps` reports for the VMA starting at `addr`, in kB.
pub fn smaps_rss_kb(addr: usize) -> io::Result<u64> {
    smaps_kb(addr, "Rss")
}

/// The field `key` (`Rss`, `Anonymous`, ...) that `/proc/self/smaps` reports for the VMA
/// starting at `addr`, in kB.
pub fn smaps_kb(addr: usize, key: &str) -> io::Result<u64> {
    let smaps = fs::read_to_string("/proc/self/smaps")?;
    let head = format!("{addr:x}-");
    let mut in_vma = false;
    for line in smaps.lines() {
        if parse_maps_line(line).is_some() {
            in_vma = line.starts_with(&head);
        } else if let Some(rest) = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|_| in_vma)
        {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return kb
                .parse()
                .map_err(|_| io::Error::other(format!("bad {key} line {line:?}")));
        }
    }
    Err(io::Error::other(format!(
        "no VMA at {addr:#x} in /proc/self/smaps"
    )))
}

/// The calling thread's minor page faults so far (`getrusage(RUSAGE_THREAD)`), with the
/// program's own code mapped in at the first call, so a count around a loop is the loop's data
/// faults only.
pub use mmscope::lazy::minor_faults;

/// The `key: value` lines of `/proc/self/fdinfo/<fd>`.
pub fn fdinfo(fd: i32) -> io::Result<Vec<(String, String)>> {
    let text = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// xorshift64*: a small pseudo-random generator with a fixed seed, so that a failing run of
/// the fuzzer or the stress test can be replayed exactly.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A new memory cgroup under `/sys/fs/cgroup` named `prefix-PID`, with the memory controller
/// enabled for it; skips the test where cgroup2 or its memory controller is missing. The
/// caller removes it (after moving its processes out).
pub fn new_memcg(prefix: &str) -> Result<std::path::PathBuf, crate::harness::Outcome> {
    use crate::harness::{Context, Outcome};
    let root = std::path::Path::new("/sys/fs/cgroup");
    let Ok(controllers) = fs::read_to_string(root.join("cgroup.controllers")) else {
        return Err(Outcome::Skip(
            "cgroup2 is not mounted at /sys/fs/cgroup".into(),
        ));
    };
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err(Outcome::Skip(
            "the memory controller is not available (CONFIG_MEMCG=n)".into(),
        ));
    }
    fs::write(root.join("cgroup.subtree_control"), "+memory").context("enable +memory")?;
    let cg = root.join(format!("{prefix}-{}", std::process::id()));
    fs::create_dir(&cg).context("create a cgroup")?;
    Ok(cg)
}

/// The kind the naming rules of `/proc/<pid>/maps` give a line's name.
pub(crate) fn kind_of_name(name: &str) -> u32 {
    match name {
        "" => kind::ANON,
        "[heap]" => kind::HEAP,
        "[stack]" => kind::STACK,
        "[vdso]" => kind::VDSO,
        "[vvar]" | "[vvar_vclock]" => kind::VVAR,
        _ if name.starts_with("[anon:") => kind::ANON,
        _ if name.starts_with('[') => kind::SPECIAL,
        _ if name == mmscope::DEVICE_PATH => kind::MMSCOPE,
        _ if ["/dev/zero", "/memfd:", "/SYSV"]
            .iter()
            .any(|p| name.starts_with(p)) =>
        {
            kind::SHMEM
        }
        _ => kind::FILE,
    }
}

/// Field `n` (1-based, as proc(5) numbers them) of `/proc/<pid>/stat` text.
pub(crate) fn stat_field(stat: &str, n: usize) -> Option<u64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(n - 3)?.parse().ok()
}

/// A `Key:   N kB` value of `/proc/<pid>/status` text, in kB.
pub(crate) fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Polls `done` every 10 ms until it holds (true) or `deadline` passes (false): for tests that
/// wait on another process's progress, however slow the guest is.
pub fn wait_until(deadline: std::time::Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}
