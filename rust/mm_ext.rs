// SPDX-License-Identifier: GPL-2.0

//! The raw side of the address-space walk: safe accessors on the kernel crate's types, named
//! after the C they wrap.
//!
//! C headers: [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h),
//! [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/mmap_lock.h`](srctree/include/linux/mmap_lock.h),
//! [`include/linux/ptrace.h`](srctree/include/linux/ptrace.h),
//! [`include/linux/sched/signal.h`](srctree/include/linux/sched/signal.h).
//!
//! - [`VmaExt`] on `VmaRef`: `vm_pgoff`, `vm_file` ([`VmaFile`]: inode number, device,
//!   superblock magic, link count, file operations) and `vm_ops->name`.
//! - [`MmExt`] on `MmWithUser`: the killable mmap read lock ([`MmapReadLock`], with `map_count`
//!   and a VMA iterator, [`VmaIter`]), the layout under `arg_lock` ([`Layout`]), the VM counters
//!   ([`VmCounters`]) and the RSS counters (`get_mm_counter_sum()`).
//! - [`TaskExt`] on `Task`: the tracer (`ptrace_parent()`), `CAP_SYS_PTRACE` in the task's user
//!   namespace, and its address space with `mm_access()`'s locking; [`task_from_pid`].
//!
//! - [`USERS`], the module-wide lock of the users' charges of `lazy_mem.rs` (a `global_lock!`,
//!   whose initialisation is `unsafe`), and [`init_users_lock`].
//!
//! Besides `vm_ops.rs` (and `compat.rs`, the shims for older kernels), this is the only file of
//! the module with `unsafe` code.

use core::{
    ffi::c_int,
    marker::PhantomData,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    fs::File,
    mm::{
        virt::VmaRef,
        MmWithUser, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            atomic_load,
            Atomic,
            Relaxed, //
        },
        rcu,
    },
    task::{
        Pid,
        Task, //
    },
    types::NotThreadSafe,
};

// The kernel's static inline functions, compiled from `helpers.c`.
// Only pointers cross: the lint looks into the bindgen structs, and its verdict depends on the
// kernel configuration, so `expect` would not hold on every kernel.
#[allow(improper_ctypes)]
extern "C" {
    /// `mmap_read_lock_killable()`.
    fn mmscope_mmap_read_lock_killable(mm: *mut bindings::mm_struct) -> c_int;
    /// `get_mm_counter_sum()`.
    fn mmscope_get_mm_counter_sum(mm: *mut bindings::mm_struct, member: c_int) -> usize;
    /// `ptrace_parent()`; the caller holds the RCU read lock.
    fn mmscope_ptrace_parent(task: *mut bindings::task_struct) -> *mut bindings::task_struct;
    /// `ns_capable_noaudit(__task_cred(task)->user_ns, CAP_SYS_PTRACE)`.
    fn mmscope_ptrace_has_cap_noaudit(task: *mut bindings::task_struct) -> bool;
    /// `task_still_dumpable(task, PTRACE_MODE_NOAUDIT)` after `smp_rmb()`.
    fn mmscope_task_still_dumpable_noaudit(task: *mut bindings::task_struct) -> bool;
}

/// `VM_GROWSDOWN`.
pub(crate) const VM_GROWSDOWN: usize = 1 << bindings::VMA_GROWSDOWN_BIT;
/// `VM_LOCKED`.
pub(crate) const VM_LOCKED: usize = 1 << bindings::VMA_LOCKED_BIT;

/// Reads a word of a kernel structure that other CPUs may be writing, as `READ_ONCE()` does.
///
/// # Safety
///
/// `ptr` must be valid and aligned, and every concurrent write to it a single aligned store of
/// the whole word: `WRITE_ONCE()`, or a plain C store of an aligned `unsigned long`. The latter
/// is wider than `atomic_load()`'s contract (concurrent stores atomic); it rests on what the
/// kernel assumes of such stores everywhere it reads these fields locklessly (procfs reads them
/// with plain loads, and KCSAN treats aligned plain writes up to word size as atomic,
/// `CONFIG_KCSAN_ASSUME_PLAIN_WRITES_ATOMIC`).
unsafe fn read_once(ptr: *const usize) -> usize {
    // SAFETY: The caller guarantees the pointer and that concurrent stores are atomic.
    unsafe { atomic_load(ptr.cast_mut(), Relaxed) }
}

