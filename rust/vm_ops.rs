// SPDX-License-Identifier: GPL-2.0

//! Virtual memory area operations.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h).
//!
//! A driver that maps its own memory into userspace implements [`VmOperations`] for the data its
//! mappings share and calls [`install`] from its `mmap` file operation. Every VMA that results,
//! the first one and each copy the kernel makes of it when it splits, forks or moves the mapping,
//! owns one reference to that data through `vm_private_data`; the reference is dropped when the
//! kernel closes the VMA. The data therefore lives exactly as long as its longest-lived mapping
//! (and whatever other references the driver keeps).
//!
//! This file is the only place that touches `struct vm_operations_struct` and `struct vm_fault`
//! directly.

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
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        ArcBorrow, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
    },
};

/// The outcome of a fault handler, a `vm_fault_t`.
///
/// A handler that hands a page to the kernel returns the value [`VmFault::map_page`] gives; that
/// is the only way to make the zero that tells the kernel to map `vmf->page`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) struct VmFaultReason(bindings::vm_fault_t);

impl VmFaultReason {
    /// `VM_FAULT_NOPAGE`: the handler mapped the page itself; the access is retried.
    pub(crate) const NOPAGE: Self = Self(bindings::vm_fault_reason_VM_FAULT_NOPAGE);
    /// `VM_FAULT_OOM`: memory could not be allocated.
    pub(crate) const OOM: Self = Self(bindings::vm_fault_reason_VM_FAULT_OOM);
    /// `VM_FAULT_SIGBUS`: the access is outside what the mapping can back; send `SIGBUS`.
    pub(crate) const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS);
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

    /// Hands `page` to the kernel, to map at the faulting address once the handler returns; the
    /// handler must return the value this gives.
    ///
    /// The kernel then does what it does for a page-cache page: it locks the page, maps it (or,
    /// on a write to a private mapping, a copy of it, written into the page it allocated for
    /// that before calling the handler, so the write needs no second fault), and unlocks it. The
    /// reference `page` owns goes to the page table entry, which drops it when it is unmapped;
    /// a copy-on-write fault drops it once the copy is made.
    pub(crate) fn map_page(&self, page: SharedPage) -> VmFaultReason {
        // SAFETY: By the type invariants the `struct vm_fault` is valid, and `page` is the field
        // the kernel reads the handler's page from when the handler returns 0.
        unsafe { (*self.0.get()).page = page.into_raw() };
        VmFaultReason(0)
    }
}

/// An order-0 page whose owners are counted by the page's own reference count, the count page
/// table entries hold theirs in.
///
/// Each `SharedPage` owns one reference: cloning is `get_page()`, dropping is `put_page()`, and
/// the last put frees the page. A page can thus be held by a driver and mapped by page tables
/// without an allocation of its own for the count, and handed to the kernel by giving it a
/// reference.
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
        let raw = page.as_ptr();
        // `Page` frees its order-0 allocation with `__free_pages(page, 0)`, which is dropping a
        // reference; the one it owns is ours from now on.
        core::mem::forget(page);
        // INVARIANT: `Page::alloc_page` allocates order-0, non-compound pages.
        // SAFETY: The pointer of a `Page` is never null.
        Self(unsafe { NonNull::new_unchecked(raw) })
    }

    /// The `struct page`.
    fn as_ptr(&self) -> *mut bindings::page {
        self.0.as_ptr()
    }

    /// Gives up this value's reference without dropping it, for the kernel to own.
    fn into_raw(self) -> *mut bindings::page {
        let raw = self.as_ptr();
        core::mem::forget(self);
        raw
    }
}

