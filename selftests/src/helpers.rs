// SPDX-License-Identifier: GPL-2.0

//! Programs the tests run in processes of their own (`mmscope-selftests --helper NAME`): each
//! does something known and prints what it did as JSON, so that the tests can hold the
//! `mmscope` command's reports against it.

use std::io::{Read, Write};

/// Runs the helper `name`; returns the exit status.
pub fn run(name: &str) -> i32 {
    match name {
        "hold" => hold(),
        "variety" => variety(),
        "calls" => calls(),
        "threads" => threads(),
        "changes" => changes(),
        "costs" => costs(),
        "signals" => signals(),
        "no-ptrace" => no_ptrace(),
        "ticker" => ticker(),
        "pgrp" => pgrp(),
        "clone-process" => clone_process(),
        "traced" => traced(),
        "brk-refused" => brk_refused(),
        "reuse-tid" => reuse_tid(),
        "attachee" => attachee(),
        "forks" => forks(),
        "mlock-between" => mlock_between(),
        "undumpable" => undumpable(),
        _ => {
            eprintln!(
                "mmscope-selftests: no helper {name:?} (hold, variety, calls, threads, changes, \
                 costs, signals, no-ptrace, ticker, pgrp, clone-process, traced, brk-refused, \
                 reuse-tid, attachee, forks, mlock-between, undumpable)"
            );
            2
        }
    }
}

/// The current program break, as `brk(0)` reports it.
fn brk0() -> i64 {
    // SAFETY: brk(0) only queries the break.
    unsafe { libc::syscall(libc::SYS_brk, 0) }
}

/// Makes a heap and a mapping, prints `{"pid", "brk", "mmap"}` and waits for stdin to close.
fn hold() -> i32 {
    let heap: Vec<u8> = vec![1; 1000];
    let page = crate::sys::page_size();
    // SAFETY: A new anonymous mapping that this process keeps until it exits.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            3 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    println!(
        "{{\"pid\":{},\"brk\":{},\"mmap\":{}}}",
        std::process::id(),
        brk0(),
        map as u64
    );
    let _ = std::io::stdout().flush();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(heap);
    0
}

/// Makes one mapping of each kind the module tells apart, with flags beyond the permissions,
/// prints `{"pid", "brk", "device"}` (`device`: whether `/dev/mmscope` is mapped too) and
/// waits for stdin to close: shared anonymous memory, a memfd, System V shared memory, a file
/// that stays linked and one that is deleted, the device, locked, `MADV_DONTDUMP` and
/// `MADV_DONTFORK` memory, and a `PROT_NONE` reservation. Each is written where it may be.
fn variety() -> i32 {
    let page = crate::sys::page_size();
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let heap: Vec<u8> = vec![1; 1000];
    let map = |len: usize, prot: i32, flags: i32, fd: i32| -> *mut u8 {
        // SAFETY: A new mapping this process keeps until it exits; written below only where
        // it is writable, within its length.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        if prot & libc::PROT_WRITE != 0 {
            // SAFETY: As above: the first byte of a writable mapping of at least a page.
            unsafe { p.cast::<u8>().write_volatile(1) };
        }
        p.cast()
    };
    let file = |path: &str, unlink: bool| -> i32 {
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
        else {
            return -1;
        };
        if f.set_len(2 * page as u64).is_err() || (unlink && std::fs::remove_file(path).is_err()) {
            return -1;
        }
        std::os::fd::IntoRawFd::into_raw_fd(f)
    };
    let mut ok = !map(3 * page, rw, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1).is_null();
    // SAFETY: memfd_create with a NUL-terminated name.
    let memfd = unsafe { libc::memfd_create(c"mmscope-variety".as_ptr(), 0) };
    // SAFETY: ftruncate of the descriptor just made.
    ok &= memfd >= 0 && unsafe { libc::ftruncate(memfd, 2 * page as libc::off_t) } == 0;
    ok &= !map(2 * page, rw, libc::MAP_SHARED, memfd).is_null();
    for (path, unlink) in [
        ("/tmp/mmscope-variety-kept", false),
        ("/tmp/mmscope-variety-gone", true),
    ] {
        let fd = file(path, unlink);
        ok &= fd >= 0 && !map(2 * page, rw, libc::MAP_SHARED, fd).is_null();
    }
    // SAFETY: A new private System V segment, attached where the kernel chooses.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 2 * page, libc::IPC_CREAT | 0o600);
        ok &= id >= 0 && libc::shmat(id, std::ptr::null(), 0) as isize != -1;
        // Removed now, gone when this process detaches at its exit.
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(mmscope::DEVICE_PATH)
        .map(std::os::fd::IntoRawFd::into_raw_fd)
        .is_ok_and(|fd| !map(2 * page, rw, libc::MAP_SHARED, fd).is_null());
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    for advice in [None, Some(libc::MADV_DONTDUMP), Some(libc::MADV_DONTFORK)] {
        let p = map(4 * page, rw, anon, -1);
        ok &= !p.is_null();
        // SAFETY: Advice on, or a lock of, the middle pages of the mapping just made.
        ok &= unsafe {
            match advice {
                Some(a) => libc::madvise(p.add(page).cast(), 2 * page, a),
                None => libc::mlock(p.add(page).cast(), page),
            }
        } == 0;
    }
    ok &= !map(16 * page, libc::PROT_NONE, anon | libc::MAP_NORESERVE, -1).is_null();
    if !ok {
        eprintln!(
            "variety: a mapping failed: {}",
            std::io::Error::last_os_error()
        );
        return 1;
    }
    println!(
        "{{\"pid\":{},\"brk\":{},\"device\":{device}}}",
        std::process::id(),
        brk0()
    );
    let _ = std::io::stdout().flush();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(heap);
    0
}

