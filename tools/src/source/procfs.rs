// SPDX-License-Identifier: GPL-2.0

//! The procfs source: the records the module gives, read where the module is absent.
//!
//! - The VMAs come from `PROCMAP_QUERY` (an ioctl on an open `/proc/<pid>/maps`, Linux 6.11
//!   and later; `struct procmap_query` in `include/uapi/linux/fs.h`), walked with
//!   `PROCMAP_QUERY_COVERING_OR_NEXT_VMA`; where the ioctl is absent (`ENOTTY`, `EINVAL`) from
//!   the text of the same file. They are classified by the module's rules (`record()` in
//!   `rust/mm_walk.rs`), from the names procfs gives, which follow the same rules
//!   (`get_vma_name()` in `fs/proc/task_mmu.c`).
//! - The summary comes from `/proc/<pid>/stat` (the layout: fields 26-28 and 45-51, see
//!   `do_task_stat()` in `fs/proc/array.c`) and `/proc/<pid>/status` (the counters,
//!   `task_mem()` in `fs/proc/task_mmu.c`). `map_count` is the number of VMAs.
//!   `smaps_rollup` is not read: its `Rss` and `Anonymous` come from a walk of the page
//!   tables, not from the counters the module reads, and `status` has those counters.
//!
//! What procfs cannot give, and what is done instead:
//! - `brk`, `mmap_base`, `task_size`: procfs does not show them; the snapshot marks them
//!   unknown (the tracer knows `brk` from the calls it sees, see [`crate::trace`]).
//! - The VMA flags beyond `rd wr ex ms` (`PROCMAP_QUERY`, and the perms of `maps`, have no
//!   others): read from `/proc/<pid>/smaps`' `VmFlags` at [`Depth::Full`] only, because
//!   `smaps` walks every page table of the process.
//! - `vm_pgoff` of memory without a file: procfs shows 0 (the module shows the kernel's
//!   value); [`Vma::pgoff`] is 0 for it.
//! - `VmHWM` and `VmPeak` are the high-water marks with the current values folded in
//!   (`max(hiwater_rss, rss)`); the module gives `mm->hiwater_rss` and `mm->hiwater_vm` as
//!   the kernel keeps them, which it raises only when it is about to lower the current value.
//! - Whether a file is shared memory (the module: tmpfs and no links) is decided from the name
//!   and from `stat` and `statfs` of the path, see [`Procfs::file_kind`]. Where the name
//!   misleads, the kind can differ from the module's: a live file whose name really ends in
//!   ` (deleted)`; a deleted `/dev/mmscope` node (shmem here, the device for the module); a
//!   target in a chroot, whose paths are not this process's; and on overlayfs procfs shows the
//!   overlay's device and inode where the module shows the backing file's.
//! - Nothing here is one atomic reading: the VMAs are queried one by one and the counters read
//!   after them. For a stopped process (a tracee at a stop) that is exact.

use crate::abi::{self, kind, MmSummary, Vma};
use crate::procfs::{
    parse_maps_line, smaps_flags, stat_fields, status_kbs, ProcmapQuery, PROCMAP_QUERY,
    QUERY_COVERING_OR_NEXT_VMA, QUERY_VMA_EXECUTABLE, QUERY_VMA_READABLE, QUERY_VMA_SHARED,
    QUERY_VMA_WRITABLE,
};
use crate::snapshot::{page_size, Field, Snapshot, ALL_VMA_FLAGS};
use crate::source::{Depth, Source};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// `PATH_MAX`: the longest name `PROCMAP_QUERY` returns.
const PATH_MAX: usize = 4096;

/// The VMA flags `PROCMAP_QUERY` and the perms of `maps` give.
const PERM_FLAGS: u64 = abi::MMSCOPE_VMA_READ
    | abi::MMSCOPE_VMA_WRITE
    | abi::MMSCOPE_VMA_EXEC
    | abi::MMSCOPE_VMA_MAYSHARE;

/// Why `brk` is unknown from procfs.
pub const BRK_UNKNOWN: &str = "procfs shows only start_brk (/proc/PID/stat field 47); the \
     module, or `mmscope trace` from the program's start, gives brk exactly";
/// Why `mmap_base` is unknown from procfs.
const MMAP_BASE_UNKNOWN: &str = "procfs does not show mm->mmap_base; the module does";
/// Why `task_size` is unknown from procfs.
const TASK_SIZE_UNKNOWN: &str = "procfs does not show the task's TASK_SIZE; the module does";