impl Clone for SharedPage {
    fn clone(&self) -> Self {
        // An order-0 page is its own folio, so this is `get_page()`, which is inline in C and
        // has no helper in the kernel crate: the reference is added with the same atomic
        // increment.
        let page = self.as_ptr();
        // SAFETY: By the type invariants we own a reference, so the page and its `_refcount`
        // are valid for as long as `self` lives, and the count is only changed atomically.
        let refcount = unsafe { Atomic::<i32>::from_ptr(&raw mut (*page)._refcount.counter) };
        refcount.add(1, Relaxed);
        // INVARIANT: The new value owns the reference just taken.
        Self(self.0)
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariants we own a reference to an order-0 page. For such a
        // page `__free_pages(page, 0)` is `put_page()`: it drops the reference and frees the
        // page (uncharging its memory cgroup) if that was the last one.
        unsafe { bindings::__free_pages(self.as_ptr(), 0) };
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

/// How many pages [`insert_pages`] hands to `vm_insert_pages()` at once.
const INSERT_BATCH: usize = 16;

/// Maps `pages` at consecutive addresses from `address`, taking the page table lock once per
/// batch rather than once per page (`vm_insert_pages()`). Each mapping takes a reference of its
/// own.
///
/// Returns how many pages were mapped, from the first, and the error that stopped the run, if
/// any: `EBUSY` when something is mapped at the next address already, `EFAULT` when the range
/// leaves the VMA, `ENOMEM` when a page table cannot be allocated.
///
/// Context: may sleep (to allocate page tables).
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

/// Whether the VMA was advised `MADV_SEQUENTIAL` (`VM_SEQ_READ`): its pages will be accessed in
/// order.
pub(crate) fn is_sequential(vma: &VmaRef) -> bool {
    vma.flags() & (1 << bindings::VMA_SEQ_READ_BIT) != 0
}

/// The operations of the VMAs that map a driver's data, `struct vm_operations_struct`.
///
/// `Self` is the data the mappings share; each VMA holds an [`Arc<Self>`] in `vm_private_data`.
/// The callbacks get a borrow of it.
#[vtable]
pub(crate) trait VmOperations: Send + Sync + Sized + 'static {
    /// Called when the kernel copies a VMA: on split (`munmap`, `mprotect` of a part), `fork`,
    /// and `mremap` that moves it. Not called for the first mapping; see [`install`].
    ///
    /// Context: may sleep; the mmap write lock is held.
    fn open(_data: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when a VMA is removed from its address space, after its pages were unmapped.
    ///
    /// Context: may sleep; the mmap write lock is held, or the address space is being torn
    /// down.
    fn close(_data: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles a page fault: an access to a page of the VMA that no page table entry maps.
    ///
    /// Context: may sleep; the VMA is read-locked: by its VMA lock alone if
    /// [`FAULT_WITHOUT_MMAP_LOCK`](Self::FAULT_WITHOUT_MMAP_LOCK) is set, otherwise by the mmap
    /// read lock.
    fn fault(_data: ArcBorrow<'_, Self>, _vmf: &VmFault) -> VmFaultReason {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether [`fault`](Self::fault) may run under the VMA lock alone, as anonymous faults do.
    ///
    /// By default the kernel sends a fault taken under the VMA lock back to be retried under the
    /// mmap read lock, which makes every fault start twice and serialises it against `mmap`
    /// and `munmap` anywhere in the address space. Set this when the handler needs nothing the
    /// mmap lock protects beyond its own VMA.
    const FAULT_WITHOUT_MMAP_LOCK: bool = false;
}

/// Makes `T`'s operations the operations of a VMA being set up, with `data` as what it maps.
///
/// The VMA takes over `data`; it is dropped when the kernel closes the VMA. Call this last in the
/// `mmap` callback: once it is called, the callback must succeed, as the kernel does not close a
/// VMA whose `mmap` callback failed.
pub(crate) fn install<T: VmOperations>(vma: &VmaNew, data: Arc<T>) {
    let vma = vma.as_ptr();
    // INVARIANT: From here on `vm_private_data` owns a reference to an `Arc<T>` and `vm_ops` is
    // `T`'s table, whose `close` drops that reference.
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

    /// # Safety
    ///
    /// `vma` must be a new copy of a VMA that uses this table, with the mmap write lock held.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The copy has the `vm_private_data` of its source, which stays open during this
        // call because the mmap write lock is held.
        let data = unsafe { Self::data(vma) };
        if T::HAS_OPEN {
            // SAFETY: The caller holds the mmap write lock, which is stronger than a read lock.
            T::open(data, unsafe { VmaRef::from_raw(vma) });
        }
        // The copy owns a reference of its own from now on.
        let owned: Arc<T> = data.into();
        // SAFETY: The VMA is being set up under the mmap write lock, so we may write its private
        // data.
        // INVARIANT: `vm_private_data` owns the new reference.
        unsafe { (*vma).vm_private_data = owned.into_foreign() };
    }

    /// # Safety
    ///
    /// `vma` must use this table and be being removed, with its pages already unmapped.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        if T::HAS_CLOSE {
            // SAFETY: The VMA is valid and still owns its data during this call; the caller holds
            // the mmap write lock or is tearing the address space down, so nothing else has it.
            T::close(unsafe { Self::data(vma) }, unsafe { VmaRef::from_raw(vma) });
        }
        // SAFETY: The VMA is valid; it is being closed, so this is the last use of its data.
        let private = unsafe { (*vma).vm_private_data };
        // SAFETY: By the type invariants `private` owns a reference to an `Arc<T>`; the VMA gives
        // it up here, once, as `close` is called once per VMA.
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
        T::fault(data, vmf).0
    }

    /// The kernel's sign that `->fault` may run under the VMA lock alone (see
    /// `vmf_can_call_fault()`): a VMA whose operations have `->map_pages` is not sent back to
    /// the mmap lock. This one maps nothing, so the kernel goes on to `->fault`, where the pages
    /// are mapped. Mapping pages here is not possible for a driver: `->map_pages` runs under
    /// the RCU read lock, and the exported ways to insert pages may allocate a page table,
    /// which sleeps.
    ///
    /// # Safety
    ///
    /// Called by the kernel as `->map_pages`.
    unsafe extern "C" fn map_nothing(
        _vmf: *mut bindings::vm_fault,
        _start_pgoff: usize,
        _end_pgoff: usize,
    ) -> bindings::vm_fault_t {
        0
    }

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        // `open` and `close` manage the reference each VMA owns, so they are always set.
        open: Some(Self::open),
        close: Some(Self::close),
        fault: if T::HAS_FAULT {
            Some(Self::fault)
        } else {
            None
        },
        map_pages: if T::HAS_FAULT && T::FAULT_WITHOUT_MMAP_LOCK {
            Some(Self::map_nothing)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::vm_operations_struct {
        &Self::VTABLE
    }
}

/// The page offset of the first page of `vma` in the object it maps (`vm_pgoff`).
pub(crate) fn pgoff(vma: &VmaRef) -> usize {
    // SAFETY: `VmaRef` guarantees the VMA is valid and read-locked, so `vm_pgoff` is stable.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}