/// Accessors on a VMA the caller has read-locked (by the mmap read lock or its VMA lock).
pub(crate) trait VmaExt {
    /// `vm_pgoff`: the offset of the VMA's first page in the object it maps (for anonymous
    /// memory, the kernel's own index).
    fn pgoff(&self) -> usize;

    /// `vm_file`: the file the VMA maps, if any.
    fn file(&self) -> Option<VmaFile<'_>>;

    /// `vm_ops->name(vma)`: the name a special mapping's operations give it, as `[vdso]`.
    fn special_name(&self) -> Option<&CStr>;
}

impl VmaExt for VmaRef {
    fn pgoff(&self) -> usize {
        // SAFETY: `VmaRef` guarantees the VMA is valid and read-locked; `vm_pgoff` is written
        // only under the mmap write lock with the VMA write-locked.
        unsafe { (*self.as_ptr()).vm_pgoff }
    }

    fn file(&self) -> Option<VmaFile<'_>> {
        // SAFETY: As above: `vm_file` is stable while the VMA is read-locked.
        let file = NonNull::new(unsafe { (*self.as_ptr()).vm_file })?;
        // INVARIANT: The VMA holds a reference to its file, and keeps it while it is read-locked,
        // for the lifetime of `&self`.
        Some(VmaFile(file, PhantomData))
    }

    fn special_name(&self) -> Option<&CStr> {
        let raw = self.as_ptr();
        // SAFETY: The VMA is valid and read-locked, so `vm_ops` is stable and, if set, points to
        // an operations table that outlives the VMA.
        let name_fn = unsafe { (*raw).vm_ops.as_ref()?.name? };
        // SAFETY: `->name` may be called on a VMA read-locked by either lock: `/proc/<pid>/maps`
        // calls it under the mmap read lock and `PROCMAP_QUERY` under the VMA lock
        // (`get_vma_name()` in `fs/proc/task_mmu.c`).
        let name = unsafe { name_fn(raw) };
        if name.is_null() {
            return None;
        }
        // SAFETY: `->name` returns a NUL-terminated string that lives as long as the mapping.
        Some(unsafe { CStr::from_char_ptr(name) })
    }
}

/// The file a VMA maps, borrowed from the read-locked VMA.
///
/// # Invariants
///
/// `self.0` is a file the VMA holds a reference to, for `'a`.
pub(crate) struct VmaFile<'a>(NonNull<bindings::file>, PhantomData<&'a VmaRef>);

// The inode and the superblock are read through raw places, never through a reference: other
// CPUs write other fields of both all the time (the inode's times and counts, its mapping's tree,
// the superblock's counts), while the fields read here are set before the file could be opened
// and never change (`i_ino`, `i_sb`, `s_dev`, `s_magic`) or are read as `READ_ONCE()`
// (`i_nlink`).
impl VmaFile<'_> {
    /// `f_inode`.
    fn inode(&self) -> *mut bindings::inode {
        // SAFETY: By the type invariants the file is valid; `f_inode` is set at open and never
        // changes, and the file holds a reference to its inode.
        unsafe { (*self.0.as_ptr()).f_inode }
    }

    /// `f_inode->i_sb`.
    fn sb(&self) -> *mut bindings::super_block {
        // SAFETY: The inode is valid (see `inode`); `i_sb` is set when the inode is created and
        // never changes, and an inode in use pins its superblock.
        unsafe { (*self.inode()).i_sb }
    }

    /// `i_ino`: the inode number.
    pub(crate) fn ino(&self) -> u64 {
        // SAFETY: The inode is valid; `i_ino` is set before the inode is used and never changes.
        unsafe { (*self.inode()).i_ino }
    }

    /// `i_sb->s_dev`: the device of the file system, in the kernel's internal encoding.
    pub(crate) fn s_dev(&self) -> u32 {
        // SAFETY: The superblock is valid (see `sb`); `s_dev` is set when it is set up and never
        // changes after.
        unsafe { (*self.sb()).s_dev }
    }

    /// `i_sb->s_magic`: the file system's magic number.
    pub(crate) fn s_magic(&self) -> usize {
        // SAFETY: As for `s_dev`: set by the file system's `fill_super` and never changed.
        unsafe { (*self.sb()).s_magic }
    }

    /// `i_nlink`: the inode's link count (0 for an unlinked file, such as a memfd).
    pub(crate) fn nlink(&self) -> u32 {
        let inode = self.inode();
        // SAFETY: The inode is valid; `i_nlink` is the active member of its union, and is changed
        // by link and unlink with single word stores (`set_nlink()` and friends), so it is read
        // as `READ_ONCE()` would, as `generic_fillattr()` reads it without the inode lock.
        unsafe { atomic_load(&raw mut (*inode).__bindgen_anon_1.i_nlink, Relaxed) }
    }

    /// Whether this file has the same file operations as `other`: a file of the same driver.
    pub(crate) fn same_fops(&self, other: &File) -> bool {
        // SAFETY: Both files are valid (by the type invariants, and as `&File`); `f_op` is set at
        // open and never changes after that.
        unsafe { (*self.0.as_ptr()).f_op == (*other.as_ptr()).f_op }
    }
}

