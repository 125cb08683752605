// SPDX-License-Identifier: GPL-2.0

//! Snapshots of an address space: the `mm_struct` summary and its VMAs, and who may take them.
//!
//! C headers: [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h),
//! [`include/linux/mm.h`](srctree/include/linux/mm.h); the naming rules follow
//! `get_vma_name()` in [`fs/proc/task_mmu.c`](srctree/fs/proc/task_mmu.c).
//!
//! Everything here reads under the mmap read lock (taken killably, as procfs does) straight into
//! the uapi records, and returns after dropping it: callers copy to userspace with no lock held.
//! Memory is bounded by the caller's record buffer. The raw accessors are in [`crate::mm_ext`],
//! the only way this file reaches the kernel's structures.

use crate::compat;
use crate::mm_ext::{
    self,
    HeapAndStack,
    MmExt,
    RssCounter,
    TaskExt,
    VmaExt,
    TMPFS_MAGIC,
    VM_GROWSDOWN,
    VM_LOCKED, //
};
use crate::uapi::{
    MmscopeMmSummary,
    MmscopeVma, //
};
use kernel::{
    fs::File,
    mm::virt::{
        flags,
        VmaRef, //
    },
    mm::MmWithUser,
    prelude::*,
    task::Task, //
};

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
/// Another process is allowed by [`may_read`]. Its address space is taken as `mm_access()`
/// takes it (see [`TaskExt::mm_access`]), so that the rule is applied to the image whose
/// address space is read.
///
/// Fails with `ESRCH` if there is no such process or it has no address space, `EACCES` if the
/// caller may not read it, and `EINTR` if a fatal signal arrived while waiting.
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
    let task = mm_ext::task_from_pid(nr)?;
    let mm = task.mm_access(may_read)?;
    f(&mm)
}

/// Whether the caller may read the address space of `task`: `__ptrace_may_access()` with the
/// same-user rule replaced by the tracer rule.
///
/// - A task of the caller's own thread group: always.
/// - Otherwise, if a thread of the caller's thread group traces it, or the caller has
///   `CAP_SYS_PTRACE` in its user namespace; and then only if the task is still dumpable
///   (`task_still_dumpable()`: no `execve` of a setuid or unreadable program, no change of
///   credentials, no `PR_SET_DUMPABLE` 0 made it non-dumpable), or the caller has
///   `CAP_SYS_PTRACE` in the user namespace of its `execve`.
///
/// The tracer rule stands in for the same-user rule of `ptrace_may_access()`, the rule of
/// `/proc/<pid>/maps`, which is not exported to modules. With the dumpability check it is what
/// `PTRACE_PEEKDATA` allows the tracer on every access (`ptracer_access_allowed()` in
/// `kernel/ptrace.c`), except that any thread of the tracer's thread group may ask, and that the
/// capability is the caller's current one rather than the one the tracer had when it attached.
/// It holds only while the tracer is attached, and only for the caller's own thread group, so a
/// process of the same user that procfs would show but that the caller does not trace is
/// refused. The LSM hook of `ptrace_may_access()` is not exported either: a tracer passed it to
/// attach (or, for `PTRACE_TRACEME`, its `ptrace_traceme` hook). The capabilities are checked
/// without an audit record, as for `/proc/<pid>/stat`: a missing capability is not a denial
/// here while the tracer rule may still allow, and a read that is refused fails with `EACCES`
/// for the caller to see.
fn may_read(task: &Task) -> bool {
    let me = kernel::current!().thread_group_id();
    if task.thread_group_id() == me {
        return true;
    }
    (task.tracer_tgid() == Some(me) || task.ptrace_has_cap_noaudit())
        && task.still_dumpable_noaudit()
}

/// Reads the summary of `mm`: its layout and `map_count` under its mmap read lock (and
/// `arg_lock`), then its counters. The request header fields are left zero.
pub(crate) fn summary(mm: &MmWithUser) -> Result<MmscopeMmSummary> {
    let (l, map_count, seq, vm) = {
        let lock = mm.mmap_read_lock_killable()?;
        (
            mm.layout(),
            lock.map_count(),
            lock.write_seq(),
            mm.vm_counters(),
        )
    };
    Ok(MmscopeMmSummary {
        start_code: l.start_code as u64,
        end_code: l.end_code as u64,
        start_data: l.start_data as u64,
        end_data: l.end_data as u64,
        start_brk: l.start_brk as u64,
        brk: l.brk as u64,
        start_stack: l.start_stack as u64,
        arg_start: l.arg_start as u64,
        arg_end: l.arg_end as u64,
        env_start: l.env_start as u64,
        env_end: l.env_end as u64,
        mmap_base: l.mmap_base as u64,
        task_size: l.task_size as u64,
        map_count: map_count as u64,
        total_vm: vm.total_vm as u64,
        locked_vm: vm.locked_vm as u64,
        pinned_vm: vm.pinned_vm.max(0) as u64,
        data_vm: vm.data_vm as u64,
        exec_vm: vm.exec_vm as u64,
        stack_vm: vm.stack_vm as u64,
        hiwater_rss: vm.hiwater_rss as u64,
        hiwater_vm: vm.hiwater_vm as u64,
        rss_anon: mm.rss_counter_sum(RssCounter::Anon),
        rss_file: mm.rss_counter_sum(RssCounter::File),
        rss_shmem: mm.rss_counter_sum(RssCounter::Shmem),
        // 0 stays "unknown": the count plus one, which is never 0.
        vma_seq: seq.map_or(0, |s| u64::from(s) + 1),
        ..Default::default()
    })
}

