// SPDX-License-Identifier: GPL-2.0

//! Virtual memory area operations.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h).
//!
//! A driver that maps its own memory into userspace implements [`VmOperations`] for the data its
//! mappings share and calls [`install`] from its `mmap` file operation.
//!
//! # Lifetime of the data
//!
//! Every VMA that results, the first one and each copy the kernel makes of it when it splits,
//! forks or moves the mapping, owns one reference to that data through `vm_private_data`: the
//! table's `->open` takes it for a copy, its `->close` drops it. The data therefore lives exactly
//! as long as its longest-lived mapping (and whatever other references the driver keeps), with
//! no assumption about who else owns it.
//!
//! Borrowing the mapped file's private data instead, with no reference per VMA, would also be
//! sound (every VMA holds its file, and `remove_vma()` in `mm/vma.c` closes a VMA before it
//! drops that reference, so the file's `->release` comes after the last VMA), but only if the
//! borrow is known to be the whole object `->release` frees: an address check cannot tell it
//! from a part of it that is dropped earlier (a `Revocable` at offset 0, say), and the file
//! operations table that would prove it is private to `kernel::miscdevice`. Dropping `->close`
//! would not let the VMAs merge either: `VM_MIXEDMAP` is one of `VM_SPECIAL`'s flags, which
//! `vma_merge_new_range()` and `vma_merge_existing_range()` refuse.
//!
//! Besides `vm_ops->name` (read in `mm_ext.rs`), this file is the only place that touches
//! `struct vm_operations_struct`, and the only one that touches `struct vm_fault`.

use core::{
    ffi::c_void,
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::Deref,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    error::{
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    mm::virt::{
        self,
        VmaMixedMap,
        VmaNew,
        VmaRef, //
    },
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
    },
};

// The kernel's static inline page reference functions, compiled from `helpers.c`.
// Only pointers cross: the lint looks into the bindgen structs, and its verdict depends on the
// kernel configuration, so `expect` would not hold on every kernel.
#[allow(improper_ctypes)]
extern "C" {
    /// `get_page()`.
    fn mmscope_get_page(page: *mut bindings::page);
    /// `put_page()`.
    fn mmscope_put_page(page: *mut bindings::page);
}

/// What a fault handler did, turned into `vmf->page` and a `vm_fault_t` by the adapter.
///
/// A page handed to the kernel is a value of this type, so a handler hands over at most one
/// page, and never together with a return code that would make the kernel ignore it (and leak
/// its reference, as `VM_FAULT_NOPAGE` would: `do_read_fault()` returns early on it).
#[must_use]
pub(crate) enum VmFaultResult {
    /// Map this page at the faulting address: `vmf->page` with its reference, return 0.
    ///
    /// The kernel then does what it does for a page-cache page: it locks the page, maps it
    /// (or, on a write to a private mapping, a copy of it, written into the page it allocated
    /// for that before calling the handler, so the write needs no second fault), and unlocks
    /// it. The reference goes to the page table entry, which drops it when it is unmapped; a
    /// copy-on-write fault drops it once the copy is made. On a write to a shared mapping the
    /// kernel also marks the page dirty and updates the mapped file's times
    /// (`fault_dirty_shared_page()`), as for any file; pages mapped by the handler itself with
    /// [`insert_pages`] get neither.
    Page(SharedPage),
    /// `VM_FAULT_NOPAGE`: the handler mapped the faulting address itself (or another task did
    /// meanwhile); the access is retried.
    Mapped,
    /// `VM_FAULT_OOM`: memory could not be allocated.
    Oom,
    /// `VM_FAULT_SIGBUS`: the access is outside what the mapping can back; send `SIGBUS`.
    Sigbus,
}

/// A page fault being handled, a `struct vm_fault`.
///
/// # Invariants
///
/// The wrapped `struct vm_fault` is valid for the lifetime of the reference, and the VMA it names
/// is locked for reading (by the mmap read lock or its VMA lock) for that long.
#[repr(transparent)]
pub(crate) struct VmFault(Opaque<bindings::vm_fault>);