/// Accessors on an address space with users.
pub(crate) trait MmExt {
    /// `mmap_read_lock_killable()`: takes the mmap read lock, unless a fatal signal arrives
    /// first (`EINTR`), as procfs does for another process's address space.
    fn mmap_read_lock_killable(&self) -> Result<MmapReadLock<'_>>;

    /// The layout fields, read under `arg_lock`.
    ///
    /// Who writes them: `prctl(PR_SET_MM)` all of them under the mmap read lock and `arg_lock`;
    /// `brk()` `brk` under the mmap write lock; and `execve`, in the task that execs, after it
    /// has switched to the new address space and dropped `exec_update_lock`, with neither lock
    /// (`setup_arg_pages()`, `load_elf_binary()`, `create_elf_tables()`). So with the mmap read
    /// lock held the result is one consistent snapshot, and consistent with the VMAs, except
    /// while the address space is still being built by an `execve`; with only a VMA lock held
    /// each field is a value it had, but `brk` may be older or newer than the rest.
    fn layout(&self) -> Layout;

    /// `start_brk`, `brk` and `start_stack`, read under `arg_lock` as [`layout`](Self::layout)
    /// reads them: what `vma_is_initial_heap()` and `vma_is_initial_stack()` look at.
    fn heap_and_stack(&self) -> HeapAndStack;

    /// The VM counters, each read once.
    ///
    /// These are not a snapshot, even under the mmap read lock: `munmap` lowers `total_vm`,
    /// `data_vm`, `exec_vm` and `stack_vm` (and raises `hiwater_vm`) after downgrading the mmap
    /// lock to read (`vms_complete_munmap_vmas()` in `mm/vma.c`), when its VMAs are gone
    /// already; `pinned_vm` and `hiwater_rss` change without the mmap lock.
    fn vm_counters(&self) -> VmCounters;

    /// `get_mm_counter_sum()`: a resident set counter, summed over the CPUs as
    /// `/proc/<pid>/status` does.
    fn rss_counter_sum(&self, member: RssCounter) -> u64;
}

/// The resident set counters of an address space (`MM_FILEPAGES`, ...).
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum RssCounter {
    /// `MM_FILEPAGES`: pages of files.
    File = bindings::MM_FILEPAGES,
    /// `MM_ANONPAGES`: anonymous pages.
    Anon = bindings::MM_ANONPAGES,
    /// `MM_SHMEMPAGES`: shared memory pages.
    Shmem = bindings::MM_SHMEMPAGES,
}

/// `TMPFS_MAGIC`, the superblock magic of tmpfs (and of shared anonymous memory and memfds).
pub(crate) const TMPFS_MAGIC: usize = bindings::TMPFS_MAGIC as usize;

