// SPDX-License-Identifier: GPL-2.0

//! Snapshots of an address space: the `mm_struct` summary and its VMAs.
//!
//! C headers: [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h),
//! [`include/linux/mm.h`](srctree/include/linux/mm.h); the naming rules follow
//! `get_vma_name()` in [`fs/proc/task_mmu.c`](srctree/fs/proc/task_mmu.c).
//!
//! Everything here reads under the mmap read lock (and `arg_lock` for the argument and
//! environment ranges) straight into the uapi records, and returns after dropping the locks:
//! callers copy to userspace with no lock held. Memory is bounded by the caller's record buffer.
//!
//! Besides `vm_ops.rs`, this is the only file that touches `mm_struct`, `vm_area_struct`,
//! `task_struct` and `file` directly.

use crate::uapi::{
    MmscopeMmSummary,
    MmscopeVma, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    fs::File,
    mm::virt::VmaRef,
    mm::{
        MmWithUser,
        MmapReadGuard, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        rcu, //
    },
};

/// `VM_GROWSDOWN`, which the generated bindings do not carry.
const VM_GROWSDOWN: usize = 0x0000_0100;
/// `VM_LOCKED`, which the generated bindings do not carry.
const VM_LOCKED: usize = 0x0000_2000;

/// `MINORBITS` of the kernel's internal `dev_t`.
const MINORBITS: u32 = 20;

/// What a VMA maps, named after the rules `/proc/<pid>/maps` uses (`enum mmscope_vma_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum VmaKind {
    /// Private anonymous memory that is neither the heap nor the initial stack.
    Anon = 0,
    /// The initial heap, `[heap]`: the VMA that holds the range `start_brk..brk`.
    Heap = 1,
    /// The initial stack, `[stack]`: the VMA that holds `start_stack`.
    Stack = 2,
    /// `[vdso]`.
    Vdso = 3,
    /// `[vvar]` and `[vvar_vclock]`.
    Vvar = 4,
    /// A file.
    File = 5,
    /// Shared memory with no name in a filesystem: `MAP_SHARED | MAP_ANONYMOUS`, memfd,
    /// System V shared memory.
    Shmem = 6,
    /// A mapping of `/dev/mmscope`.
    Mmscope = 7,
    /// Another special mapping: one whose operations give it a name.
    Special = 8,
}

/// Calls `f` with the address space of the caller, or of the process `pid`.
///
/// Another process is allowed if it is in the caller's thread group, if a thread of the caller's
/// thread group is its tracer, or if the caller has `CAP_SYS_PTRACE`.
///
/// The tracer rule stands in for `ptrace_may_access()`, the rule of `/proc/<pid>/maps`, which
/// is not exported to modules: a tracer has passed `ptrace_may_access(PTRACE_MODE_ATTACH)`, LSMs
/// and Yama included, to attach (`PTRACE_SEIZE`, `PTRACE_ATTACH`, or the tracee's
/// `PTRACE_TRACEME`), which is stricter than the read check of procfs, and it can already read
/// the tracee's memory with `PTRACE_PEEKDATA`. The rule holds only while the tracer is attached.
/// A process of the same user that procfs would show but nobody traces is refused.
///
/// Fails with `ESRCH` if there is no such process or it has no address space, and `EACCES` if
/// the caller may not read it.
pub(crate) fn with_target_mm<R>(
    pid: Option<i32>,
    f: impl FnOnce(&MmWithUser) -> Result<R>,
) -> Result<R> {
    let Some(nr) = pid else {
        // The caller's own address space needs no reference: it lives as long as the caller,
        // which is in this system call.
        let current = kernel::current!();
        return f(current.mm().ok_or(ESRCH)?);
    };
    let mm = other_mm(nr)?;
    f(&mm)
}