impl VmFault {
    /// Wraps a raw `struct vm_fault`.
    ///
    /// # Safety
    ///
    /// `vmf` must be valid for the duration of `'a`, and the VMA it names must be locked for
    /// reading (mmap read lock or VMA read lock) for that long, as in a `->fault` callback.
    unsafe fn from_raw<'a>(vmf: *mut bindings::vm_fault) -> &'a Self {
        // SAFETY: `VmFault` is a transparent wrapper of `struct vm_fault`, and the caller
        // guarantees that the pointer is valid for `'a`.
        unsafe { &*vmf.cast() }
    }

    /// The constant part of the fault description.
    fn info(&self) -> &bindings::vm_fault__bindgen_ty_1 {
        // SAFETY: By the type invariants the `struct vm_fault` is valid; the fields of its first
        // member are `const` in C and never change during the fault.
        unsafe { &(*self.0.get()).__bindgen_anon_1 }
    }

    /// The VMA the fault happened in.
    pub(crate) fn vma(&self) -> &VmaRef {
        // SAFETY: By the type invariants `vma` is valid and read-locked for the lifetime of
        // `self`.
        unsafe { VmaRef::from_raw(self.info().vma) }
    }

    /// The faulting address, rounded down to its page.
    pub(crate) fn address(&self) -> usize {
        self.info().address
    }

    /// The page offset of the faulting page in the mapped object (`vm_pgoff` included).
    pub(crate) fn pgoff(&self) -> usize {
        self.info().pgoff
    }

    /// Whether the access that faulted is a write.
    pub(crate) fn is_write(&self) -> bool {
        // SAFETY: By the type invariants the `struct vm_fault` is valid; the fault handler set
        // `flags` before calling us and does not change them while we run.
        let flags = unsafe { (*self.0.get()).flags };
        flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0
    }

    /// Whether this is a write to a private mapping: the kernel maps a private copy of the page
    /// the handler gives it, not that page.
    pub(crate) fn is_cow(&self) -> bool {
        self.is_write() && self.vma().flags() & virt::flags::SHARED == 0
    }
}

/// An order-0 page whose owners are counted by the page's own reference count, the count page
/// table entries hold theirs in.
///
/// Each `SharedPage` owns one reference: cloning is `get_page()`, dropping is `put_page()`, and
/// the last put frees the page (and uncharges its memory cgroup). A page can thus be held by a
/// driver and mapped by page tables without an allocation of its own for the count, and handed
/// to the kernel by giving it a reference. Both are the kernel's own inline functions, called
/// through `helpers.c`, so the reference count is changed with the checks and the `page_ref`
/// tracepoints every other user of the page gets.
///
/// # Invariants
///
/// `self.0` points to an order-0, non-compound page, and this value owns one reference to it.
pub(crate) struct SharedPage(NonNull<bindings::page>);

// SAFETY: A page reference may be taken, used and dropped on any thread.
unsafe impl Send for SharedPage {}

// SAFETY: `&SharedPage` only reads the page pointer or takes another reference, which is atomic.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Shares `page`, taking over the reference it owns.
    pub(crate) fn new(page: Page) -> Self {
        // `Page` frees its order-0 allocation with `__free_pages(page, 0)`, which for such a
        // page drops one reference, as `put_page()` does; the one it owns is ours from now on.
        let page = ManuallyDrop::new(page);
        // INVARIANT: `Page::alloc_page` allocates order-0, non-compound pages, and `page` owned
        // a reference to its page, which is not dropped.
        // SAFETY: The pointer of a `Page` is never null.
        Self(unsafe { NonNull::new_unchecked(page.as_ptr()) })
    }

    /// The `struct page`.
    fn as_ptr(&self) -> *mut bindings::page {
        self.0.as_ptr()
    }

    /// Gives up this value's reference without dropping it, for the kernel to own.
    fn into_raw(self) -> *mut bindings::page {
        ManuallyDrop::new(self).as_ptr()
    }
}

impl Clone for SharedPage {
    fn clone(&self) -> Self {
        // SAFETY: By the type invariants we own a reference, so the page is valid and its count
        // is not zero, which is what `get_page()` requires.
        unsafe { mmscope_get_page(self.as_ptr()) };
        // INVARIANT: The new value owns the reference just taken.
        Self(self.0)
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariants we own a reference to the page, given up here once.
        unsafe { mmscope_put_page(self.as_ptr()) };
    }
}

/// A [`SharedPage`] stored in a foreign container (such as an XArray), borrowed.
pub(crate) struct SharedPageRef<'a>(ManuallyDrop<SharedPage>, PhantomData<&'a SharedPage>);