/// A VMA as procfs shows it, before it is classified.
struct Raw {
    start: u64,
    end: u64,
    /// `MMSCOPE_VMA_READ`, `WRITE`, `EXEC` and `MAYSHARE`.
    perms: u64,
    /// The file offset in bytes.
    offset: u64,
    dev: (u32, u32),
    inode: u64,
    /// What `/proc/<pid>/maps` shows as the name; empty if none.
    name: String,
    /// `vma_kernel_pagesize()`, where `PROCMAP_QUERY` gave it.
    page_size: Option<u64>,
}

/// Address spaces read from procfs. Holds what it learnt about filesystems and files, so that
/// a tracer's readings at every call stay cheap.
pub struct Procfs {
    /// The base page size.
    page: u64,
    /// Whether `PROCMAP_QUERY` works on this kernel; `None` until it was tried.
    query: Cell<Option<bool>>,
    /// Whether the filesystem of a device is tmpfs (`statfs`), by device.
    tmpfs: RefCell<HashMap<(u32, u32), bool>>,
    /// The kind of a file VMA, by device, inode and whether its name says ` (deleted)`.
    kinds: RefCell<HashMap<(u32, u32, u64, bool), u32>>,
    /// The device number of `/dev/mmscope`, if that node exists: a mapping of a node with it
    /// is a mapping of the module's device.
    mmscope_rdev: Option<u64>,
}

impl Default for Procfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Procfs {
    /// A source that reads procfs.
    pub fn new() -> Self {
        let mmscope_rdev = std::fs::metadata(crate::DEVICE_PATH)
            .ok()
            .filter(|m| m.file_type().is_char_device())
            .map(|m| m.rdev());
        Self {
            page: page_size(),
            query: Cell::new(None),
            tmpfs: RefCell::default(),
            kinds: RefCell::default(),
            mmscope_rdev,
        }
    }

