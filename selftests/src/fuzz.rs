// SPDX-License-Identifier: GPL-2.0

//! A bounded ioctl fuzzer: random and structured requests, bad pointers, other processes.
//!
//! Every call must answer success or an errno the header documents for that command, and a
//! few answers are known exactly: an unknown command is `ENOTTY` whatever its argument, and a
//! known one whose argument cannot be read is `EFAULT`. The seed is fixed and printed; a
//! failure names the call, so that it can be replayed. Every pointer handed to the kernel lies
//! in memory set aside for it (a scratch mapping with a guard page after it, a read-only page,
//! a hole, a `/dev/mmscope` mapping never touched before, kernel addresses), so that what the
//! kernel writes cannot disturb the fuzzer itself. The module's counters must balance after.

use crate::harness::{Context, Outcome, TestResult};
use crate::sys::{in_child, page_size, ChildEnd, Rng};
use crate::{check, check_eq};
use mmscope::{abi, Device, Mapping};

/// Calls per run (half as root, half as an unprivileged user).
const CALLS: u32 = 20_000;
/// The seed, printed with the results.
const SEED: u64 = 0x6d6d_7363_6f70_6531;

/// The memory the fuzzer points the kernel at.
struct Arena {
    /// Read-write scratch pages, followed by a `PROT_NONE` guard page.
    scratch: Mapping,
    scratch_len: usize,
    /// A read-only page.
    read_only: Mapping,
    /// An address with nothing mapped, between the two pages of `fence`.
    hole: u64,
    /// Kept mapped (unmapped when the arena goes) so that the hole stays one.
    _fence: Mapping,
    /// A `/dev/mmscope` object of its own (SET_LIMIT on the fuzzed one must not reach it)
    /// and a mapping of it; `lazy_used` of its pages have been handed out.
    lazy_dev: Device,
    lazy: Mapping,
    lazy_used: usize,
    lazy_offset: usize,
}

/// Pages per mapping of the lazy object; a new mapping further into the object replaces it
/// when they are used up.
const LAZY_PAGES: usize = 256;

impl Arena {
    fn new() -> Result<Self, Outcome> {
        let ps = page_size();
        let pages = 16;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let scratch = Mapping::new((pages + 1) * ps, rw, anon, -1, 0).context("scratch")?;
        // SAFETY: The last page of our own mapping becomes the guard.
        let ret =
            unsafe { libc::mprotect(scratch.addr().add(pages * ps).cast(), ps, libc::PROT_NONE) };
        check_eq!(ret, 0, "mprotect of the guard page");
        let read_only = Mapping::new(ps, libc::PROT_READ, anon, -1, 0).context("read-only page")?;
        // The middle page of three, unmapped: nothing later can land in a one-page gap
        // between our own pages.
        let fence = Mapping::new(3 * ps, libc::PROT_NONE, anon, -1, 0).context("hole")?;
        let hole_addr = fence.addr() as u64 + ps as u64;
        // SAFETY: The middle page of our own mapping.
        let ret = unsafe { libc::munmap(fence.addr().add(ps).cast(), ps) };
        check_eq!(ret, 0, "munmap of the hole");
        let lazy_dev = Device::open().context("open /dev/mmscope")?;
        let lazy = lazy_dev
            .map(LAZY_PAGES * ps, rw, libc::MAP_SHARED, 0)
            .context("mmap of /dev/mmscope")?;
        Ok(Self {
            scratch,
            scratch_len: pages * ps,
            read_only,
            hole: hole_addr,
            _fence: fence,
            lazy_dev,
            lazy,
            lazy_used: 0,
            lazy_offset: 0,
        })
    }

    /// An address `skew` bytes into a page of the lazy mapping that nothing has touched yet.
    fn fresh_lazy(&mut self, skew: usize) -> Result<u64, Outcome> {
        let ps = page_size();
        if self.lazy_used == LAZY_PAGES {
            self.lazy_offset += LAZY_PAGES;
            self.lazy = self
                .lazy_dev
                .map(
                    LAZY_PAGES * ps,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    (self.lazy_offset * ps) as u64,
                )
                .context("mmap of /dev/mmscope")?;
            self.lazy_used = 0;
        }
        self.lazy_used += 1;
        Ok(self.lazy.addr() as u64 + ((self.lazy_used - 1) * ps + skew) as u64)
    }
}

/// Where an argument points, and whether the kernel can read a request there.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Null,
    Hole,
    Kernel,
    ReadOnly,
    /// In scratch, `n` bytes before the guard page: a struct larger than that straddles it.
    BeforeGuard(usize),
    /// In scratch, at this offset (possibly misaligned).
    Scratch(usize),
    /// In a page of a `/dev/mmscope` mapping never touched before, at this offset.
    Lazy(usize),
}