/// The layout of an address space: `mm_struct`'s code, data, heap, stack, argument and
/// environment fields, and where `mmap` places mappings.
#[derive(Clone, Copy, Default)]
pub(crate) struct Layout {
    pub(crate) start_code: usize,
    pub(crate) end_code: usize,
    pub(crate) start_data: usize,
    pub(crate) end_data: usize,
    pub(crate) start_brk: usize,
    pub(crate) brk: usize,
    pub(crate) start_stack: usize,
    pub(crate) arg_start: usize,
    pub(crate) arg_end: usize,
    pub(crate) env_start: usize,
    pub(crate) env_end: usize,
    pub(crate) mmap_base: usize,
    pub(crate) task_size: usize,
}

/// The fields that tell the initial heap and stack of an address space.
#[derive(Clone, Copy, Default)]
pub(crate) struct HeapAndStack {
    pub(crate) start_brk: usize,
    pub(crate) brk: usize,
    pub(crate) start_stack: usize,
}

/// The VM counters of an address space, in pages.
#[derive(Clone, Copy, Default)]
pub(crate) struct VmCounters {
    pub(crate) total_vm: usize,
    pub(crate) locked_vm: usize,
    pub(crate) pinned_vm: i64,
    pub(crate) data_vm: usize,
    pub(crate) exec_vm: usize,
    pub(crate) stack_vm: usize,
    pub(crate) hiwater_rss: usize,
    pub(crate) hiwater_vm: usize,
}

impl MmExt for MmWithUser {
    fn mmap_read_lock_killable(&self) -> Result<MmapReadLock<'_>> {
        // SAFETY: `self` has users, so it is a valid `mm_struct`.
        let ret = unsafe { mmscope_mmap_read_lock_killable(self.as_raw()) };
        if ret != 0 {
            return Err(EINTR);
        }
        // INVARIANT: We just took the read lock.
        Ok(MmapReadLock {
            mm: self,
            _nts: NotThreadSafe,
        })
    }

    fn layout(&self) -> Layout {
        read_under_arg_lock(self, |f| {
            // SAFETY: `f` is valid for the call, and every concurrent store to these fields is a
            // plain store of an aligned word (see `read_under_arg_lock`); `mmap_base` and
            // `task_size` are set at `execve` before the address space can be reached by another
            // task.
            unsafe {
                Layout {
                    start_code: read_once(&raw const (*f).start_code),
                    end_code: read_once(&raw const (*f).end_code),
                    start_data: read_once(&raw const (*f).start_data),
                    end_data: read_once(&raw const (*f).end_data),
                    start_brk: read_once(&raw const (*f).start_brk),
                    brk: read_once(&raw const (*f).brk),
                    start_stack: read_once(&raw const (*f).start_stack),
                    arg_start: read_once(&raw const (*f).arg_start),
                    arg_end: read_once(&raw const (*f).arg_end),
                    env_start: read_once(&raw const (*f).env_start),
                    env_end: read_once(&raw const (*f).env_end),
                    mmap_base: read_once(&raw const (*f).mmap_base),
                    task_size: read_once(&raw const (*f).task_size),
                }
            }
        })
    }

    fn heap_and_stack(&self) -> HeapAndStack {
        read_under_arg_lock(self, |f| {
            // SAFETY: As in `layout`: `f` is valid for the call, and every concurrent store to
            // these fields is a plain store of an aligned word.
            unsafe {
                HeapAndStack {
                    start_brk: read_once(&raw const (*f).start_brk),
                    brk: read_once(&raw const (*f).brk),
                    start_stack: read_once(&raw const (*f).start_stack),
                }
            }
        })
    }

    fn vm_counters(&self) -> VmCounters {
        let m = self.as_raw();
        // SAFETY: `self` has users, so it is valid. The `*_vm` and `hiwater_*` fields are
        // written with single word stores (`WRITE_ONCE()` for `total_vm`, plain stores of an
        // aligned `unsigned long` for the rest), some of them while we may hold only the mmap
        // read lock (see the trait); `pinned_vm` is an `atomic64_t`, read as `atomic64_read()`.
        unsafe {
            let f = &raw const (*m).__bindgen_anon_1;
            VmCounters {
                total_vm: read_once(&raw const (*f).total_vm),
                locked_vm: read_once(&raw const (*f).locked_vm),
                pinned_vm: atomic_load((&raw const (*f).pinned_vm.counter).cast_mut(), Relaxed),
                data_vm: read_once(&raw const (*f).data_vm),
                exec_vm: read_once(&raw const (*f).exec_vm),
                stack_vm: read_once(&raw const (*f).stack_vm),
                hiwater_rss: read_once(&raw const (*f).hiwater_rss),
                hiwater_vm: read_once(&raw const (*f).hiwater_vm),
            }
        }
    }

    fn rss_counter_sum(&self, member: RssCounter) -> u64 {
        // SAFETY: `self` has users, so it is valid, and `member` is one of its counters.
        unsafe { mmscope_get_mm_counter_sum(self.as_raw(), member as c_int) as u64 }
    }
}