impl Deref for SharedPageRef<'_> {
    type Target = SharedPage;

    fn deref(&self) -> &SharedPage {
        &self.0
    }
}

// SAFETY: `into_foreign` returns the page pointer, never null and aligned as a `struct page`;
// `from_foreign` and `borrow` turn it back into the value that owns the reference, or a borrow
// of it that never drops it.
unsafe impl ForeignOwnable for SharedPage {
    const FOREIGN_ALIGN: usize = core::mem::align_of::<bindings::page>();
    type Borrowed<'a> = SharedPageRef<'a>;
    type BorrowedMut<'a> = SharedPageRef<'a>;

    fn into_foreign(self) -> *mut c_void {
        self.into_raw().cast()
    }

    unsafe fn from_foreign(ptr: *mut c_void) -> Self {
        // SAFETY: The caller passes a pointer from `into_foreign`: a page pointer, not null,
        // whose reference is given back once.
        Self(unsafe { NonNull::new_unchecked(ptr.cast()) })
    }

    unsafe fn borrow<'a>(ptr: *mut c_void) -> SharedPageRef<'a> {
        // SAFETY: As in `from_foreign`; the reference stays with the foreign owner for `'a`, and
        // `ManuallyDrop` never drops it.
        SharedPageRef(
            ManuallyDrop::new(unsafe { Self::from_foreign(ptr) }),
            PhantomData,
        )
    }

    unsafe fn borrow_mut<'a>(ptr: *mut c_void) -> SharedPageRef<'a> {
        // SAFETY: The caller's guarantees are those of `borrow`.
        unsafe { Self::borrow(ptr) }
    }
}

/// `PMD_SIZE`: the range of addresses one page table (of PTEs) maps, aligned to it.
pub(crate) const PMD_SIZE: usize = 1 << bindings::PMD_SHIFT;

/// How many pages [`insert_pages`] hands to `vm_insert_pages()` at once.
const INSERT_BATCH: usize = 16;

/// Maps `pages` at consecutive addresses from `address` with `vm_insert_pages()`. Each mapping
/// takes a reference of its own.
///
/// The kernel walks to the page table once per page table it fills (allocating the levels that
/// are missing) and takes the page table lock once per 8 pages, rather than once per page as
/// `vm_insert_page()` does.
///
/// Returns how many pages were mapped, from the first, and the error that stopped the run, if
/// any: `EBUSY` when something is mapped at the next address already; `EFAULT` when the range
/// leaves the VMA, or when an upper page table level cannot be allocated; `ENOMEM` when the page
/// table itself cannot be allocated; `EINVAL` for a page that may not be mapped this way (an
/// anonymous or typed page, which a [`SharedPage`] from [`Page::alloc_page`] never is).
///
/// Context: may sleep (to allocate page tables); takes the page table lock, so the caller must
/// hold none.
pub(crate) fn insert_pages<'a>(
    vma: &VmaMixedMap,
    address: usize,
    pages: impl IntoIterator<Item = &'a SharedPage>,
) -> (usize, Result) {
    let mut pages = pages.into_iter().peekable();
    let mut mapped = 0;
    while pages.peek().is_some() {
        let mut batch = [core::ptr::null_mut::<bindings::page>(); INSERT_BATCH];
        let mut len = 0;
        for (slot, page) in batch.iter_mut().zip(pages.by_ref()) {
            *slot = page.as_ptr();
            len += 1;
        }
        let mut left = len;
        let (vma_ptr, at) = (vma.as_ptr(), address + mapped * PAGE_SIZE);
        // SAFETY: `VmaMixedMap` guarantees that the VMA is valid, locked for reading and has
        // `VM_MIXEDMAP`, which is what `vm_insert_pages()` asks of a caller outside `mmap`. The
        // first `len` entries of `batch` are pages the caller holds references to, alive for
        // the call; `left` is a valid in/out count.
        let ret = unsafe { bindings::vm_insert_pages(vma_ptr, at, batch.as_mut_ptr(), &mut left) };
        // On failure `left` counts the pages not mapped, from the one that failed.
        mapped += len - left;
        if let Err(e) = to_result(ret) {
            return (mapped, Err(e));
        }
    }
    (mapped, Ok(()))
}

