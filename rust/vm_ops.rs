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

use core::marker::PhantomData;
use kernel::{
    bindings,
    error::VTABLE_DEFAULT_ERROR,
    mm::virt::{
        VmaNew,
        VmaRef, //
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

/// The outcome of a fault handler, a `vm_fault_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VmFaultReason(bindings::vm_fault_t);

impl VmFaultReason {
    /// `VM_FAULT_NOPAGE`: the handler installed the page table entry itself; retry the access.
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
    /// Context: may sleep; the VMA is read-locked (mmap read lock or VMA lock).
    fn fault(_data: ArcBorrow<'_, Self>, _vmf: &VmFault) -> VmFaultReason {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
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

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        // `open` and `close` manage the reference each VMA owns, so they are always set.
        open: Some(Self::open),
        close: Some(Self::close),
        fault: if T::HAS_FAULT {
            Some(Self::fault)
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