/// The address space of process `nr`, if the caller may read it; see [`with_target_mm`].
fn other_mm(nr: i32) -> Result<ARef<MmWithUser>> {
    let current = kernel::current!();
    // SAFETY: `find_get_pid` has no preconditions; it returns a counted reference or NULL.
    let pid = unsafe { bindings::find_get_pid(nr) };
    if pid.is_null() {
        return Err(ESRCH);
    }
    // SAFETY: `pid` is a valid counted reference, dropped right after.
    let task = unsafe { bindings::get_pid_task(pid, bindings::pid_type_PIDTYPE_PID) };
    // SAFETY: We own the reference `find_get_pid` returned.
    unsafe { bindings::put_pid(pid) };
    if task.is_null() {
        return Err(ESRCH);
    }
    // SAFETY: `task` is a counted reference to a live task, so its `tgid` is stable.
    let same_group = unsafe { (*task).tgid } == current.tgid();
    // SAFETY: `task` is a counted reference to a live task.
    let allowed = same_group
        || unsafe { traced_by(task, current.tgid()) }
        // SAFETY: `capable` only checks the current task's credentials.
        || unsafe { bindings::capable(bindings::CAP_SYS_PTRACE as i32) };
    let res = if allowed {
        // SAFETY: `task` is alive; `get_task_mm` returns a counted `mm_users` reference or NULL.
        match NonNull::new(unsafe { bindings::get_task_mm(task) }) {
            // SAFETY: `get_task_mm` took an `mm_users` reference, which `ARef` now owns;
            // `MmWithUser` is a transparent wrapper of `mm_struct`.
            Some(mm) => Ok(unsafe { ARef::from_raw(mm.cast::<MmWithUser>()) }),
            None => Err(ESRCH),
        }
    } else {
        Err(EACCES)
    };
    // SAFETY: We own the reference `get_pid_task` returned.
    unsafe { bindings::put_task_struct(task) };
    res
}

/// Whether a thread of the thread group `tgid` is tracing `task` now, as `ptrace_parent()`
/// tells.
///
/// # Safety
///
/// `task` must be a valid `task_struct` for the duration of the call.
unsafe fn traced_by(task: *mut bindings::task_struct, tgid: bindings::pid_t) -> bool {
    let _rcu = rcu::read_lock();
    // SAFETY: The caller guarantees `task` is valid. As in `ptrace_parent()`, `ptrace` is read
    // without a lock and `parent`, an RCU pointer, with `READ_ONCE` semantics under the RCU read
    // lock; while `ptrace` is set, `parent` is the tracer.
    let tracer = unsafe {
        if (*task).ptrace == 0 {
            return false;
        }
        core::ptr::read_volatile(&raw const (*task).parent)
    };
    // SAFETY: Tasks are freed only after an RCU grace period, so the tracer stays valid while
    // the RCU read lock is held; `tgid` never changes.
    !tracer.is_null() && unsafe { (*tracer).tgid } == tgid
}

/// Sums a per-CPU RSS counter of `mm`, as `/proc/<pid>/status` does.
///
/// # Safety
///
/// `mm` must be a valid `mm_struct` with users.
unsafe fn rss_counter(mm: *mut bindings::mm_struct, counter: u32) -> u64 {
    // SAFETY: The caller guarantees `mm` is valid; `counter` is one of the `MM_*` indices.
    let sum = unsafe {
        bindings::__percpu_counter_sum(&raw mut (*mm).__bindgen_anon_1.rss_stat[counter as usize])
    };
    sum.max(0) as u64
}