    /// The VMAs `/proc/<pid>/maps` (`dir/maps`) holds, through `PROCMAP_QUERY` or its text.
    fn raw_vmas(&self, dir: &str, out: &mut Vec<Raw>) -> io::Result<()> {
        out.clear();
        let mut maps = File::open(format!("{dir}/maps")).map_err(gone)?;
        if self.query.get() != Some(false) {
            match query_all(&maps, out) {
                Ok(()) => {
                    self.query.set(Some(true));
                    return Ok(());
                }
                // No PROCMAP_QUERY (before Linux 6.11): ENOTTY, or EINVAL from an ioctl
                // handler that does not know it.
                Err(e)
                    if out.is_empty()
                        && matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) =>
                {
                    self.query.set(Some(false));
                }
                // A name longer than PATH_MAX (a deep path): this read goes through the text,
                // which shows any name.
                Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => out.clear(),
                Err(e) => return Err(gone(e)),
            }
        }
        let mut text = String::new();
        maps.read_to_string(&mut text).map_err(gone)?;
        for line in text.lines() {
            let Some(m) = parse_maps_line(line) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{dir}/maps has a line that is not a maps line: {line:?}"),
                ));
            };
            // The vsyscall page is the gate area, shown by maps but not a VMA of the address
            // space: neither the module nor PROCMAP_QUERY lists it.
            if m.name == "[vsyscall]" {
                continue;
            }
            let bytes = m.perms.as_bytes();
            let bit = |i: usize, c: u8, flag: u64| if bytes[i] == c { flag } else { 0 };
            out.push(Raw {
                start: m.start,
                end: m.end,
                perms: bit(0, b'r', abi::MMSCOPE_VMA_READ)
                    | bit(1, b'w', abi::MMSCOPE_VMA_WRITE)
                    | bit(2, b'x', abi::MMSCOPE_VMA_EXEC)
                    | bit(3, b's', abi::MMSCOPE_VMA_MAYSHARE),
                offset: m.offset,
                dev: m.dev,
                inode: m.inode,
                name: m.name.to_string(),
                page_size: None,
            });
        }
        Ok(())
    }

    /// The kind of a VMA, by the module's rules.
    fn classify(&self, dir: &str, r: &Raw) -> u32 {
        // A VMA with a file has a device (an anonymous superblock's minor is never 0).
        if r.dev != (0, 0) || r.inode != 0 {
            return self.file_kind(dir, r);
        }
        match r.name.as_str() {
            "" => kind::ANON,
            "[heap]" => kind::HEAP,
            "[stack]" => kind::STACK,
            "[vdso]" => kind::VDSO,
            "[vvar]" | "[vvar_vclock]" => kind::VVAR,
            // Named with PR_SET_VMA_ANON_NAME; the kernel says [heap] and [stack] first.
            n if n.starts_with("[anon:") => kind::ANON,
            // A name from the VMA's operations (`vm_ops->name`): [uprobes] and the like.
            _ => kind::SPECIAL,
        }
    }

    /// The kind of a VMA with a file: the module's device, shared memory (a tmpfs file with no
    /// links: `TMPFS_MAGIC` and `i_nlink == 0` in the module) or a file. Decided once per file.
    ///
    /// - `[anon_shmem:NAME]`: shared anonymous memory named with `PR_SET_VMA_ANON_NAME`.
    /// - A name without ` (deleted)`: the path, resolved in the process's root
    ///   (`/proc/<pid>/root`), is this file if its device and inode match; then `stat` gives
    ///   its links and `statfs` its filesystem. If they do not match (renamed, mounted over),
    ///   it counts as a file.
    /// - A name with ` (deleted)` (no links, or procfs cannot tell): `/dev/zero`, `/memfd:` and
    ///   `/SYSV` are the kernel's own shared memory (MAP_SHARED|MAP_ANONYMOUS, memfd, System
    ///   V), unless their pages are huge (hugetlbfs); another is shared memory if its device is
    ///   tmpfs, as learnt from another path on it or from the nearest directory above it that
    ///   is on the same device. Not told apart: a deleted tmpfs file that still has another
    ///   link (the module says file), and, without `PROCMAP_QUERY`, a hugetlbfs memfd.
    fn file_kind(&self, dir: &str, r: &Raw) -> u32 {
        if r.name.starts_with("[anon_shmem:") {
            return kind::SHMEM;
        }
        let (path, deleted) = match r.name.strip_suffix(" (deleted)") {
            Some(p) => (p, true),
            None => (r.name.as_str(), false),
        };
        let key = (r.dev.0, r.dev.1, r.inode, deleted);
        if let Some(&k) = self.kinds.borrow().get(&key) {
            return k;
        }
        let k = self.decide_file_kind(dir, r, path, deleted);
        self.kinds.borrow_mut().insert(key, k);
        k
    }

    fn decide_file_kind(&self, dir: &str, r: &Raw, path: &str, deleted: bool) -> u32 {
        let dev = libc::makedev(r.dev.0, r.dev.1);
        let in_root = |p: &Path| format!("{dir}/root{}", p.display());
        if !deleted {
            let full = in_root(Path::new(path));
            return match std::fs::metadata(&full) {
                Ok(m) if m.dev() == dev && m.ino() == r.inode => {
                    if m.file_type().is_char_device() && Some(m.rdev()) == self.mmscope_rdev {
                        kind::MMSCOPE
                    } else if m.nlink() == 0 && self.is_tmpfs(r.dev, &full) {
                        kind::SHMEM
                    } else {
                        kind::FILE
                    }
                }
                _ => kind::FILE,
            };
        }
        if r.page_size.is_some_and(|p| p > self.page) {
            return kind::FILE;
        }
        if path == "/dev/zero" || path.starts_with("/memfd:") || path.starts_with("/SYSV") {
            self.tmpfs.borrow_mut().insert(r.dev, true);
            return kind::SHMEM;
        }
        if let Some(&tmpfs) = self.tmpfs.borrow().get(&r.dev) {
            return if tmpfs { kind::SHMEM } else { kind::FILE };
        }
        let mut at = Path::new(path);
        while let Some(parent) = at.parent() {
            let full = in_root(parent);
            if std::fs::metadata(&full).is_ok_and(|m| m.dev() == dev) {
                return if self.is_tmpfs(r.dev, &full) {
                    kind::SHMEM
                } else {
                    kind::FILE
                };
            }
            at = parent;
        }
        kind::FILE
    }

    /// Whether the filesystem of device `dev`, which holds `path`, is tmpfs; learnt once per
    /// device. False if `statfs` fails.
    fn is_tmpfs(&self, dev: (u32, u32), path: &str) -> bool {
        if let Some(&t) = self.tmpfs.borrow().get(&dev) {
            return t;
        }
        let Ok(fs) = nix::sys::statfs::statfs(path) else {
            return false;
        };
        let t = fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC;
        self.tmpfs.borrow_mut().insert(dev, t);
        t
    }
}

impl Source for Procfs {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn describe(&self) -> String {
        let maps = match self.query.get() {
            Some(false) => "/proc/PID/maps",
            _ => "/proc/PID/maps (PROCMAP_QUERY)",
        };
        format!("procfs: {maps}, smaps, stat and status")
    }