/// The fields of `mm` (its `mm_struct`'s anonymous part), for `read` to read under `arg_lock`.
///
/// `read` gets a pointer valid for the call. Under `arg_lock`, the writers of the layout fields
/// left are `brk()` (`brk`) and an `execve` building this address space (see
/// [`MmExt::layout`]), all with plain stores of aligned words: `read` reads them with
/// [`read_once`].
fn read_under_arg_lock<R>(
    mm: &MmWithUser,
    read: impl FnOnce(*const bindings::mm_struct__bindgen_ty_1) -> R,
) -> R {
    let m = mm.as_raw();
    // SAFETY: `mm` has users, so it is valid; `arg_lock` is its spinlock.
    unsafe { bindings::spin_lock(&raw mut (*m).__bindgen_anon_1.arg_lock) };
    // SAFETY: `m` is valid; this only takes the address of its fields.
    let value = read(unsafe { &raw const (*m).__bindgen_anon_1 });
    // SAFETY: We took the lock above.
    unsafe { bindings::spin_unlock(&raw mut (*m).__bindgen_anon_1.arg_lock) };
    value
}

/// A hold of an address space's mmap read lock, taken by [`MmExt::mmap_read_lock_killable`].
///
/// # Invariants
///
/// The mmap read lock of `mm` is held by this thread for the lifetime of the value.
pub(crate) struct MmapReadLock<'a> {
    mm: &'a MmWithUser,
    /// `mmap_read_unlock()` must run on the thread that took the lock.
    _nts: NotThreadSafe,
}

impl MmapReadLock<'_> {
    /// `map_count`: the number of VMAs.
    pub(crate) fn map_count(&self) -> usize {
        // SAFETY: The `mm` is valid, and `map_count` changes only under the mmap write lock,
        // which cannot be held while we hold the read lock.
        let count = unsafe { (*self.mm.as_raw()).__bindgen_anon_1.map_count };
        count.max(0) as usize
    }

    /// The mmap lock's write sequence, `mm->mm_lock_seq`: advanced as each holder of the write
    /// lock takes it and as it lets it go (`mm_lock_seqcount_begin()` and `_end()`), so the
    /// same value in two readings under the read lock means no writer came in between. `None`
    /// without `CONFIG_PER_VMA_LOCK`, where the kernel keeps no such count.
    pub(crate) fn write_seq(&self) -> Option<u32> {
        #[cfg(CONFIG_PER_VMA_LOCK)]
        {
            // SAFETY: The `mm` is valid, and `mm_lock_seq` is written only by the holder of
            // the mmap write lock, which cannot be held while we hold the read lock: a plain
            // read of a value no CPU is writing, as `__vma_raw_mm_seqnum()` reads it under
            // the write lock.
            let seq = unsafe { (*self.mm.as_raw()).__bindgen_anon_1.mm_lock_seq.sequence };
            Some(seq)
        }
        #[cfg(not(CONFIG_PER_VMA_LOCK))]
        {
            None
        }
    }

    /// The VMAs in address order, from the first one that ends above `addr`: `VMA_ITERATOR()`
    /// and `for_each_vma()` in C.
    pub(crate) fn vmas_from(&self, addr: usize) -> VmaIter<'_> {
        // SAFETY: The `mm` is valid; this only takes the address of its VMA tree.
        let tree = unsafe { &raw mut (*self.mm.as_raw()).__bindgen_anon_1.mm_mt };
        // INVARIANT: The state `MA_STATE(mas, tree, addr, addr)` makes, field by field (the C
        // initialiser zeroes the fields it does not name, as `..zeroed()` does here), of a walk
        // of the tree of an `mm` whose mmap read lock `self` holds.
        VmaIter {
            mas: bindings::ma_state {
                tree,
                index: addr,
                last: addr,
                node: core::ptr::null_mut(),
                status: bindings::maple_status_ma_start,
                min: 0,
                max: usize::MAX,
                sheaf: core::ptr::null_mut(),
                alloc: core::ptr::null_mut(),
                node_request: 0,
                mas_flags: 0,
                store_type: bindings::store_type_wr_invalid,
                ..pin_init::zeroed()
            },
            _lock: PhantomData,
        }
    }
}