/// Reads the summary of `mm` under its mmap read lock, and its argument and environment
/// ranges under `arg_lock`. The request header fields are left zero.
pub(crate) fn summary(mm: &MmWithUser) -> MmscopeMmSummary {
    let _guard = mm.mmap_read_lock();
    let raw = mm.as_raw();
    // SAFETY: `mm` has users, so it is valid; the mmap read lock keeps the fields that are
    // written under the mmap write lock (code, data, brk, stack, VM counters) stable.
    let m = unsafe { &(*raw).__bindgen_anon_1 };
    let mut s = MmscopeMmSummary {
        start_code: m.start_code as u64,
        end_code: m.end_code as u64,
        start_data: m.start_data as u64,
        end_data: m.end_data as u64,
        start_brk: m.start_brk as u64,
        brk: m.brk as u64,
        start_stack: m.start_stack as u64,
        mmap_base: m.mmap_base as u64,
        task_size: m.task_size as u64,
        map_count: m.map_count.max(0) as u64,
        total_vm: m.total_vm as u64,
        locked_vm: m.locked_vm as u64,
        pinned_vm: m.pinned_vm.counter.max(0) as u64,
        data_vm: m.data_vm as u64,
        exec_vm: m.exec_vm as u64,
        stack_vm: m.stack_vm as u64,
        hiwater_rss: m.hiwater_rss as u64,
        hiwater_vm: m.hiwater_vm as u64,
        // SAFETY: `raw` is a valid `mm_struct` with users.
        rss_anon: unsafe { rss_counter(raw, bindings::MM_ANONPAGES) },
        // SAFETY: As above.
        rss_file: unsafe { rss_counter(raw, bindings::MM_FILEPAGES) },
        // SAFETY: As above.
        rss_shmem: unsafe { rss_counter(raw, bindings::MM_SHMEMPAGES) },
        ..Default::default()
    };
    // SAFETY: `arg_lock` is a valid spinlock of a live `mm`; the kernel writes the argument and
    // environment ranges under it (prctl(PR_SET_MM)).
    unsafe { bindings::spin_lock(&raw mut (*raw).__bindgen_anon_1.arg_lock) };
    // SAFETY: Read under `arg_lock`.
    let m = unsafe { &(*raw).__bindgen_anon_1 };
    (s.arg_start, s.arg_end) = (m.arg_start as u64, m.arg_end as u64);
    (s.env_start, s.env_end) = (m.env_start as u64, m.env_end as u64);
    // SAFETY: We took the lock above.
    unsafe { bindings::spin_unlock(&raw mut (*raw).__bindgen_anon_1.arg_lock) };
    s
}

/// The VMAs of an address space in address order, from the first one that ends above an
/// address: `VMA_ITERATOR()` and `for_each_vma()` in C. Each step continues from where the last
/// one ended in the VMA tree, rather than searching it from the root as `find_vma()` does.
///
/// # Invariants
///
/// `mas` walks the VMA tree of an `mm` whose mmap read lock is held for `'a`.
struct VmaIter<'a> {
    mas: bindings::ma_state,
    _guard: PhantomData<&'a MmapReadGuard<'a>>,
}

impl<'a> VmaIter<'a> {
    /// The VMAs of `mm` from the first one that ends above `addr`.
    ///
    /// # Safety
    ///
    /// `_guard` must hold the mmap read lock of `mm`.
    unsafe fn new(_guard: &'a MmapReadGuard<'_>, mm: &MmWithUser, addr: usize) -> Self {
        // SAFETY: `mm` is a valid `mm_struct`; this only takes the address of its VMA tree.
        let tree = unsafe { &raw mut (*mm.as_raw()).__bindgen_anon_1.mm_mt };
        // INVARIANT: The state of a walk of `mm`'s tree from `addr`, as `MA_STATE()` makes it;
        // the caller guarantees the lock.
        Self {
            mas: bindings::ma_state {
                tree,
                index: addr,
                last: addr,
                node: core::ptr::null_mut(),
                status: bindings::maple_status_ma_start,
                min: 0,
                max: usize::MAX,
                ..Default::default()
            },
            _guard: PhantomData,
        }
    }
}

impl<'a> Iterator for VmaIter<'a> {
    type Item = &'a VmaRef;

    fn next(&mut self) -> Option<&'a VmaRef> {
        // SAFETY: By the type invariants `mas` walks the VMA tree of an `mm` whose mmap read
        // lock is held, which is what `mas_find()` on that tree requires (it is `vma_next()`).
        let vma = unsafe { bindings::mas_find(&raw mut self.mas, usize::MAX) };
        // SAFETY: The entries of the VMA tree are the `mm`'s VMAs, valid and read-locked while
        // the mmap read lock is held, for `'a`.
        NonNull::new(vma).map(|vma| unsafe { VmaRef::from_raw(vma.as_ptr().cast()) })
    }
}

