// SPDX-License-Identifier: GPL-2.0

//! The memory object behind each open of `/dev/mmscope`: pages allocated on first touch.
//!
//! A [`LazyMem`] is a sparse array of pages indexed by page offset, like the page cache of a
//! memfd. `mmap` allocates nothing; the first access to a page offset, through any mapping of the
//! object, faults into its [`VmOperations::fault`], which allocates a zeroed page, charged to the
//! memory cgroup of the faulting task, and maps it. Every later access to that offset, through any
//! mapping of the same object, reaches the same page. Pages are freed when the object is dropped:
//! when the file is closed and its last mapping is gone.
//!
//! # Whose pages
//!
//! Each page is charged twice. The memory cgroup of the faulting task pays for it
//! (`__GFP_ACCOUNT`), as for any anonymous page; that bounds what a workload may use. And the
//! user who opened the object (the effective UID of the opening credentials) holds it against
//! an allowance of `max_pages` (module parameter `max_mb`), shared by all objects that user
//! opened, in a [`UserCharge`]: a module-wide cap alone would let one user's objects take all
//! of it and make every other user's faults fail. A user's charge lives while any object of the
//! user does, and is freed with the last one. Above the allowances, a module-wide cap
//! (`total_max_mb`) bounds all objects together: the pages are the driver's, neither on the LRU
//! nor swappable, and one person with many UIDs (the subordinate UIDs of user namespaces) holds
//! many allowances; only such a person, or many users together, can reach it.
//!
//! The user is the effective UID, as for the files a process creates: a setuid program's
//! objects are its owner's.
//!
//! # Locking
//!
//! Lock order: mmap lock (or VMA lock) → [`LazyMem::alloc_lock`] → the page array's lock →
//! page table lock (taken inside `vm_insert_pages`, and by the kernel when it maps the page a
//! fault hands it). Separately: mmap lock (an object dropped by `munmap` or `exit_mmap`) →
//! [`USERS`], the list of users' charges, which is taken only when an object is created or
//! dropped, never while a fault runs.
//!
//! - The page array's own spinlock protects lookups and stores; it is never held across
//!   anything that sleeps.
//! - `alloc_lock` serialises everything that adds pages or changes the size limit, so that two
//!   tasks faulting the same new offset at once allocate exactly one page between them.
//! - No lock of this file is held while a page is inserted into a page table.
//! - A user's page count ([`UserCharge::pages`]) is an atomic counter, reserved before a page is
//!   stored and released if it cannot be, as the module-wide count is: faults of objects of the
//!   same user charge it without a common lock.

use crate::{
    mm_ext::USERS,
    vm_ops::{
        self,
        SharedPage,
        VmFault,
        VmFaultResult,
        VmOperations, //
    }, //
};
use kernel::{
    alloc::{
        AllocError,
        Flags, //
    },
    mm::virt::VmaMixedMap,
    new_mutex,
    page::{
        Page,
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        GlobalLockedBy,
        Mutex, //
    },
    task::Kuid,
    xarray::{
        AllocKind,
        XArray, //
    },
};

/// Fault-around window, in pages: on a fault on a page the object already held, the other pages
/// it holds within the aligned window around it are mapped too (64 KiB, the kernel's
/// `fault_around_bytes`). A first touch maps only its own page: its neighbours are then either
/// mapped already or not held yet, and looking them up would cost the fault more than it saves.
const FAULT_AROUND_PAGES: usize = 16;

/// Fault-ahead window, in pages, for a mapping advised `MADV_SEQUENTIAL`: a fault allocates and
/// maps the pages from the faulting one up to this many, so a sequential first touch takes one
/// fault per 64 KiB.
const FAULT_AHEAD_PAGES: usize = 16;

/// A counter that only grows or shrinks by whole events.
type Counter = Atomic<u64>;

/// Counters over all objects since the module was loaded.
struct GlobalCounters {
    /// Faults served.
    faults: Counter,
    /// Pages allocated and not yet freed.
    pages: Counter,
    /// Pages freed.
    pages_freed: Counter,
    /// The most pages allocated at any one time.
    peak_pages: Counter,
    /// Objects alive.
    objects: Counter,
}