    fn read(&self, pid: Option<i32>, depth: Depth, snap: &mut Snapshot) -> io::Result<()> {
        let dir = match pid {
            Some(pid) => format!("/proc/{pid}"),
            None => "/proc/self".to_string(),
        };
        let mut raw = Vec::new();
        self.raw_vmas(&dir, &mut raw)?;
        let full = match depth {
            Depth::Full => {
                let text = std::fs::read_to_string(format!("{dir}/smaps")).map_err(gone)?;
                Some(smaps_flags(&text))
            }
            Depth::Light => None,
        };
        snap.vma_flags_known = if full.is_some() {
            ALL_VMA_FLAGS
        } else {
            PERM_FLAGS
        };
        snap.vmas.clear();
        for r in &raw {
            let flags = match full.as_ref().map(|f| f.get(&(r.start, r.end))) {
                Some(Some(&flags)) => flags,
                // The VMA changed between the two readings: only what the first one gave.
                Some(None) => {
                    snap.vma_flags_known = PERM_FLAGS;
                    r.perms
                }
                None => r.perms,
            };
            let kind = self.classify(&dir, r);
            let has_pgoff = matches!(kind, kind::FILE | kind::SHMEM | kind::MMSCOPE);
            snap.vmas.push(Vma {
                start: r.start,
                end: r.end,
                pgoff: if has_pgoff { r.offset / self.page } else { 0 },
                flags,
                inode: r.inode,
                dev_major: r.dev.0,
                dev_minor: r.dev.1,
                kind,
                reserved: 0,
            });
        }
        snap.summary = summary(&dir, self.page, snap.vmas.len())?;
        snap.unknown = vec![
            (Field::Brk, BRK_UNKNOWN),
            (Field::MmapBase, MMAP_BASE_UNKNOWN),
            (Field::TaskSize, TASK_SIZE_UNKNOWN),
        ];
        Ok(())
    }
}

/// Every VMA of the open `maps` file, through `PROCMAP_QUERY`, appended to `out`.
fn query_all(maps: &File, out: &mut Vec<Raw>) -> io::Result<()> {
    let mut name = vec![0u8; PATH_MAX];
    let mut addr = 0u64;
    loop {
        let mut q = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: QUERY_COVERING_OR_NEXT_VMA,
            query_addr: addr,
            vma_name_size: name.len() as u32,
            vma_name_addr: name.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: PROCMAP_QUERY reads and writes one `struct procmap_query` at the pointer,
        // which points to one, and writes at most `vma_name_size` bytes to `vma_name_addr`,
        // the buffer `name` of that length; no build ID is asked for (`build_id_size` 0).
        let ret = unsafe {
            libc::ioctl(
                maps.as_raw_fd(),
                PROCMAP_QUERY as libc::c_ulong,
                &mut q as *mut ProcmapQuery,
            )
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            // ENOENT: no VMA at or above `addr`, the walk is done.
            return if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // `vma_name_size` counts the terminating NUL; 0 if the VMA has no name.
        let len = (q.vma_name_size as usize).saturating_sub(1).min(name.len());
        let perm = |bit: u64, flag: u64| if q.vma_flags & bit != 0 { flag } else { 0 };
        out.push(Raw {
            start: q.vma_start,
            end: q.vma_end,
            perms: perm(QUERY_VMA_READABLE, abi::MMSCOPE_VMA_READ)
                | perm(QUERY_VMA_WRITABLE, abi::MMSCOPE_VMA_WRITE)
                | perm(QUERY_VMA_EXECUTABLE, abi::MMSCOPE_VMA_EXEC)
                | perm(QUERY_VMA_SHARED, abi::MMSCOPE_VMA_MAYSHARE),
            offset: q.vma_offset,
            dev: (q.dev_major, q.dev_minor),
            inode: q.inode,
            name: String::from_utf8_lossy(&name[..len]).into_owned(),
            page_size: Some(q.vma_page_size),
        });
        if q.vma_end <= addr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "PROCMAP_QUERY went backwards",
            ));
        }
        addr = q.vma_end;
    }
}