/// One system call of [`calls`]: its name, arguments and result (`-errno` on failure).
fn record(out: &mut String, call: &str, args: &[u64], ret: i64) {
    use std::fmt::Write;
    let ret = if ret == -1 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        ret
    };
    let _ = writeln!(
        out,
        "{{\"call\":\"{call}\",\"args\":{args:?},\"ret\":{ret}}}"
    );
}

/// Makes known memory system calls, directly, and prints one JSON line per call at the end
/// (nothing allocates in between: the output buffer is made first).
fn calls() -> i32 {
    let mut out = String::with_capacity(1 << 16);
    let page = crate::sys::page_size() as u64;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let sys = |nr: libc::c_long, a: &[u64]| -> i64 {
        let arg = |i: usize| a.get(i).copied().unwrap_or(0);
        // SAFETY: Memory system calls on this process's own address space, on ranges this
        // function made for the purpose; none touches memory Rust knows about.
        unsafe { libc::syscall(nr, arg(0), arg(1), arg(2), arg(3), arg(4), arg(5)) }
    };
    let b0 = sys(libc::SYS_brk, &[0]);
    record(&mut out, "brk", &[0], b0);
    let grow = [b0 as u64 + 65536 + 123];
    record(&mut out, "brk", &grow, sys(libc::SYS_brk, &grow));

    let mmap = [0, 3 * page, rw, anon, u64::MAX, 0];
    let a = sys(libc::SYS_mmap, &mmap);
    record(&mut out, "mmap", &mmap, a);
    let a = a as u64;
    // SAFETY: The first page of the mapping just made is writable.
    unsafe { (a as *mut u8).write_volatile(1) };
    let prot = [a + page, page, libc::PROT_NONE as u64];
    record(&mut out, "mprotect", &prot, sys(libc::SYS_mprotect, &prot));
    let advise = [a, page, libc::MADV_DONTNEED as u64];
    record(
        &mut out,
        "madvise",
        &advise,
        sys(libc::SYS_madvise, &advise),
    );

    let mmap2 = [0, 2 * page, rw, anon, u64::MAX, 0];
    let b = sys(libc::SYS_mmap, &mmap2);
    record(&mut out, "mmap", &mmap2, b);
    let remap = [b as u64, 2 * page, 8 * page, libc::MREMAP_MAYMOVE as u64, 0];
    let c = sys(libc::SYS_mremap, &remap);
    record(&mut out, "mremap", &remap, c);
    let unmap = [c as u64, 8 * page];
    record(&mut out, "munmap", &unmap, sys(libc::SYS_munmap, &unmap));
    let bad = [a + 1, page];
    record(&mut out, "munmap", &bad, sys(libc::SYS_munmap, &bad));

    let shmget = [
        libc::IPC_PRIVATE as u64,
        2 * page,
        (libc::IPC_CREAT | 0o600) as u64,
    ];
    let id = sys(libc::SYS_shmget, &shmget);
    if id >= 0 {
        let at = [id as u64, 0, 0];
        let s = sys(libc::SYS_shmat, &at);
        record(&mut out, "shmat", &at, s);
        let dt = [s as u64];
        record(&mut out, "shmdt", &dt, sys(libc::SYS_shmdt, &dt));
        sys(libc::SYS_shmctl, &[id as u64, libc::IPC_RMID as u64, 0]);
    }
    let shrink = [b0 as u64];
    record(&mut out, "brk", &shrink, sys(libc::SYS_brk, &shrink));
    let unmap_a = [a, 3 * page];
    record(
        &mut out,
        "munmap",
        &unmap_a,
        sys(libc::SYS_munmap, &unmap_a),
    );
    print!("{out}");
    0
}