/// The module-wide counters.
static GLOBAL: GlobalCounters = GlobalCounters {
    faults: Atomic::new(0),
    pages: Atomic::new(0),
    pages_freed: Atomic::new(0),
    peak_pages: Atomic::new(0),
    objects: Atomic::new(0),
};

/// A snapshot of the module-wide counters.
pub(crate) struct GlobalStats {
    /// Faults served.
    pub(crate) faults: u64,
    /// Pages allocated and not yet freed.
    pub(crate) pages: u64,
    /// Pages freed.
    pub(crate) pages_freed: u64,
    /// The most pages allocated at any one time.
    pub(crate) peak_pages: u64,
    /// Objects alive.
    pub(crate) objects: u64,
}

/// The module-wide counters now.
pub(crate) fn global_stats() -> GlobalStats {
    GlobalStats {
        faults: GLOBAL.faults.load(Relaxed),
        pages: GLOBAL.pages.load(Relaxed),
        pages_freed: GLOBAL.pages_freed.load(Relaxed),
        peak_pages: GLOBAL.peak_pages.load(Relaxed),
        objects: GLOBAL.objects.load(Relaxed),
    }
}

/// Raises `peak` to at least `value`.
fn raise_peak(peak: &Counter, value: u64) {
    let mut old = peak.load(Relaxed);
    while old < value {
        match peak.cmpxchg(old, value, Relaxed) {
            Ok(_) => break,
            Err(current) => old = current,
        }
    }
}

/// Limits that apply to every object, from the module parameters.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// The largest number of pages all objects of one user together may hold.
    pub(crate) max_pages: u64,
    /// The largest number of pages all objects of all users together may hold.
    pub(crate) total_pages: u64,
    /// The size limit of a new object, in pages.
    pub(crate) object_pages: usize,
}

/// Why a page could not be provided.
enum PageError {
    /// The offset is past the object's size limit, or the user's allowance or the module-wide
    /// cap is used up.
    Limit,
    /// Memory could not be allocated.
    NoMemory,
}

impl From<AllocError> for PageError {
    fn from(_: AllocError) -> Self {
        PageError::NoMemory
    }
}

/// What `alloc_lock` protects.
struct AllocState {
    /// The size limit in pages: offsets at or above it cannot be faulted in.
    limit_pages: usize,
    /// One past the highest offset that holds a page (0 if none does).
    populated_end: usize,
}

/// The count of live objects in [`GLOBAL`], held by each object.
struct ObjectCount;

impl ObjectCount {
    /// Counts one more object.
    fn new() -> Self {
        GLOBAL.objects.add(1, Relaxed);
        ObjectCount
    }
}

impl Drop for ObjectCount {
    fn drop(&mut self) {
        GLOBAL.objects.fetch_sub(1, Relaxed);
    }
}

/// The charges of the users who hold objects, one per user: what [`USERS`] protects.
pub(crate) struct Users {
    /// The charges, in no order; a user's is found by a linear search, which runs only when an
    /// object is created or dropped.
    charges: KVec<Arc<UserCharge>>,
}

impl Users {
    /// No user.
    pub(crate) const fn new() -> Self {
        Users {
            charges: KVec::new(),
        }
    }
}

/// The pages all objects of one user hold, against the allowance of `max_pages` each user has.
///
/// # Invariants
///
/// `pages` is the sum of the `nr_pages` of the live objects that hold a [`UserRef`] to this
/// charge, plus pages being added to one of them. The charge is in [`USERS`] while `objects`
/// is nonzero, and `objects` counts the [`UserRef`]s to it.
pub(crate) struct UserCharge {
    /// The user: the effective UID of the credentials that opened the objects.
    uid: Kuid,
    /// Pages the user's objects hold.
    pages: Counter,
    /// The user's objects.
    objects: GlobalLockedBy<usize, USERS>,
}

/// An object's share of its user's [`UserCharge`]: the charge stays in [`USERS`] while any
/// share of it does.
pub(crate) struct UserRef(Arc<UserCharge>);