/// The summary from `dir/stat` and `dir/status`, with `map_count` VMAs.
fn summary(dir: &str, page: u64, map_count: usize) -> io::Result<MmSummary> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).map_err(gone)?;
    let status = std::fs::read_to_string(format!("{dir}/status")).map_err(gone)?;
    let kbs = status_kbs(&status);
    let status_kb = |key: &str| kbs.iter().find(|(k, _)| *k == key).map(|&(_, v)| v);
    // A process without an address space (a zombie, a kernel thread) has no Vm lines.
    if status_kb("VmSize").is_none() {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    let fields = stat_fields(&stat);
    let field = |n: usize| {
        fields.get(n - 3).copied().flatten().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{dir}/stat has no number in field {n}"),
            )
        })
    };
    let kb = |key: &str| status_kb(key).unwrap_or(0) * 1024;
    let pages = |key: &str| kb(key) / page;
    Ok(MmSummary {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
        map_count: map_count as u64,
        total_vm: pages("VmSize"),
        locked_vm: pages("VmLck"),
        pinned_vm: pages("VmPin"),
        data_vm: pages("VmData"),
        // task_mem() splits exec_vm into VmExe and VmLib, each a whole number of kB.
        exec_vm: (kb("VmExe") + kb("VmLib")) / page,
        stack_vm: pages("VmStk"),
        hiwater_rss: pages("VmHWM"),
        hiwater_vm: pages("VmPeak"),
        rss_anon: pages("RssAnon"),
        rss_file: pages("RssFile"),
        rss_shmem: pages("RssShmem"),
        ..Default::default()
    })
}

/// A procfs file that is gone means the process is: `ESRCH`, as from the module.
fn gone(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => io::Error::from_raw_os_error(libc::ESRCH),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, dev: (u32, u32), inode: u64, page_size: Option<u64>) -> Raw {
        Raw {
            start: 0x1000,
            end: 0x2000,
            perms: 0,
            offset: 0,
            dev,
            inode,
            name: name.to_string(),
            page_size,
        }
    }

    #[test]
    fn kinds_without_a_file() {
        let p = Procfs::new();
        let kind = |name: &str| p.classify("/proc/self", &raw(name, (0, 0), 0, None));
        assert_eq!(kind(""), kind::ANON);
        assert_eq!(kind("[heap]"), kind::HEAP);
        assert_eq!(kind("[stack]"), kind::STACK);
        assert_eq!(kind("[vdso]"), kind::VDSO);
        assert_eq!(kind("[vvar]"), kind::VVAR);
        assert_eq!(kind("[vvar_vclock]"), kind::VVAR);
        assert_eq!(kind("[anon:glibc: malloc arena]"), kind::ANON);
        assert_eq!(kind("[uprobes]"), kind::SPECIAL);
    }

    #[test]
    fn kinds_of_files() {
        let p = Procfs::new();
        let page = Some(page_size());
        let kind =
            |name: &str, dev, page_size| p.classify("/proc/self", &raw(name, dev, 7, page_size));
        assert_eq!(kind("[anon_shmem:ring]", (0, 1), page), kind::SHMEM);
        assert_eq!(
            kind("/memfd:huge (deleted)", (0, 9), Some(2 << 20)),
            kind::FILE
        );
        assert_eq!(kind("/memfd:buffer (deleted)", (0, 1), page), kind::SHMEM);
        // What /dev/zero taught about device 0:1 holds for another deleted file on it.
        assert_eq!(kind("/dev/zero (deleted)", (0, 1), page), kind::SHMEM);
        assert_eq!(kind("/some/file (deleted)", (0, 1), page), kind::SHMEM);
        // A path that does not name the file (no such file here): a file.
        assert_eq!(kind("/nonexistent/lib.so", (8, 1), page), kind::FILE);
        assert_eq!(
            kind("/nonexistent/lib.so (deleted)", (8, 1), page),
            kind::FILE
        );
    }

    /// Waits until `pid` runs `comm` (it has exec'd), for at most two seconds.
    fn wait_for_exec(pid: u32, comm: &str) {
        for _ in 0..200 {
            let now = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if now.trim_end() == comm {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("process {pid} did not exec {comm}");
    }

    /// Stops `pid` and waits until procfs shows it stopped (state `T`).
    fn stop(pid: u32) {
        // SAFETY: A signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("process {pid} did not stop");
    }

    #[test]
    fn maps_text_gives_what_procmap_query_gives() {
        let Ok(mut child) = std::process::Command::new("sleep").arg("10").spawn() else {
            return;
        };
        wait_for_exec(child.id(), "sleep");
        // Stopped, so that both reads see the same VMAs: at exec the loader has not mapped
        // everything yet.
        stop(child.id());
        let pid = Some(child.id() as i32);
        let query = Procfs::new();
        let text = Procfs::new();
        text.query.set(Some(false));
        let (mut a, mut b) = (Snapshot::default(), Snapshot::default());
        let read_a = query.read(pid, Depth::Full, &mut a);
        let read_b = text.read(pid, Depth::Full, &mut b);
        let _ = child.kill();
        let _ = child.wait();
        read_a.expect("read through PROCMAP_QUERY");
        read_b.expect("read the text");
        assert!(!a.vmas.is_empty());
        assert_eq!(a.vmas, b.vmas);
        assert_eq!(a.summary, b.summary);
    }
}