impl Place {
    fn addr(self, a: &mut Arena) -> Result<u64, Outcome> {
        Ok(match self {
            Place::Null => 0,
            Place::Hole => a.hole,
            Place::Kernel => 0xffff_8880_0000_0000,
            Place::ReadOnly => a.read_only.addr() as u64,
            Place::BeforeGuard(n) => a.scratch.addr() as u64 + (a.scratch_len - n) as u64,
            Place::Scratch(off) => a.scratch.addr() as u64 + off as u64,
            Place::Lazy(skew) => a.fresh_lazy(skew)?,
        })
    }

    /// Whether the kernel can read at least 4 bytes (a request's size field) here.
    fn readable(self) -> bool {
        match self {
            Place::Null | Place::Hole | Place::Kernel => false,
            Place::BeforeGuard(n) => n >= 4,
            _ => true,
        }
    }

    /// Whether the fuzzer writes a structured request here (elsewhere the kernel finds
    /// whatever is there: nothing, zeros, or the guard page).
    fn structured(self) -> bool {
        matches!(self, Place::Scratch(_))
    }
}

use libc::{E2BIG, EACCES, EBUSY, EFAULT, EINVAL, ENOENT, ENOMEM, ESRCH};

/// The known commands and the errnos the header documents for each.
const COMMANDS: [(u32, &[i32]); 6] = [
    (abi::MMSCOPE_IOC_VERSION, &[EFAULT]),
    (abi::MMSCOPE_IOC_MEM_STATS, &[EINVAL, EFAULT, E2BIG]),
    (abi::MMSCOPE_IOC_SET_LIMIT, &[EINVAL, EBUSY, EFAULT]),
    (
        abi::MMSCOPE_IOC_MM_SUMMARY,
        &[EINVAL, EFAULT, ESRCH, EACCES, E2BIG],
    ),
    (
        abi::MMSCOPE_IOC_VMA_LIST,
        &[EINVAL, EFAULT, ESRCH, EACCES, E2BIG, ENOMEM],
    ),
    (
        abi::MMSCOPE_IOC_VMA_QUERY,
        &[EINVAL, EFAULT, ESRCH, EACCES, ENOENT, E2BIG],
    ),
];

/// The errnos documented for `cmd`, or `None` for an unknown command.
fn documented(cmd: u32) -> Option<&'static [i32]> {
    COMMANDS
        .iter()
        .find(|(c, _)| *c == cmd)
        .map(|(_, errnos)| *errnos)
}

/// The processes a request may name besides the caller itself.
struct Pids {
    /// The test process: the caller's parent.
    parent: i32,
    zombie: i32,
    dead: i32,
}

/// Writes `v` at `off` into the request at `base` (in fuzzer-owned memory).
fn put<T: Copy>(base: u64, off: usize, v: T) {
    // SAFETY: `base` is in the scratch or lazy mapping with room for the largest request
    // (checked by the caller); unaligned writes are allowed.
    unsafe { ((base as usize + off) as *mut T).write_unaligned(v) };
}