impl UserRef {
    /// A share of the charge of `uid`, which is created if the user holds no object yet.
    ///
    /// Fails with `ENOMEM` if the charge or its place in the list cannot be allocated.
    pub(crate) fn get(uid: Kuid) -> Result<Self> {
        let mut users = USERS.lock();
        let found = users.charges.iter().find(|c| c.uid == uid).cloned();
        let charge = match found {
            Some(charge) => charge,
            None => {
                let charge = Arc::new(
                    UserCharge {
                        uid,
                        pages: Atomic::new(0),
                        objects: GlobalLockedBy::new(0),
                    },
                    GFP_KERNEL_ACCOUNT,
                )?;
                // The list is the module's, not the user's: not charged to a memory cgroup.
                users.charges.push(charge.clone(), GFP_KERNEL)?;
                charge
            }
        };
        *charge.objects.as_mut(&mut users) += 1;
        Ok(UserRef(charge))
    }
}

impl Drop for UserRef {
    fn drop(&mut self) {
        let mut users = USERS.lock();
        let objects = self.0.objects.as_mut(&mut users);
        *objects -= 1;
        if *objects == 0 {
            users.charges.retain(|c| !Arc::ptr_eq(c, &self.0));
            if users.charges.is_empty() {
                // Free the list's buffer with the last user: the list is a static, never
                // dropped, and the module cannot be unloaded while an object lives.
                users.charges = KVec::new();
            }
        }
    }
}

/// A snapshot of one object's counters.
pub(crate) struct MemStats {
    /// Faults served for this object.
    pub(crate) faults: u64,
    /// Pages the object holds.
    pub(crate) pages: u64,
    /// The object's size limit in pages.
    pub(crate) limit_pages: u64,
    /// Pages mapped by fault-around rather than by their own fault.
    pub(crate) faultaround_pages: u64,
    /// Pages all objects of this object's user hold, against their allowance.
    pub(crate) user_pages: u64,
    /// The module-wide cap this object was created under, in pages.
    pub(crate) total_max_pages: u64,
}

/// A memory object whose pages are allocated on first touch.
///
/// # Invariants
///
/// `pages` holds at most one page per offset, each below `limit_pages` at the time it was added,
/// `GLOBAL.pages` counts every page of every live object, and `user`'s charge every page of
/// every live object of the user.
#[pin_data(PinnedDrop)]
pub(crate) struct LazyMem {
    /// The pages, by page offset.
    #[pin]
    pages: XArray<SharedPage>,
    /// Serialises adding pages and changing the limit.
    #[pin]
    alloc_lock: Mutex<AllocState>,
    /// The user's allowance, fixed at creation.
    max_pages: u64,
    /// The module-wide cap, fixed at creation.
    total_pages: u64,
    /// The charge of the user who opened the object.
    user: UserRef,
    /// Pages held, equal to the number of entries in `pages`.
    nr_pages: Counter,
    /// Faults served.
    faults: Counter,
    /// Pages mapped by fault-around.
    faultaround_pages: Counter,
    /// This object's place in the count of objects.
    _object: ObjectCount,
}