/// The operations of the VMAs that map a driver's data, `struct vm_operations_struct`.
///
/// `Self` is the data the mappings share; each VMA holds an [`Arc<Self>`] in `vm_private_data`
/// (see the module documentation), and the callbacks borrow it.
///
/// The table's `->open` and `->close` manage those references and are not offered to
/// implementors: `->close` also runs from `exit_mmap()`, when the address space has no users
/// left, and on `munmap` after the mmap lock was downgraded to read
/// (`vms_complete_munmap_vmas()` in `mm/vma.c`), where a `&VmaRef` would promise more than is
/// true (`VmaRef::mm()` gives an `MmWithUser`, and says the mmap lock may be taken).
#[vtable]
pub(crate) trait VmOperations: Send + Sync + Sized + 'static {
    /// Handles a page fault: an access to a page of the VMA that no page table entry maps.
    ///
    /// Context: may sleep. The VMA is read-locked: by its VMA lock alone if
    /// [`FAULT_UNDER_VMA_LOCK`](Self::FAULT_UNDER_VMA_LOCK) is set (the mmap lock may then be
    /// held for writing by another task changing other VMAs of the address space), otherwise
    /// by the mmap read lock. The address space has users.
    fn fault(&self, _vmf: &VmFault) -> VmFaultResult {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Opt-in: [`fault`](Self::fault) runs under the VMA lock alone, as anonymous faults do.
    ///
    /// By default `vmf_can_call_fault()` (`mm/memory.c`) sends a fault taken under the VMA lock
    /// back with `VM_FAULT_RETRY`, to run again under the mmap read lock: every fault starts
    /// twice and waits for `mmap`, `munmap` and `mprotect` anywhere in the address space. The
    /// kernel's only sign that a driver's `->fault` is fit for the VMA lock is a `->map_pages`
    /// in the table (file systems set `filemap_map_pages()`), so this sets one that maps
    /// nothing: `->map_pages` runs under the RCU read lock, where a driver cannot map pages
    /// (the exported ways to do it allocate page tables, which sleeps). The price is that a
    /// read fault first goes through `do_fault_around()`, which calls it, before `->fault`.
    ///
    /// Set it only after this audit of the handler: it uses nothing but the VMA it is given
    /// (valid and stable under the VMA lock: its range, flags, `vm_pgoff` and `vm_file`), the
    /// driver's own data and locks, and page tables through [`insert_pages`] or the page it
    /// returns. It must not walk other VMAs, read `mm_struct` fields the mmap lock protects,
    /// or take the mmap lock (which would invert the lock order against a writer waiting for
    /// this VMA).
    const FAULT_UNDER_VMA_LOCK: bool = false;
}

/// Makes `T`'s operations the operations of a VMA being set up, with `data` as what it maps.
///
/// The VMA takes over `data`; it is dropped when the kernel closes the VMA. Call this last in the
/// `mmap` callback: once it is called, the callback must succeed, as the kernel does not close a
/// VMA whose `mmap` callback failed.
pub(crate) fn install<T: VmOperations>(vma: &VmaNew, data: Arc<T>) {
    let vma = vma.as_ptr();
    // INVARIANT: From here on `vm_private_data` owns a reference to an `Arc<T>` and `vm_ops` is
    // `T`'s table, whose `->close` drops that reference.
    // SAFETY: `VmaNew` guarantees that the VMA is undergoing setup in `f_op->mmap`, where the
    // driver may set `vm_ops` and `vm_private_data` and nothing else accesses them yet.
    unsafe {
        (*vma).vm_private_data = data.into_foreign();
        (*vma).vm_ops = VmOperationsVTable::<T>::build();
    }
}

/// The `struct vm_operations_struct` of `T`.
///
/// # Invariants
///
/// Every VMA whose `vm_ops` points to this table has a `vm_private_data` that owns a reference to
/// an `Arc<T>` (from [`ForeignOwnable::into_foreign`]).
struct VmOperationsVTable<T: VmOperations>(PhantomData<T>);

impl<T: VmOperations> VmOperationsVTable<T> {
    /// Borrows the data of one of our VMAs.
    ///
    /// # Safety
    ///
    /// `vma` must use this table, be valid for `'a`, and not be closed during `'a`.
    unsafe fn data<'a>(vma: *const bindings::vm_area_struct) -> ArcBorrow<'a, T> {
        // SAFETY: The caller guarantees that `vma` is valid.
        let private = unsafe { (*vma).vm_private_data };
        // SAFETY: By the type invariants `private` owns a reference to an `Arc<T>`, which the VMA
        // keeps until it is closed, after `'a`.
        unsafe { <Arc<T> as ForeignOwnable>::borrow(private) }
    }