/// One fuzzing run of `calls` calls on `dev`; returns the calls made and how many succeeded.
fn run(
    dev: &Device,
    arena: &mut Arena,
    rng: &mut Rng,
    pids: &Pids,
    calls: u32,
) -> Result<(u32, u32), Outcome> {
    let ps = page_size();
    let own = std::process::id() as i32;
    let mut ok = 0;
    for i in 0..calls {
        // The command: mostly known, sometimes a neighbour (same magic, other nr, size or
        // direction), sometimes anything.
        let cmd = match rng.below(10) {
            0 => rng.next() as u32,
            1 => abi::ioc(
                rng.below(4) as u32,
                abi::MMSCOPE_IOC_MAGIC,
                rng.below(0x20) as u32,
                rng.below(300) as usize,
            ),
            _ => rng.pick(&COMMANDS).0,
        };
        let place = match rng.below(12) {
            0 => Place::Null,
            1 => Place::Hole,
            2 => Place::Kernel,
            3 => Place::ReadOnly,
            4 => Place::BeforeGuard(rng.below(24) as usize),
            5 => Place::Lazy(rng.below(8) as usize),
            _ => Place::Scratch(rng.below(8) as usize * ps + rng.below(16) as usize),
        };
        let arg = place.addr(arena)?;
        if place.structured() {
            // A structured request: header fields from interesting values.
            let size = rng.pick(&[
                0u32,
                4,
                8,
                40,
                47,
                48,
                56,
                64,
                200,
                232,
                240,
                4096,
                4097,
                u32::MAX,
            ]);
            let any = rng.next();
            let flags = rng.pick(&[0u32, 1, 2, 3, 4, 0x8000_0000, any as u32]);
            let pid = rng.pick(&[
                0,
                own,
                pids.parent,
                1,
                2,
                pids.zombie,
                pids.dead,
                -1,
                i32::MAX,
                (any >> 32) as i32,
            ]);
            let reserved = rng.pick(&[0u32, 0, 0, 1]);
            put(arg, 0, size);
            put(arg, 4, flags);
            put(arg, 8, pid);
            put(arg, 12, reserved);
            // start_addr / addr, records, record_size, capacity
            put(arg, 16, rng.pick(&[0u64, arg, u64::MAX, 0x1000, any]));
            let records = rng.pick(&[
                Place::Scratch(0),
                Place::Scratch(ps + 3),
                Place::BeforeGuard(100),
                Place::Lazy(0),
                Place::Null,
                Place::Kernel,
                Place::ReadOnly,
                Place::Hole,
            ]);
            put(arg, 24, records.addr(arena)?);
            put(
                arg,
                32,
                rng.pick(&[0u32, 47, 48, 49, 64, 4096, 4097, u32::MAX]),
            );
            put(arg, 36, rng.pick(&[0u32, 1, 2, 16, 1000, u32::MAX]));
            // Zero what lies past the fields, or not.
            for off in (40..256).step_by(8) {
                put(arg, off, if rng.below(8) == 0 { rng.next() } else { 0u64 });
            }
        }
        // SAFETY: `arg` points into memory set aside for the kernel (see `Arena`), or is an
        // address the kernel must refuse; nothing the kernel writes there is ours.
        let res = unsafe { dev.ioctl(cmd, arg as usize) };
        let what = || format!("call {i}: cmd {cmd:#x} at {place:?} ({arg:#x})");
        match (documented(cmd), res) {
            (None, Ok(_)) => {
                return Err(Outcome::Fail(format!(
                    "{}: an unknown command succeeded",
                    what()
                )))
            }
            (None, Err(e)) => check_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{}", what()),
            (Some(_), Ok(_)) => ok += 1,
            (Some(allowed), Err(e)) => {
                let errno = e.raw_os_error().unwrap_or(0);
                if !place.readable() {
                    check_eq!(errno, libc::EFAULT, "{}: unreadable argument", what());
                }
                check!(
                    allowed.contains(&errno),
                    "{}: {e} is not documented for it",
                    what()
                );
            }
        }
    }
    Ok((calls, ok))
}

/// Fuzzes every ioctl as root and as an unprivileged user (`CALLS` calls, seed `SEED`).
pub fn ioctl_fuzz() -> TestResult {
    let probe = Device::open().context("open /dev/mmscope")?;
    let before = probe.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    // A zombie (exited, not reaped) and a dead pid (reaped).
    // SAFETY: The test process is single-threaded; the children exit at once.
    let zombie = unsafe { libc::fork() };
    if zombie == 0 {
        // SAFETY: _exit in the child.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: As above.
    let dead = unsafe { libc::fork() };
    if dead == 0 {
        // SAFETY: _exit in the child.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: `dead` is our child.
    unsafe { libc::waitpid(dead, std::ptr::null_mut(), 0) };
    let pids = Pids {
        parent: std::process::id() as i32,
        zombie,
        dead,
    };
    let mut total = 0;
    for uid in [0u32, 1000] {
        let end = in_child(|| {
            // Open and map as root (the device node is root's), then drop privileges: the
            // ioctls judge the caller, not the file.
            let setup = Device::open()
                .map_err(|e| Outcome::Fail(format!("open: {e}")))
                .and_then(|dev| Ok((dev, Arena::new()?)));
            // SAFETY: Single-threaded child; dropping privileges for the rest of its life.
            if uid != 0 && unsafe { libc::setgid(uid) != 0 || libc::setuid(uid) != 0 } {
                return 3;
            }
            let mut rng = Rng(SEED ^ u64::from(uid));
            let result = setup
                .and_then(|(dev, mut arena)| run(&dev, &mut arena, &mut rng, &pids, CALLS / 2));
            match result {
                Ok((calls, ok)) => {
                    println!("# uid {uid}: {calls} calls, {ok} succeeded (seed {SEED:#x})");
                    0
                }
                Err(Outcome::Fail(m)) | Err(Outcome::Skip(m)) => {
                    println!("# uid {uid}: {m}");
                    1
                }
            }
        })
        .context("fork the fuzzer")?;
        check_eq!(end, ChildEnd::Exited(0), "the fuzzer as uid {uid}");
        total += CALLS / 2;
    }
    // SAFETY: `zombie` is our child.
    unsafe { libc::waitpid(zombie, std::ptr::null_mut(), 0) };
    let after = probe.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    check_eq!(after.pages, before.pages, "pages held after fuzzing");
    check_eq!(after.objects, before.objects, "objects alive after fuzzing");
    println!("# {total} ioctl calls in all, every answer documented");
    Ok(())
}