impl LazyMem {
    /// An empty object with the given limits, charged to `user`.
    pub(crate) fn new(limits: Limits, user: UserRef) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            pages <- XArray::new(AllocKind::Alloc),
            alloc_lock <- new_mutex!(AllocState {
                limit_pages: limits.object_pages,
                populated_end: 0,
            }),
            max_pages: limits.max_pages,
            total_pages: limits.total_pages,
            user,
            nr_pages: Atomic::new(0),
            faults: Atomic::new(0),
            faultaround_pages: Atomic::new(0),
            _object: ObjectCount::new(),
        }? Error)
    }

    /// The size limit in pages.
    pub(crate) fn limit_pages(&self) -> usize {
        self.alloc_lock.lock().limit_pages
    }

    /// Lowers the size limit to `pages`.
    ///
    /// Fails with `EINVAL` if `pages` is zero or above the current limit, and with `EBUSY` if the
    /// object already holds a page at or above `pages`.
    pub(crate) fn lower_limit(&self, pages: usize) -> Result {
        let mut state = self.alloc_lock.lock();
        if pages == 0 || pages > state.limit_pages {
            return Err(EINVAL);
        }
        if state.populated_end > pages {
            return Err(EBUSY);
        }
        state.limit_pages = pages;
        Ok(())
    }

    /// A snapshot of this object's counters.
    pub(crate) fn stats(&self) -> MemStats {
        MemStats {
            faults: self.faults.load(Relaxed),
            pages: self.nr_pages.load(Relaxed),
            limit_pages: self.limit_pages() as u64,
            faultaround_pages: self.faultaround_pages.load(Relaxed),
            user_pages: self.user.0.pages.load(Relaxed),
            total_max_pages: self.total_pages,
        }
    }

    /// The page at `pgoff`, if the object holds one.
    fn lookup(&self, pgoff: usize) -> Option<SharedPage> {
        self.pages.lock().get(pgoff).map(|page| page.clone())
    }

    /// The page at `pgoff`, allocated and zeroed if the object does not hold one yet, and
    /// whether it was allocated now.
    fn get_or_alloc(&self, pgoff: usize) -> Result<(SharedPage, bool), PageError> {
        if let Some(page) = self.lookup(pgoff) {
            return Ok((page, false));
        }
        // Allocated and zeroed before taking the lock, so that faults on different pages do
        // that work in parallel.
        let page = Self::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
        let mut state = self.alloc_lock.lock();
        // Another task may have added it meanwhile: then ours is freed.
        if let Some(held) = self.lookup(pgoff) {
            return Ok((held, false));
        }
        self.add(&mut state, pgoff, page.clone(), GFP_KERNEL_ACCOUNT)?;
        Ok((page, true))
    }

    /// Adds `page` at `pgoff`, which holds no page, within the size limit and the user's
    /// allowance; the page array allocates what it needs for it with `gfp`.
    fn add(
        &self,
        state: &mut AllocState,
        pgoff: usize,
        page: SharedPage,
        gfp: Flags,
    ) -> Result<(), PageError> {
        if pgoff >= state.limit_pages {
            return Err(PageError::Limit);
        }
        // Reserve the page in the user's charge before storing it.
        let charged = &self.user.0.pages;
        if charged.fetch_add(1, Relaxed) + 1 > self.max_pages {
            charged.fetch_sub(1, Relaxed);
            return Err(PageError::Limit);
        }
        // And in the module-wide count, the bound above every user's allowance.
        let total = GLOBAL.pages.fetch_add(1, Relaxed) + 1;
        if total > self.total_pages {
            GLOBAL.pages.fetch_sub(1, Relaxed);
            charged.fetch_sub(1, Relaxed);
            return Err(PageError::Limit);
        }
        if self.pages.lock().store(pgoff, page, gfp).is_err() {
            GLOBAL.pages.fetch_sub(1, Relaxed);
            charged.fetch_sub(1, Relaxed);
            return Err(PageError::NoMemory);
        }
        state.populated_end = state.populated_end.max(pgoff + 1);
        self.nr_pages.add(1, Relaxed);
        raise_peak(&GLOBAL.peak_pages, total);
        Ok(())
    }

    /// Allocates a page with `flags`.
    fn alloc_page(flags: Flags) -> Result<SharedPage, PageError> {
        Ok(SharedPage::new(Page::alloc_page(flags)?))
    }

    /// The pages the object holds at `first`, `first + 1`, ... into the empty `slots`, looked up
    /// under one lock.
    fn lookup_window(&self, first: usize, slots: &mut [Option<SharedPage>]) {
        let pages = self.pages.lock();
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = pages.get(first + i).map(|page| page.clone());
            }
        }
    }

    /// Maps the pages in `slots` at consecutive addresses from `start`, skipping empty slots and
    /// addresses where something is mapped already; slot `at` is the faulting page (out of
    /// range if the faulting page is not among them).
    ///
    /// Each run of consecutive pages is mapped under one page table lock.
    fn map_slots(
        vma: &VmaMixedMap,
        start: usize,
        slots: &[Option<SharedPage>],
        at: usize,
    ) -> Mapped {
        let mut mapped = Mapped {
            around: 0,
            faulting: false,
        };
        let mut i = 0;
        while i < slots.len() {
            let run = slots[i..].iter().take_while(|p| p.is_some()).count();
            if run == 0 {
                i += 1;
                continue;
            }
            let pages = slots[i..i + run].iter().flatten();
            let (done, result) = vm_ops::insert_pages(vma, start + (i << PAGE_SHIFT), pages);
            mapped.around += done as u64;
            if (i..i + done).contains(&at) {
                mapped.around -= 1;
                mapped.faulting = true;
            }
            i += done;
            match result {
                Ok(()) => {}
                // Something is mapped there already: leave it. At the faulting address that is
                // a concurrent fault's doing, and as good.
                Err(EBUSY) => {
                    mapped.faulting |= i == at;
                    i += 1;
                }
                Err(_) => break,
            }
        }
        mapped
    }

    /// Maps the faulting page and the pages the object already holds in the fault-around window
    /// of `vmf`, where nothing is mapped yet.
    fn fault_around(&self, vma: &VmaMixedMap, vmf: &VmFault, page: &SharedPage) -> Mapped {
        let address = vmf.address();
        let window = FAULT_AROUND_PAGES * PAGE_SIZE;
        let base = address & !(window - 1);
        let start = base.max(vma.start());
        let end = base.saturating_add(window).min(vma.end());
        let at = (address - start) >> PAGE_SHIFT;
        let mut slots: [Option<SharedPage>; FAULT_AROUND_PAGES] = Default::default();
        let slots = &mut slots[..(end - start) >> PAGE_SHIFT];
        slots[at] = Some(page.clone());
        // VMAs map offsets linearly.
        self.lookup_window(vmf.pgoff() - at, slots);
        Self::map_slots(vma, start, slots, at)
    }

    /// Fault-ahead, for a mapping advised `MADV_SEQUENTIAL`: maps the faulting page, then
    /// allocates the pages the object does not hold yet in the [`FAULT_AHEAD_PAGES`] from it on
    /// (within the VMA, the page table of the faulting page, the size limit and the user's
    /// allowance), and maps them with the held ones, where nothing is mapped yet.
    ///
    /// Nothing the window needs allocates with a blocking allocation: the faulting page is
    /// mapped first, so that its page table, which the fault needs anyway, is allocated before
    /// the guess takes any room (and if it cannot be, nothing is guessed); the window ends at
    /// that page table's end, so that `vm_insert_pages()` (which allocates page tables with
    /// `GFP_KERNEL`) does not allocate one for guessed pages alone, unless a concurrent
    /// `MADV_DONTNEED` of the whole table freed it in between; and the page array stores them
    /// with the guess's flags.
    ///
    /// These allocations are a guess: they never wait for reclaim (`GFP_NOWAIT`), so the fault
    /// neither stalls in reclaim nor invokes the OOM killer for memory nobody asked for. They
    /// are still charged to the faulting task's memory cgroup: a charge that fails at the
    /// cgroup's limit counts a `max` event in its `memory.events`, and one above `memory.high`
    /// is throttled on the way back to userspace, as any charge is. The first that fails ends
    /// the window, without an error.
    fn fault_ahead(&self, vma: &VmaMixedMap, vmf: &VmFault, page: &SharedPage) -> Mapped {
        let address = vmf.address();
        let table_end = (address | (vm_ops::PMD_SIZE - 1)).saturating_add(1);
        let end = address
            .saturating_add(FAULT_AHEAD_PAGES * PAGE_SIZE)
            .min(vma.end())
            .min(table_end);
        let first = Self::map_slots(vma, address, &[Some(page.clone())], 0);
        if !first.faulting {
            // The page table could not be had (`ENOMEM`, `EFAULT`): no guessing now. The
            // kernel maps the page the fault returns, allocating the table itself.
            return first;
        }
        let mut slots: [Option<SharedPage>; FAULT_AHEAD_PAGES] = Default::default();
        let slots = &mut slots[..(end - address) >> PAGE_SHIFT];
        // Slot 0, the faulting page, is mapped already.
        slots[0] = Some(page.clone());
        let pgoff = vmf.pgoff();
        self.lookup_window(pgoff, slots);
        // Allocate what is missing before taking the lock, as a single fault does.
        let mut fresh: [Option<SharedPage>; FAULT_AHEAD_PAGES] = Default::default();
        // `GFP_NOWAIT` (which includes `__GFP_NOWARN`) with `GFP_KERNEL_ACCOUNT`'s
        // `__GFP_ACCOUNT`, which has no name of its own in the kernel crate. `__GFP_ZERO` is for
        // the pages only: the page array's nodes come from a cache with a constructor, which
        // `__GFP_ZERO` must not reach.
        let guess = GFP_NOWAIT | (GFP_KERNEL_ACCOUNT & !GFP_KERNEL);
        for (new, held) in fresh.iter_mut().zip(slots.iter()) {
            if held.is_none() {
                match Self::alloc_page(guess | __GFP_ZERO) {
                    Ok(page) => *new = Some(page),
                    Err(_) => break,
                }
            }
        }
        {
            let mut state = self.alloc_lock.lock();
            for (i, new) in fresh.iter_mut().enumerate() {
                let Some(page) = new.take() else { continue };
                if let Some(held) = self.lookup(pgoff + i) {
                    slots[i] = Some(held);
                } else if self.add(&mut state, pgoff + i, page.clone(), guess).is_ok() {
                    slots[i] = Some(page);
                } else {
                    break;
                }
            }
        }
        let rest = Self::map_slots(vma, address + PAGE_SIZE, &slots[1..], usize::MAX);
        Mapped {
            around: rest.around,
            faulting: first.faulting,
        }
    }
}