/// Makes one change of each kind a trace's diff must show, one call each, and prints them as
/// [`calls`] does (after the two calls that make the first mapping): the permissions of a
/// whole mapping (nothing but its flags changes), a file
/// mapping replaced in place by the same file at another offset (only the offset changes),
/// and by another file (only the file, its inode and name). The files are
/// `/tmp/mmscope-changes-a` and `-b`, two pages each.
fn changes() -> i32 {
    let mut out = String::with_capacity(1 << 12);
    let page = crate::sys::page_size() as u64;
    let sys = |nr: libc::c_long, a: &[u64]| -> i64 {
        let arg = |i: usize| a.get(i).copied().unwrap_or(0);
        // SAFETY: Memory system calls on this process's own address space, on ranges this
        // function made for the purpose; none touches memory Rust knows about.
        unsafe { libc::syscall(nr, arg(0), arg(1), arg(2), arg(3), arg(4), arg(5)) }
    };
    let mut fds = Vec::new();
    for path in ["/tmp/mmscope-changes-a", "/tmp/mmscope-changes-b"] {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .and_then(|f| f.set_len(2 * page).map(|()| f));
        match file {
            Ok(f) => fds.push(std::os::fd::IntoRawFd::into_raw_fd(f) as u64),
            Err(e) => {
                eprintln!("changes: {path}: {e}");
                return 1;
            }
        }
    }
    let (rw, ro) = (
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        libc::PROT_READ as u64,
    );
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    // Between two PROT_NONE pages, so that the mapping merges with no neighbour before or
    // after the mprotect.
    let reserve = [0, 5 * page, libc::PROT_NONE as u64, anon, u64::MAX, 0];
    let r = sys(libc::SYS_mmap, &reserve);
    record(&mut out, "mmap", &reserve, r);
    let mmap = [
        r as u64 + page,
        3 * page,
        rw,
        anon | libc::MAP_FIXED as u64,
        u64::MAX,
        0,
    ];
    let a = sys(libc::SYS_mmap, &mmap);
    record(&mut out, "mmap", &mmap, a);
    let prot = [a as u64, 3 * page, ro];
    record(&mut out, "mprotect", &prot, sys(libc::SYS_mprotect, &prot));

    let private = libc::MAP_PRIVATE as u64;
    let fixed = private | libc::MAP_FIXED as u64;
    let first = [0, page, ro, private, fds[0], 0];
    let b = sys(libc::SYS_mmap, &first);
    record(&mut out, "mmap", &first, b);
    let offset = [b as u64, page, ro, fixed, fds[0], page];
    record(&mut out, "mmap", &offset, sys(libc::SYS_mmap, &offset));
    let other = [b as u64, page, ro, fixed, fds[1], page];
    record(&mut out, "mmap", &other, sys(libc::SYS_mmap, &other));
    print!("{out}");
    0
}