/// Reads one VMA into a record.
///
/// `this_file` is an open file of `/dev/mmscope`, to recognise mappings of the device.
fn record(vma: &VmaRef, this_file: &File) -> MmscopeVma {
    let raw = vma.as_ptr();
    // SAFETY: `VmaRef` guarantees that the VMA is valid and read-locked, so its fields, its file
    // (which the VMA holds a reference to), that file's inode and superblock, and its `mm` are
    // stable.
    let (vm_file, pgoff, mm) = unsafe { ((*raw).vm_file, (*raw).vm_pgoff, &*(*raw).vm_mm) };
    let mut rec = MmscopeVma {
        start: vma.start() as u64,
        end: vma.end() as u64,
        pgoff: pgoff as u64,
        flags: export_flags(vma.flags()),
        ..Default::default()
    };
    if !vm_file.is_null() {
        // SAFETY: As above: the file, its inode and its superblock live as long as the VMA.
        let (inode, sb, ours) = unsafe {
            let inode = (*vm_file).f_inode;
            let ours = (*vm_file).f_op == (*this_file.as_ptr()).f_op;
            (&*inode, &*(*inode).i_sb, ours)
        };
        rec.inode = inode.i_ino;
        rec.dev_major = sb.s_dev >> MINORBITS;
        rec.dev_minor = sb.s_dev & ((1 << MINORBITS) - 1);
        // SAFETY: `i_nlink` is the active member of the union for a live inode.
        let nlink = unsafe { inode.__bindgen_anon_1.i_nlink };
        let kind = if ours {
            VmaKind::Mmscope
        } else if sb.s_magic == bindings::TMPFS_MAGIC as usize && nlink == 0 {
            VmaKind::Shmem
        } else {
            VmaKind::File
        };
        rec.kind = kind as u32;
        return rec;
    }
    if let Some(name) = special_name(vma) {
        let kind = match name.to_bytes() {
            b"[vdso]" => VmaKind::Vdso,
            b"[vvar]" | b"[vvar_vclock]" => VmaKind::Vvar,
            _ => VmaKind::Special,
        };
        rec.kind = kind as u32;
        return rec;
    }
    let (start, end) = (vma.start(), vma.end());
    let mm = &mm.__bindgen_anon_1;
    let kind = if start < mm.brk && end > mm.start_brk {
        VmaKind::Heap
    } else if start <= mm.start_stack && end >= mm.start_stack {
        VmaKind::Stack
    } else {
        VmaKind::Anon
    };
    rec.kind = kind as u32;
    rec
}

/// The name a VMA's operations give it (`vm_ops->name`), as for special mappings like `[vdso]`.
fn special_name(vma: &VmaRef) -> Option<&CStr> {
    let raw = vma.as_ptr();
    // SAFETY: The VMA is valid and read-locked, so `vm_ops` is stable and, if set, points to a
    // static operations table.
    let name_fn = unsafe { (*raw).vm_ops.as_ref()?.name? };
    // SAFETY: `->name` may be called on a read-locked VMA, as `/proc/<pid>/maps` does.
    let name = unsafe { name_fn(raw) };
    if name.is_null() {
        return None;
    }
    // SAFETY: `->name` returns a NUL-terminated string that lives as long as the mapping.
    Some(unsafe { CStr::from_char_ptr(name) })
}

/// The `MMSCOPE_VMA_*` bits of `vm_flags`, for [`MmscopeVma::flags`]: one step per flag set.
fn export_flags(vm_flags: usize) -> u64 {
    let mut rest = vm_flags & EXPORTED_MASK;
    let mut bits = 0;
    while rest != 0 {
        bits |= 1 << EXPORT_BIT[rest.trailing_zeros() as usize];
        rest &= rest - 1;
    }
    bits
}

/// The `VM_*` flags in [`EXPORTED_VM_FLAGS`], together.
const EXPORTED_MASK: usize = {
    let mut mask = 0;
    let mut i = 0;
    while i < EXPORTED_VM_FLAGS.len() {
        mask |= EXPORTED_VM_FLAGS[i];
        i += 1;
    }
    mask
};