impl Drop for MmapReadLock<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants this thread holds the read lock.
        unsafe { bindings::mmap_read_unlock(self.mm.as_raw()) };
    }
}

/// The VMAs of an address space in address order. Each step continues from where the last one
/// ended in the VMA tree, rather than searching it from the root as `find_vma()` does.
///
/// # Invariants
///
/// `mas` walks the VMA tree of an `mm` whose mmap read lock is held for `'a`.
pub(crate) struct VmaIter<'a> {
    mas: bindings::ma_state,
    _lock: PhantomData<&'a MmapReadLock<'a>>,
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

/// The task with process id `nr` in the caller's pid namespace: `find_get_pid()` and
/// `get_pid_task()`. Fails with `ESRCH` if there is none.
pub(crate) fn task_from_pid(nr: i32) -> Result<ARef<Task>> {
    // SAFETY: `find_get_pid` has no preconditions; it returns a counted reference or NULL.
    let pid = unsafe { bindings::find_get_pid(nr) };
    if pid.is_null() {
        return Err(ESRCH);
    }
    // SAFETY: `pid` is a valid counted reference, dropped right after.
    let task = unsafe { bindings::get_pid_task(pid, bindings::pid_type_PIDTYPE_PID) };
    // SAFETY: We own the reference `find_get_pid` returned.
    unsafe { bindings::put_pid(pid) };
    let task = NonNull::new(task).ok_or(ESRCH)?;
    // SAFETY: `get_pid_task` took a reference to the task, which `ARef` now owns; `Task` is a
    // transparent wrapper of `task_struct`.
    Ok(unsafe { ARef::from_raw(task.cast::<Task>()) })
}

/// Accessors on a task.
pub(crate) trait TaskExt {
    /// `tgid`: the id of the task's thread group, in the initial pid namespace.
    fn thread_group_id(&self) -> Pid;

    /// The thread group id of the task tracing this one now, as `ptrace_parent()` tells.
    fn tracer_tgid(&self) -> Option<Pid>;

    /// Whether the caller has `CAP_SYS_PTRACE` in this task's user namespace: the capability
    /// rule of `ptrace_may_access()`, checked without an audit record when it is missing.
    fn ptrace_has_cap_noaudit(&self) -> bool;

    /// `task_still_dumpable()`: whether the task may be inspected by a task of its owner
    /// (nothing made it non-dumpable: an `execve` of a setuid or unreadable program, a change of
    /// credentials, `PR_SET_DUMPABLE` 0), or the caller has `CAP_SYS_PTRACE` in the user
    /// namespace of its `execve`. Read after the checks made before it (`smp_rmb()`, as in
    /// `__ptrace_may_access()`); checked without an audit record.
    fn still_dumpable_noaudit(&self) -> bool;

    /// The task's address space, if `may_read` allows it: `mm_access()`.
    ///
    /// Holds the task's `exec_update_lock` for reading across `get_task_mm()` and
    /// `may_read`, so that the permission is decided for the image whose address space is
    /// returned: an `execve` cannot replace it in between (`begin_new_exec()` takes the lock
    /// for writing to switch address spaces and credentials).
    ///
    /// Fails with `EINTR` if a fatal signal arrives while waiting for the lock, `ESRCH` if the
    /// task has no address space (it exited, or is a kernel thread) and `EACCES` if `may_read`
    /// refuses.
    fn mm_access(&self, may_read: impl FnOnce(&Task) -> bool) -> Result<ARef<MmWithUser>>;
}