/// System calls with the cost of each timed from inside: [`COST_GETPPID`] `getppid` calls
/// (not a memory call, which a tracer of memory calls should let pass) and [`COST_PAIRS`]
/// `mmap`/`munmap` pairs of one page; prints `{"getppid_ns", "pair_ns"}`, per call and per
/// pair. What a tracer adds shows in these numbers, without its start-up.
fn costs() -> i32 {
    let page = crate::sys::page_size();
    let t = std::time::Instant::now();
    for _ in 0..COST_GETPPID {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    let getppid_ns = t.elapsed().as_nanos() as f64 / COST_GETPPID as f64;
    let t = std::time::Instant::now();
    for _ in 0..COST_PAIRS {
        // SAFETY: A new anonymous page, unmapped at once; nothing refers to it.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return 1;
            }
            libc::munmap(p, page);
        }
    }
    let pair_ns = t.elapsed().as_nanos() as f64 / COST_PAIRS as f64;
    // First touches: a fault each, and a new page.
    let len = COST_TOUCHES * page;
    // SAFETY: A new anonymous mapping, written below and unmapped once.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return 1;
    }
    let t = std::time::Instant::now();
    for i in 0..COST_TOUCHES {
        // SAFETY: Page `i` of the writable mapping above.
        unsafe { p.cast::<u8>().add(i * page).write_volatile(1) };
    }
    let touch_ns = t.elapsed().as_nanos() as f64 / COST_TOUCHES as f64;
    // SAFETY: The mapping above, which nothing refers to any more.
    unsafe { libc::munmap(p, len) };
    println!(
        "{{\"getppid_ns\":{getppid_ns:.1},\"pair_ns\":{pair_ns:.1},\"touch_ns\":{touch_ns:.1}}}"
    );
    0
}

/// `getppid` calls [`costs`] makes.
pub const COST_GETPPID: usize = 5000;
/// `mmap`/`munmap` pairs [`costs`] makes.
pub const COST_PAIRS: usize = 200;
/// Pages [`costs`] touches for the first time.
pub const COST_TOUCHES: usize = 2048;

/// Starts two threads that each map, touch and unmap 1 MiB; prints
/// `{"tid", "mmap"}` for each.
fn threads() -> i32 {
    let handles: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                let len = 1 << 20;
                // SAFETY: A new anonymous mapping, unmapped below.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    // SAFETY: The mapping is writable; then it is unmapped once.
                    unsafe {
                        p.cast::<u8>().write_volatile(1);
                        libc::munmap(p, len);
                    }
                }
                (tid, p as u64)
            })
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok((tid, addr)) => println!("{{\"tid\":{tid},\"mmap\":{addr}}}"),
            Err(_) => return 1,
        }
    }
    0
}

/// The helper's own arguments, after `--helper NAME`.
fn helper_args() -> Vec<String> {
    std::env::args().skip(3).collect()
}

/// Signals, as `signals MODE` says:
/// - `rt`: queues `SIGRTMIN+1` with a value to itself and arms a POSIX timer that sends
///   `SIGRTMIN+2`; prints one line per signal its handler received, then exits 0;
/// - `die-rt`: raises `SIGRTMIN+5`, which kills it;
/// - `abort`: allows a core file (in `/tmp`) and aborts;
fn signals() -> i32 {
    let mode = helper_args().first().cloned().unwrap_or_default();
    match mode.as_str() {
        "rt" => signals_rt(),
        "die-rt" => {
            // SAFETY: raise has no memory-safety requirements.
            unsafe { libc::raise(libc::SIGRTMIN() + 5) };
            0
        }
        "abort" => {
            let core = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: setrlimit reads a live struct; abort does not return.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &core);
                let _ = std::env::set_current_dir("/tmp");
                libc::abort()
            }
        }
        _ => {
            eprintln!("mmscope-selftests: signals: no mode {mode:?}");
            2
        }
    }
}

/// The real-time signals the handler saw, one bit each (`SIGRTMIN+1`, `SIGRTMIN+2`), and the
/// value `sigqueue` sent.
static RT_SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// The value the `sigqueue` signal carried.
static RT_VALUE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn rt_handler(sig: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    use std::sync::atomic::Ordering::Relaxed;
    let n = sig - libc::SIGRTMIN();
    RT_SEEN.fetch_or(1 << n, Relaxed);
    if n == 1 && !info.is_null() {
        // SAFETY: The kernel passes a valid siginfo to an SA_SIGINFO handler.
        RT_VALUE.store(
            unsafe { (*info).si_value().sival_ptr as usize as i32 },
            Relaxed,
        );
    }
}