/// For each bit of `vm_flags` in [`EXPORTED_MASK`], its `MMSCOPE_VMA_*` bit.
const EXPORT_BIT: [u8; usize::BITS as usize] = {
    let mut table = [0; usize::BITS as usize];
    let mut i = 0;
    while i < EXPORTED_VM_FLAGS.len() {
        table[EXPORTED_VM_FLAGS[i].trailing_zeros() as usize] = i as u8;
        i += 1;
    }
    table
};

/// The `VM_*` flags userspace sees: bit `i` of `MMSCOPE_VMA_*` is `EXPORTED_VM_FLAGS[i]`.
const EXPORTED_VM_FLAGS: [usize; 24] = [
    bindings::VM_READ,
    bindings::VM_WRITE,
    bindings::VM_EXEC,
    bindings::VM_SHARED,
    bindings::VM_MAYREAD,
    bindings::VM_MAYWRITE,
    bindings::VM_MAYEXEC,
    bindings::VM_MAYSHARE,
    VM_GROWSDOWN,
    VM_LOCKED,
    bindings::VM_IO,
    bindings::VM_PFNMAP,
    bindings::VM_MIXEDMAP,
    bindings::VM_DONTCOPY,
    bindings::VM_DONTEXPAND,
    bindings::VM_ACCOUNT,
    bindings::VM_NORESERVE,
    bindings::VM_HUGETLB,
    bindings::VM_DONTDUMP,
    bindings::VM_WIPEONFORK,
    bindings::VM_HUGEPAGE,
    bindings::VM_NOHUGEPAGE,
    bindings::VM_MERGEABLE,
    bindings::VM_LOCKONFAULT,
];

/// Where a walk of the VMAs stopped.
pub(crate) struct Walk {
    /// The start of the first VMA not recorded, 0 if every VMA to the end was recorded. (No VMA
    /// starts at 0: `mmap_min_addr` keeps the first page unmapped.)
    pub(crate) next: usize,
    /// `map_count` at the time of the walk.
    pub(crate) map_count: u64,
}

/// Walks the VMAs of `mm` from the first one that ends above `start`, appending a record for
/// each to `out`, at most `limit`, without allocating.
pub(crate) fn collect_vmas(
    mm: &MmWithUser,
    start: usize,
    limit: usize,
    out: &mut KVec<MmscopeVma>,
    this_file: &File,
) -> Walk {
    let guard = mm.mmap_read_lock();
    // SAFETY: `mm` has users; `map_count` changes only under the mmap write lock.
    let map_count = unsafe { (*mm.as_raw()).__bindgen_anon_1.map_count }.max(0) as u64;
    // SAFETY: `guard` is the mmap read lock of `mm`.
    for (recorded, vma) in unsafe { VmaIter::new(&guard, mm, start) }.enumerate() {
        if recorded == limit || out.push_within_capacity(record(vma, this_file)).is_err() {
            return Walk {
                next: vma.start(),
                map_count,
            };
        }
    }
    Walk { next: 0, map_count }
}

/// The VMA that covers `addr`, or with `or_next` the first one above it.
///
/// A VMA that covers `addr` is read under its own VMA lock, as `PROCMAP_QUERY` does, so the
/// query does not contend with `mmap` and `munmap` elsewhere in the address space; only when
/// that fails (no VMA there, or it is being changed) is the mmap read lock taken.
pub(crate) fn query_vma(
    mm: &MmWithUser,
    addr: usize,
    or_next: bool,
    this_file: &File,
) -> Option<MmscopeVma> {
    if let Some(vma) = mm.lock_vma_under_rcu(addr) {
        return Some(record(&vma, this_file));
    }
    let guard = mm.mmap_read_lock();
    // SAFETY: `guard` is the mmap read lock of `mm`.
    let vma = unsafe { VmaIter::new(&guard, mm, addr) }.next()?;
    (or_next || vma.start() <= addr).then(|| record(vma, this_file))
}