    /// `->open`: a new VMA copied from one of ours (by a split, `fork` or `mremap`) takes a
    /// reference of its own.
    ///
    /// # Safety
    ///
    /// `vma` must be a new copy of a VMA that uses this table, not yet visible to other tasks,
    /// as in `->open`.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The copy has the `vm_private_data` of its source, whose reference stays valid
        // during this call: the source VMA is not closed while the kernel copies it (the mmap
        // write lock is held, or, for `fork`, the parent's mmap write lock).
        let data = unsafe { Self::data(vma) };
        let owned: Arc<T> = data.into();
        // SAFETY: The copy is not visible to other tasks yet, so we may write its private data.
        // INVARIANT: `vm_private_data` owns the new reference.
        unsafe { (*vma).vm_private_data = owned.into_foreign() };
    }

    /// `->close`: the VMA gives its reference back.
    ///
    /// Runs once per VMA, after its pages were unmapped: from `remove_vma()` on `munmap` (with
    /// the mmap lock downgraded to read, when the caller asked for that), from
    /// `vms_clean_up_area()` when `mmap(MAP_FIXED)` replaces the mapping (mmap write lock),
    /// from `exit_mmap()` (the address space has no users), from `tear_down_vmas()` when a
    /// `fork` fails after opening copies, and from `copy_vma()` when `mremap` cannot link the
    /// copy it opened. A closed VMA gets the kernel's dummy operations, so it is never closed
    /// twice.
    ///
    /// # Safety
    ///
    /// `vma` must use this table and be being removed, as in `->close`.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The VMA is valid during this call and is being removed: nothing else uses its
        // private data any more.
        let private = unsafe { (*vma).vm_private_data };
        // SAFETY: By the type invariants `private` owns a reference to an `Arc<T>`; the VMA gives
        // it up here, once, as `->close` is called once per VMA.
        drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(private) });
    }

    /// # Safety
    ///
    /// `vmf` must be a fault being handled in a VMA that uses this table, as in `->fault`.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The caller passes a valid fault whose VMA is read-locked during the callback.
        let vmf = unsafe { VmFault::from_raw(vmf) };
        // SAFETY: The VMA uses this table and cannot be closed while it is read-locked.
        let data = unsafe { Self::data(vmf.vma().as_ptr()) };
        match data.fault(vmf) {
            VmFaultResult::Page(page) => {
                // SAFETY: The fault is valid, and `page` is the field the kernel takes the
                // handler's page (and its reference) from when the handler returns 0.
                unsafe { (*vmf.0.get()).page = page.into_raw() };
                0
            }
            VmFaultResult::Mapped => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            VmFaultResult::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
            VmFaultResult::Sigbus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
        }
    }

    /// `->map_pages` for [`VmOperations::FAULT_UNDER_VMA_LOCK`]: maps nothing, so that the
    /// kernel goes on to `->fault`, where the pages are mapped.
    ///
    /// # Safety
    ///
    /// Called by the kernel as `->map_pages`.
    unsafe extern "C" fn map_no_pages(
        _vmf: *mut bindings::vm_fault,
        _start_pgoff: usize,
        _end_pgoff: usize,
    ) -> bindings::vm_fault_t {
        0
    }

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        // `->open` and `->close` manage the reference each VMA owns, so they are always set.
        open: Some(Self::open),
        close: Some(Self::close),
        fault: if T::HAS_FAULT {
            Some(Self::fault)
        } else {
            None
        },
        map_pages: if T::HAS_FAULT && T::FAULT_UNDER_VMA_LOCK {
            Some(Self::map_no_pages)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::vm_operations_struct {
        &Self::VTABLE
    }
}

/// Whether the VMA was advised `MADV_SEQUENTIAL` (`VM_SEQ_READ`): its pages will be accessed in
/// order.
pub(crate) fn is_sequential(vma: &VmaRef) -> bool {
    vma.flags() & (1 << bindings::VMA_SEQ_READ_BIT) != 0
}