/// `signals rt`: see [`signals`].
fn signals_rt() -> i32 {
    use std::sync::atomic::Ordering::Relaxed;
    let (rt1, rt2) = (libc::SIGRTMIN() + 1, libc::SIGRTMIN() + 2);
    // SAFETY: Installs an async-signal-safe handler (atomics only); sigqueue and the timer
    // calls take live structs.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = rt_handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(rt1, &act, std::ptr::null_mut());
        libc::sigaction(rt2, &act, std::ptr::null_mut());
        let value = libc::sigval {
            sival_ptr: 42usize as *mut libc::c_void,
        };
        if libc::sigqueue(libc::getpid(), rt1, value) != 0 {
            return 3;
        }
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = rt2;
        let mut timer: libc::timer_t = std::mem::zeroed();
        if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) != 0 {
            return 4;
        }
        let mut spec: libc::itimerspec = std::mem::zeroed();
        spec.it_value.tv_nsec = 10_000_000;
        libc::timer_settime(timer, 0, &spec, std::ptr::null_mut());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while RT_SEEN.load(Relaxed) != 0b110 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    println!(
        "seen {:#b} value {}",
        RT_SEEN.load(Relaxed),
        RT_VALUE.load(Relaxed)
    );
    0
}

/// `no-ptrace CMD ARGS...`: runs CMD under a seccomp filter that fails every `ptrace` call
/// with `EPERM`, as a sandbox that forbids tracing would.
fn no_ptrace() -> i32 {
    use std::os::unix::process::CommandExt;
    let args = helper_args();
    let Some(cmd) = args.first() else {
        return 2;
    };
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut filter = [
        stmt(load, 4), // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 3),
        stmt(load, 0), // seccomp_data.nr
        jeq(libc::SYS_ptrace as u32, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl reads the live filter program; the filter applies to this process and
    // what it execs.
    let ok = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) == 0
    };
    if !ok {
        eprintln!("no-ptrace: seccomp: {}", std::io::Error::last_os_error());
        return 4;
    }
    let err = std::process::Command::new(cmd).args(&args[1..]).exec();
    eprintln!("no-ptrace: {cmd}: {err}");
    127
}

/// `ticker FILE`: counts, writing `PID COUNT` over the start of FILE every 5 ms, and maps
/// and unmaps a page every 20 counts, until a signal ends it.
fn ticker() -> i32 {
    count_forever(5, |count| {
        if count % 20 == 0 {
            // SAFETY: A new anonymous mapping, unmapped at once.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p != libc::MAP_FAILED {
                    libc::munmap(p, 4096);
                }
            }
        }
    })
}

/// The loop of [`ticker`] and [`attachee`]: until a signal ends it, writes `PID COUNT` over the
/// start of the file the helper's first argument names, calls `each` with the count, and
/// sleeps `period_ms`. Returns 2 without the argument, 3 if the file cannot be made.
fn count_forever(period_ms: u64, mut each: impl FnMut(u64)) -> i32 {
    use std::os::unix::fs::FileExt;
    let Some(path) = helper_args().first().cloned() else {
        return 2;
    };
    let Ok(file) = std::fs::File::create(&path) else {
        return 3;
    };
    let pid = std::process::id();
    for count in 1u64.. {
        let _ = file.write_at(format!("{pid} {count:>12}\n").as_bytes(), 0);
        each(count);
        std::thread::sleep(std::time::Duration::from_millis(period_ms));
    }
    0
}

/// `pgrp CMD ARGS...`: runs CMD in a process group of its own (`setpgid(0, 0)`), as a shell
/// runs a job.
fn pgrp() -> i32 {
    use std::os::unix::process::CommandExt;
    let args = helper_args();
    let Some(cmd) = args.first() else {
        return 2;
    };
    // SAFETY: setpgid has no memory-safety requirements.
    unsafe { libc::setpgid(0, 0) };
    let err = std::process::Command::new(cmd).args(&args[1..]).exec();
    eprintln!("pgrp: {cmd}: {err}");
    127
}