/// Reads one VMA into a record.
///
/// `heap_and_stack` gives its address space's heap and stack fields, read only for anonymous
/// memory; `this_file` is an open file of `/dev/mmscope`, to recognise mappings of the
/// device.
fn record(
    vma: &VmaRef,
    heap_and_stack: impl FnOnce() -> HeapAndStack,
    this_file: &File,
) -> MmscopeVma {
    let mut rec = MmscopeVma {
        start: vma.start() as u64,
        end: vma.end() as u64,
        pgoff: vma.pgoff() as u64,
        flags: export_flags(vma.flags()),
        ..Default::default()
    };
    let kind = if let Some(file) = vma.file() {
        let dev = file.s_dev();
        rec.inode = file.ino();
        rec.dev_major = dev >> MINORBITS;
        rec.dev_minor = dev & ((1 << MINORBITS) - 1);
        if file.same_fops(this_file) {
            VmaKind::Mmscope
        } else if file.s_magic() == TMPFS_MAGIC && file.nlink() == 0 {
            VmaKind::Shmem
        } else {
            VmaKind::File
        }
    } else if let Some(name) = vma.special_name() {
        match name.to_bytes() {
            b"[vdso]" => VmaKind::Vdso,
            b"[vvar]" | b"[vvar_vclock]" => VmaKind::Vvar,
            _ => VmaKind::Special,
        }
    } else {
        let fields = heap_and_stack();
        if is_initial_heap(vma, &fields) {
            VmaKind::Heap
        } else if is_initial_stack(vma, &fields) {
            VmaKind::Stack
        } else {
            VmaKind::Anon
        }
    };
    rec.kind = kind as u32;
    rec
}

/// `vma_is_initial_heap()`: the VMA overlaps `start_brk..brk`.
fn is_initial_heap(vma: &VmaRef, mm: &HeapAndStack) -> bool {
    vma.start() < mm.brk && vma.end() > mm.start_brk
}

/// `vma_is_initial_stack()`: the VMA holds `start_stack`.
fn is_initial_stack(vma: &VmaRef, mm: &HeapAndStack) -> bool {
    vma.start() <= mm.start_stack && vma.end() >= mm.start_stack
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
    flags::READ,
    flags::WRITE,
    flags::EXEC,
    flags::SHARED,
    flags::MAYREAD,
    flags::MAYWRITE,
    flags::MAYEXEC,
    compat::VM_MAYSHARE,
    VM_GROWSDOWN,
    VM_LOCKED,
    flags::IO,
    flags::PFNMAP,
    flags::MIXEDMAP,
    flags::DONTCOPY,
    flags::DONTEXPAND,
    flags::ACCOUNT,
    flags::NORESERVE,
    flags::HUGETLB,
    flags::DONTDUMP,
    flags::WIPEONFORK,
    flags::HUGEPAGE,
    flags::NOHUGEPAGE,
    flags::MERGEABLE,
    flags::LOCKONFAULT,
];

/// Where a walk of the VMAs stopped.
pub(crate) struct Walk {
    /// Where the next walk starts: an address in the first VMA not recorded (its last byte,
    /// which is never 0, even for a VMA at address 0 when `vm.mmap_min_addr` is 0), or `None`
    /// if every VMA to the end was recorded.
    pub(crate) next: Option<usize>,
    /// `map_count` at the time of the walk.
    pub(crate) map_count: u64,
}

/// Walks the VMAs of `mm` from the first one that ends above `start`, appending a record for
/// each to `out`, at most `limit`, without allocating.
///
/// Fails with `EINTR` if a fatal signal arrived while waiting for the mmap lock.
pub(crate) fn collect_vmas(
    mm: &MmWithUser,
    start: usize,
    limit: usize,
    out: &mut KVec<MmscopeVma>,
    this_file: &File,
) -> Result<Walk> {
    let lock = mm.mmap_read_lock_killable()?;
    let fields = mm.heap_and_stack();
    let map_count = lock.map_count() as u64;
    for (recorded, vma) in lock.vmas_from(start).enumerate() {
        if recorded == limit
            || out
                .push_within_capacity(record(vma, || fields, this_file))
                .is_err()
        {
            return Ok(Walk {
                // The walk goes on from the first VMA that ends above `next`: this one.
                next: Some(vma.end() - 1),
                map_count,
            });
        }
    }
    Ok(Walk {
        next: None,
        map_count,
    })
}

/// The VMA that covers `addr`, or with `or_next` the first one above it.
///
/// A VMA that covers `addr` is read under its own VMA lock, as `PROCMAP_QUERY` does, so the
/// query does not contend with `mmap` and `munmap` elsewhere in the address space; only when
/// that fails (no VMA there, or it is being changed) is the mmap read lock taken.
///
/// Fails with `ENOENT` if there is no such VMA, and `EINTR` if a fatal signal arrived while
/// waiting for the mmap lock.
pub(crate) fn query_vma(
    mm: &MmWithUser,
    addr: usize,
    or_next: bool,
    this_file: &File,
) -> Result<MmscopeVma> {
    if let Some(vma) = mm.lock_vma_under_rcu(addr) {
        return Ok(record(&vma, || mm.heap_and_stack(), this_file));
    }
    let lock = mm.mmap_read_lock_killable()?;
    let vma = lock.vmas_from(addr).next().ok_or(ENOENT)?;
    if !or_next && vma.start() > addr {
        return Err(ENOENT);
    }
    Ok(record(vma, || mm.heap_and_stack(), this_file))
}