/// What mapping a window of pages around a fault did.
struct Mapped {
    /// Pages mapped other than the faulting one.
    around: u64,
    /// Whether the faulting page is mapped now.
    faulting: bool,
}

#[vtable]
impl VmOperations for LazyMem {
    /// Audited: [`fault`](Self::fault) uses nothing but the VMA of the fault (its range, flags
    /// and `vm_pgoff`), the object and its own locks, and maps pages with `insert_pages` or by
    /// returning one.
    const FAULT_UNDER_VMA_LOCK: bool = true;

    /// Maps the page at the faulting offset, allocating it on first touch, and its neighbours
    /// where fault-around or fault-ahead applies.
    fn fault(&self, vmf: &VmFault) -> VmFaultResult {
        // `mmap` sets `VM_MIXEDMAP` on every mapping of the object.
        let Some(vma) = vmf.vma().as_mixedmap_vma() else {
            return VmFaultResult::Sigbus;
        };
        let (page, fresh) = match self.get_or_alloc(vmf.pgoff()) {
            Ok(found) => found,
            Err(PageError::Limit) => return VmFaultResult::Sigbus,
            Err(PageError::NoMemory) => return VmFaultResult::Oom,
        };
        self.faults.add(1, Relaxed);
        GLOBAL.faults.add(1, Relaxed);
        // A write to a private mapping maps a copy, which the kernel makes from the page it is
        // given. Otherwise a fault that maps more than its own page maps them all in one go.
        if !vmf.is_cow() {
            let window = if vm_ops::is_sequential(vma) {
                Some(self.fault_ahead(vma, vmf, &page))
            } else if !fresh {
                Some(self.fault_around(vma, vmf, &page))
            } else {
                None
            };
            if let Some(mapped) = window {
                self.faultaround_pages.add(mapped.around, Relaxed);
                if mapped.faulting {
                    return VmFaultResult::Mapped;
                }
            }
        }
        VmFaultResult::Page(page)
    }
}

#[pinned_drop]
impl PinnedDrop for LazyMem {
    fn drop(self: Pin<&mut Self>) {
        // The page array frees the pages when it is dropped, right after this.
        let pages = self.nr_pages.load(Relaxed);
        self.user.0.pages.fetch_sub(pages, Relaxed);
        GLOBAL.pages.fetch_sub(pages, Relaxed);
        GLOBAL.pages_freed.add(pages, Relaxed);
    }
}