/// The size the `clone-process` child maps.
const CLONE_CHILD_MAP: usize = 16 << 20;

/// The child of [`clone_process`]: maps, touches and unmaps [`CLONE_CHILD_MAP`] bytes, then
/// exits, with raw system calls only (it is a copy of the process, not a thread).
extern "C" fn clone_child(_: *mut libc::c_void) -> libc::c_int {
    // SAFETY: A new anonymous mapping, touched within its length and unmapped; then exit.
    unsafe {
        let p = libc::syscall(
            libc::SYS_mmap,
            0,
            CLONE_CHILD_MAP,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p > 0 {
            (p as *mut u8).write_volatile(1);
            libc::syscall(libc::SYS_munmap, p, CLONE_CHILD_MAP);
        }
        libc::syscall(libc::SYS_exit, 0);
    }
    0
}

/// `clone-process`: starts a process with `clone()` (no `CLONE_THREAD`, `CLONE_VM` or
/// `SIGCHLD`: exit signal `SIGUSR2`, ignored here), which maps 16 MiB and exits; waits for
/// it, then maps and unmaps a page itself; prints `{"child", "status"}`.
fn clone_process() -> i32 {
    let stack_len = 256 << 10;
    // SAFETY: SIGUSR2 ignored, so that the child's exit does not kill this process; the
    // child runs on its own copy of `stack` (no CLONE_VM), within its length, and only
    // makes raw system calls; waitpid writes a live int.
    unsafe {
        libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        let mut stack = vec![0u8; stack_len];
        let top = stack.as_mut_ptr().add(stack_len).cast::<libc::c_void>();
        let child = libc::clone(clone_child, top, libc::SIGUSR2, std::ptr::null_mut());
        if child < 0 {
            eprintln!("clone: {}", std::io::Error::last_os_error());
            return 3;
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, libc::__WALL);
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        libc::munmap(p, 4096);
        println!("{{\"child\":{child},\"status\":{status}}}");
    }
    0
}

/// `traced CMD ARGS...`: runs CMD under this process as its tracer, following what it forks
/// (`PTRACE_O_TRACEFORK`, as `strace -f` does), with every stop continued and every signal
/// delivered; exits with CMD's status. A tracer CMD starts is then refused: its child is
/// traced already.
fn traced() -> i32 {
    let args = helper_args();
    let Ok(argv) = args
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return 2;
    };
    if argv.is_empty() {
        return 2;
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: The child only calls ptrace, raise, execvp and _exit; the argument vector is
    // NULL-terminated and outlives the call; waitpid writes a live int.
    unsafe {
        let cmd = libc::fork();
        if cmd == 0 {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
            libc::execvp(ptrs[0], ptrs.as_ptr());
            libc::_exit(127);
        }
        let mut status = 0;
        libc::waitpid(cmd, &mut status, 0);
        let options = libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK;
        libc::ptrace(libc::PTRACE_SETOPTIONS, cmd, 0, options);
        libc::ptrace(libc::PTRACE_CONT, cmd, 0, 0);
        loop {
            let pid = libc::waitpid(-1, &mut status, libc::__WALL);
            if pid < 0 {
                return 3;
            }
            if libc::WIFSTOPPED(status) {
                let sig = libc::WSTOPSIG(status);
                let deliver = if (status >> 16) != 0 || sig == libc::SIGTRAP || sig == libc::SIGSTOP
                {
                    0
                } else {
                    sig
                };
                libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver);
            } else if pid == cmd {
                return if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
            }
        }
    }
}

/// `brk-refused`: asks `brk` for a break 64 TiB above the current one, which the kernel
/// refuses by returning the break unchanged; prints `{"asked", "got"}`.
fn brk_refused() -> i32 {
    let asked = brk0() as u64 + (1 << 46);
    // SAFETY: A brk the kernel refuses leaves the break where it is.
    let got = unsafe { libc::syscall(libc::SYS_brk, asked) };
    println!("{{\"asked\":{asked},\"got\":{got}}}");
    0
}