impl TaskExt for Task {
    fn thread_group_id(&self) -> Pid {
        // SAFETY: The task is valid (`&Task`); `tgid` is set at fork and never changes.
        unsafe { (*self.as_ptr()).tgid }
    }

    fn tracer_tgid(&self) -> Option<Pid> {
        let _rcu = rcu::read_lock();
        // SAFETY: The task is valid (`&Task`), and the RCU read lock is held, as
        // `ptrace_parent()` requires: `ptrace` and `parent` are written under the write
        // `tasklist_lock` (which is not exported), and read there with RCU.
        let tracer = unsafe { mmscope_ptrace_parent(self.as_ptr()) };
        if tracer.is_null() {
            return None;
        }
        // SAFETY: Tasks are freed only after an RCU grace period, so the tracer stays valid
        // while the RCU read lock is held; `tgid` is set at fork and never changes.
        Some(unsafe { (*tracer).tgid })
    }

    fn ptrace_has_cap_noaudit(&self) -> bool {
        // SAFETY: The task is valid (`&Task`); the helper reads its credentials under RCU.
        unsafe { mmscope_ptrace_has_cap_noaudit(self.as_ptr()) }
    }

    fn still_dumpable_noaudit(&self) -> bool {
        // SAFETY: The task is valid (`&Task`); the helper reads its `exec_state` under RCU.
        unsafe { mmscope_task_still_dumpable_noaudit(self.as_ptr()) }
    }

    fn mm_access(&self, may_read: impl FnOnce(&Task) -> bool) -> Result<ARef<MmWithUser>> {
        let task = self.as_ptr();
        // SAFETY: The task is valid, and so is its `signal`, which lives as long as the task.
        let lock = unsafe { &raw mut (*(*task).signal).exec_update_lock };
        // SAFETY: `lock` is a valid, initialised `rw_semaphore`.
        if unsafe { bindings::down_read_killable(lock) } != 0 {
            return Err(EINTR);
        }
        // SAFETY: The task is valid; `get_task_mm` returns a counted `mm_users` reference or
        // NULL.
        let mm = NonNull::new(unsafe { bindings::get_task_mm(task) }).map(|mm| {
            // SAFETY: `get_task_mm` took an `mm_users` reference, which `ARef` now owns (its drop
            // is `mmput()`); `MmWithUser` is a transparent wrapper of `mm_struct`.
            unsafe { ARef::from_raw(mm.cast::<MmWithUser>()) }
        });
        let res = match mm {
            None => Err(ESRCH),
            Some(mm) if may_read(self) => Ok(mm),
            Some(refused) => {
                drop(refused);
                Err(EACCES)
            }
        };
        // SAFETY: We took the read lock above. (A refused `mm` was dropped in its match arm,
        // before this, as `mm_access()` does its `mmput()`; `mmput()` does not take the lock.)
        unsafe { bindings::up_read(lock) };
        res
    }
}

kernel::sync::global_lock! {
    // SAFETY: The module's `init` calls `init_users_lock()` before it registers the device; the
    // lock is taken only when an object of the device is created or dropped, so never before.
    /// The users who hold memory objects and their charges ([`crate::lazy_mem::UserCharge`]).
    pub(crate) unsafe(uninit) static USERS: Mutex<crate::lazy_mem::Users> =
        crate::lazy_mem::Users::new();
}

/// Initialises [`USERS`]; only the first call does anything.
///
/// Called by the module's `init` before it registers the device.
pub(crate) fn init_users_lock() {
    /// Whether [`USERS`] is initialised.
    static DONE: Atomic<bool> = Atomic::new(false);
    if DONE.xchg(true, Relaxed) {
        return;
    }
    // SAFETY: `DONE` lets only the first call of this function through, so this is the only
    // initialisation of the lock.
    unsafe { USERS.init() };
}