/// `reuse-tid`: starts a thread that maps and unmaps a page and exits, then starts
/// processes with `clone()` (as `clone-process` does) until one gets the thread's id or 3000
/// have been tried (the test lowers `pid_max` so that ids come round soon); prints
/// `{"thread", "reused"}`.
fn reuse_tid() -> i32 {
    let thread = std::thread::spawn(|| {
        // SAFETY: gettid has no preconditions; a new mapping, unmapped at once.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            libc::munmap(p, 4096);
            libc::gettid()
        }
    })
    .join()
    .unwrap_or(0);
    let stack_len = 256 << 10;
    let mut stack = vec![0u8; stack_len];
    let mut reused = false;
    // SAFETY: As in clone_process: SIGUSR2 ignored, the child runs on its own copy of the
    // stack and makes raw system calls only; waitpid writes a live int.
    unsafe {
        libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        let top = stack.as_mut_ptr().add(stack_len).cast::<libc::c_void>();
        for _ in 0..3000 {
            let child = libc::clone(clone_child, top, libc::SIGUSR2, std::ptr::null_mut());
            if child < 0 {
                break;
            }
            let mut status = 0;
            libc::waitpid(child, &mut status, libc::__WALL);
            if child == thread {
                reused = true;
                break;
            }
        }
    }
    println!("{{\"thread\":{thread},\"reused\":{reused}}}");
    0
}

/// `attachee FILE [THREADS]`: runs until killed, every 20 ms writing "PID COUNT" to FILE,
/// mapping and unmapping 7 shared anonymous pages `PROT_NONE` (a size nothing else maps, in a
/// VMA never merged with a neighbour), and moving the break up 64 KiB and back; with
/// `THREADS` more threads, asleep.
fn attachee() -> i32 {
    let threads: usize = helper_args()
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for _ in 0..threads {
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        });
    }
    count_forever(20, |_| {
        // SAFETY: A new anonymous mapping, unmapped at once; the break moved up and back to
        // where it was, over memory nothing uses.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                7 * 4096,
                libc::PROT_NONE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p != libc::MAP_FAILED {
                libc::munmap(p, 7 * 4096);
            }
            let b = libc::syscall(libc::SYS_brk, 0);
            libc::syscall(libc::SYS_brk, b + 65536);
            libc::syscall(libc::SYS_brk, b);
        }
    })
}

/// `forks`: reads its own `/proc/self/maps` into a buffer it allocated before and forks at
/// once; the child maps 3 MiB, moves its break by 64 KiB and execs `forks exec`; then it
/// starts `forks exec` with `posix_spawn` (`CLONE_VM | CLONE_VFORK`), and a child with
/// `CLONE_VFORK` that exits 5. Waits for each and prints `{"pid", "maps", "child", "child_mmap",
/// "child_brk", "child_status", "spawned", "spawn_status", "vforked", "vfork_status"}`, the
/// statuses as `waitpid` gives them. `forks exec` prints `{"pid", "start_brk", "seccomp"}`
/// (from its `/proc/self/stat` and `status`) and exits 7.
fn forks() -> i32 {
    if helper_args().first().map(String::as_str) == Some("exec") {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let seccomp = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map_or("?", str::trim)
            .to_string();
        println!(
            "{{\"pid\":{},\"start_brk\":{},\"seccomp\":\"{seccomp}\"}}",
            std::process::id(),
            crate::sys::stat_field(&stat, 47).unwrap_or(0)
        );
        return 7;
    }
    let Ok(exe) = std::env::current_exe() else {
        return 2;
    };
    let Ok(exe) = std::ffi::CString::new(exe.as_os_str().as_encoded_bytes()) else {
        return 2;
    };
    let argv: Vec<std::ffi::CString> = ["mmscope-selftests", "--helper", "forks", "exec"]
        .iter()
        .filter_map(|a| std::ffi::CString::new(*a).ok())
        .collect();
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    // Output of the child, through a pipe: its mapping and break (raw numbers).
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into a live array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return 2;
    }
    // SAFETY: open and read into the buffer allocated above, within its length; the child
    // only makes raw system calls (mmap, brk, write, execv, _exit), async-signal-safe after
    // fork; waitpid writes a live int.
    let (child, child_status) = unsafe {
        let fd = libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY);
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().add(len).cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        let child = libc::fork();
        if child == 0 {
            let p = libc::mmap(
                std::ptr::null_mut(),
                3 << 20,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            let old = libc::syscall(libc::SYS_brk, 0);
            let new = libc::syscall(libc::SYS_brk, old + 65536);
            let words = [p as u64, new as u64];
            libc::write(fds[1], words.as_ptr().cast(), 16);
            libc::execv(exe.as_ptr(), argp.as_ptr());
            libc::_exit(127);
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        (child, status)
    };
    let mut words = [0u64; 2];
    // SAFETY: reads 16 bytes into a live array; the child wrote them before it execed.
    unsafe {
        libc::close(fds[1]);
        libc::read(fds[0], words.as_mut_ptr().cast(), 16);
        libc::close(fds[0]);
    }
    let mut spawned = 0;
    let mut spawn_status = 0;
    // SAFETY: posix_spawn reads the live argv (null-terminated) and the environment; the
    // vfork child only calls _exit; waitpid writes live ints.
    let (vforked, vfork_status) = unsafe {
        extern "C" {
            static environ: *const *const libc::c_char;
        }
        libc::posix_spawn(
            &mut spawned,
            exe.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argp.as_ptr().cast(),
            environ.cast(),
        );
        libc::waitpid(spawned, &mut spawn_status, 0);
        // vfork()'s way of waiting (CLONE_VFORK) without sharing the memory (no CLONE_VM),
        // so that the child may return from the call.
        let v = libc::syscall(
            libc::SYS_clone,
            libc::CLONE_VFORK | libc::SIGCHLD,
            0,
            0,
            0,
            0,
        ) as i32;
        if v == 0 {
            libc::_exit(5);
        }
        let mut status = 0;
        libc::waitpid(v, &mut status, 0);
        (v, status)
    };
    let maps: Vec<String> = String::from_utf8_lossy(&buf[..len])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|r| format!("\"{r}\""))
        .collect();
    println!(
        "{{\"pid\":{},\"maps\":[{}],\"child\":{child},\"child_mmap\":{},\"child_brk\":{},\
         \"child_status\":{child_status},\"spawned\":{spawned},\"spawn_status\":{spawn_status},\
         \"vforked\":{vforked},\"vfork_status\":{vfork_status}}}",
        std::process::id(),
        maps.join(","),
        words[0],
        words[1]
    );
    0
}

/// `mlock-between`: maps a page A, locks it with `mlock` (a call `mmscope trace` does not stop
/// at, which changes A's flags), then maps 2 pages B `PROT_READ`; prints `{"a", "b"}`.
fn mlock_between() -> i32 {
    let page = crate::sys::page_size();
    // SAFETY: New anonymous mappings this process keeps until it exits; mlock of the first.
    let (a, b) = unsafe {
        let a = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if a == libc::MAP_FAILED || libc::mlock(a, page) != 0 {
            eprintln!("mlock-between: {}", std::io::Error::last_os_error());
            return 3;
        }
        let b = libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        (a as u64, b as u64)
    };
    println!("{{\"a\":{a},\"b\":{b}}}");
    0
}

/// `undumpable`: forks a child that makes itself non-dumpable (`PR_SET_DUMPABLE` 0, as
/// ssh-agent does), maps and unmaps 5 pages and exits 0; then maps and unmaps 6 pages itself.
/// Prints `{"child", "status", "mapped"}`: the child's pid, its wait status, and whether its
/// own mapping worked (1) in the child.
fn undumpable() -> i32 {
    let page = crate::sys::page_size();
    let map = |pages: usize| {
        // SAFETY: A new anonymous mapping, unmapped at once.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                pages * page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return false;
            }
            libc::munmap(p, pages * page) == 0
        }
    };
    // SAFETY: The child only makes system calls before _exit; waitpid writes a live int.
    let (child, status) = unsafe {
        let child = libc::fork();
        if child == 0 {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            libc::_exit(if map(5) { 0 } else { 3 });
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        (child, status)
    };
    let mapped = map(6);
    println!(
        "{{\"child\":{child},\"status\":{status},\"mapped\":{}}}",
        u8::from(mapped)
    );
    0
}
