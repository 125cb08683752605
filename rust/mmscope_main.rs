// SPDX-License-Identifier: GPL-2.0

//! mmscope: process memory management made visible.
//!
//! Registers the misc device `/dev/mmscope`. Each open of it is an independent memory object,
//! like a memfd ([`lazy_mem`]): `mmap` of it allocates nothing, and each page is allocated by the
//! fault handler on first touch, so demand paging can be watched page by page. The userspace
//! contract is `include/uapi/mmscope.h`, mirrored in [`uapi`].

use kernel::{
    fs::File,
    ioctl::_IOC_SIZE,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    mm::virt::VmaNew,
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    seq_file::{
        seq_print,
        SeqFile, //
    },
    sync::Arc,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

mod compat;
mod lazy_mem;
mod mm_ext;
mod mm_walk;
mod uapi;
mod vm_ops;

use lazy_mem::{
    LazyMem,
    Limits,
    UserRef, //
};
use mm_ext::VmaExt;

module! {
    type: MmscopeModule,
    name: "mmscope",
    authors: ["The mmscope developers"],
    description: "Process memory management made visible: lazy-fault device and mm introspection",
    license: "GPL",
    params: {
        object_max_mb: usize {
            default: 1024,
            description: "Size limit of each memory object in MiB (MMSCOPE_IOC_SET_LIMIT lowers it)",
        },
        max_mb: usize {
            default: 512,
            description: "Cap on the memory each user's objects together may hold, in MiB (the user \
                is the effective UID that opened them; pages are also charged to the memory \
                cgroup of the task that faults them in)",
        },
        total_max_mb: usize {
            default: 4096,
            description: "Cap on the memory all objects of all users together may hold, in MiB: \
                the module's bound, which one person with many UIDs (subordinate UIDs in user \
                namespaces) could otherwise multiply max_mb by",
        },
    },
}

/// Pages in one MiB.
const PAGES_PER_MB: usize = (1 << 20) / PAGE_SIZE;

/// The loaded module: owns the registration of `/dev/mmscope`.
#[pin_data]
struct MmscopeModule {
    /// The limits from the module parameters, checked at load so that bad ones fail `insmod`.
    _limits: Limits,
    /// The misc device, deregistered when the module unloads.
    #[pin]
    _miscdev: MiscDeviceRegistration<MmscopeFile>,
}

impl kernel::InPlaceModule for MmscopeModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions { name: c"mmscope" };
        mm_ext::init_users_lock();
        try_pin_init!(Self {
            _limits: limits()?,
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}

/// The limits from the module parameters, checked.
fn limits() -> Result<Limits> {
    let pages = |mb: usize| {
        mb.checked_mul(PAGES_PER_MB)
            .filter(|&p| p > 0)
            .ok_or(EINVAL)
    };
    Ok(Limits {
        object_pages: pages(compat::param_value(
            module_parameters::object_max_mb.value(),
        ))?,
        max_pages: pages(compat::param_value(module_parameters::max_mb.value()))? as u64,
        total_pages: pages(compat::param_value(module_parameters::total_max_mb.value()))? as u64,
    })
}

/// The state of one open of `/dev/mmscope`.
struct MmscopeFile {
    /// The memory object this open file maps; its mappings keep it alive past `close`.
    mem: Arc<LazyMem>,
}

#[vtable]
impl MiscDevice for MmscopeFile {
    type Ptr = KBox<Self>;

    fn open(file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        compat::file_hold_module(file)?;
        let user = UserRef::get(file.cred().euid())?;
        let mem = Arc::pin_init(LazyMem::new(limits()?, user), GFP_KERNEL_ACCOUNT)?;
        Ok(KBox::new(MmscopeFile { mem }, GFP_KERNEL_ACCOUNT)?)
    }

    /// Maps the memory object. Nothing is allocated here; see [`LazyMem`].
    ///
    /// Fails with `EPERM` for `PROT_EXEC` (mappings of the device are never executable, and
    /// `mprotect` cannot make them so), and with `EINVAL` if the mapping reaches past the
    /// object's size limit (as `mmap(2)` does for a length or offset too large).
    fn mmap(me: &MmscopeFile, _file: &File, vma: &VmaNew) -> Result {
        if vma.executable() {
            return Err(EPERM);
        }
        vma.try_clear_mayexec()?;
        let pages = (vma.end() - vma.start()) >> PAGE_SHIFT;
        let end = vma.pgoff().checked_add(pages).ok_or(EOVERFLOW)?;
        if end > me.mem.limit_pages() {
            return Err(EINVAL);
        }
        vma.set_mixedmap();
        vm_ops::install(vma, me.mem.clone());
        Ok(())
    }

    fn ioctl(me: &MmscopeFile, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let user = UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd));
        match cmd {
            uapi::MMSCOPE_IOC_VERSION => user.writer().write(&uapi::MMSCOPE_ABI_VERSION)?,
            uapi::MMSCOPE_IOC_MEM_STATS => me.mem_stats(arg)?,
            uapi::MMSCOPE_IOC_SET_LIMIT => me.set_limit(user.reader().read::<u64>()?)?,
            uapi::MMSCOPE_IOC_MM_SUMMARY => mm_summary(arg)?,
            uapi::MMSCOPE_IOC_VMA_LIST => vma_list(arg, file)?,
            uapi::MMSCOPE_IOC_VMA_QUERY => vma_query(arg, file)?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    fn show_fdinfo(me: &MmscopeFile, m: &SeqFile, _file: &File) {
        let obj = me.mem.stats();
        seq_print!(m, "mmscope-faults:\t{}\n", obj.faults);
        seq_print!(m, "mmscope-pages:\t{}\n", obj.pages);
        seq_print!(m, "mmscope-limit-pages:\t{}\n", obj.limit_pages);
        seq_print!(m, "mmscope-faultaround-pages:\t{}\n", obj.faultaround_pages);
        seq_print!(m, "mmscope-user-pages:\t{}\n", obj.user_pages);
        seq_print!(m, "mmscope-total-max-pages:\t{}\n", obj.total_max_pages);
    }
}

impl MmscopeFile {
    /// `MMSCOPE_IOC_MEM_STATS`: copies this object's and the module-wide counters out.
    fn mem_stats(&self, arg: usize) -> Result {
        let size = uapi::read_ext_header_no_flags::<uapi::MmscopeMemStats>(arg)?;
        let obj = self.mem.stats();
        let global = lazy_mem::global_stats();
        let stats = uapi::MmscopeMemStats {
            size: size as u32,
            flags: 0,
            obj_faults: obj.faults,
            obj_pages: obj.pages,
            obj_limit_pages: obj.limit_pages,
            obj_faultaround_pages: obj.faultaround_pages,
            faults: global.faults,
            pages: global.pages,
            pages_freed: global.pages_freed,
            peak_pages: global.peak_pages,
            max_pages: limits()?.max_pages,
            objects: global.objects,
        };
        uapi::write_ext(arg, &stats, size)
    }

    /// `MMSCOPE_IOC_SET_LIMIT`: lowers the object's size limit to `bytes`, a multiple of the
    /// page size (`EINVAL` otherwise).
    fn set_limit(&self, bytes: u64) -> Result {
        let bytes = usize::try_from(bytes).map_err(|_| EINVAL)?;
        if bytes % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        self.mem.lower_limit(bytes >> PAGE_SHIFT)
    }
}

/// Records collected per hold of the mmap lock by `MMSCOPE_IOC_VMA_LIST`: bounds the kernel
/// memory a walk uses (48 bytes each) and how long it holds the lock.
const VMA_CHUNK: usize = 128;

/// `MMSCOPE_IOC_MM_SUMMARY`: the memory-map summary of the caller or of another process.
fn mm_summary(arg: usize) -> Result {
    let req = uapi::read_mm_request::<uapi::MmscopeMmSummary>(arg, 0, 0)?;
    let summary = mm_walk::with_target_mm(req.pid, mm_walk::summary)?;
    let out = uapi::MmscopeMmSummary {
        size: req.size as u32,
        flags: req.flags,
        pid: req.pid.unwrap_or(0),
        ..summary
    };
    uapi::write_ext(arg, &out, req.size)
}

/// `MMSCOPE_IOC_VMA_LIST`: fills the caller's array with the VMAs from `start_addr` on.
///
/// Collects at most [`VMA_CHUNK`] records per hold of the mmap read lock and copies them out
/// after dropping it; the walk goes on from where the chunk ended until the array is full or
/// the VMAs end.
fn vma_list(arg: usize, file: &File) -> Result {
    // In: start_addr, records, record_size, capacity.
    let mut req = uapi::read_mm_request::<uapi::MmscopeVmaList>(arg, 0, 24)?;
    let start = req.fields.read::<u64>()?;
    let records = req.fields.read::<u64>()?;
    let record_size = req.fields.read::<u32>()? as usize;
    let capacity = req.fields.read::<u32>()? as usize;
    let ours = size_of::<uapi::MmscopeVma>();
    if record_size < ours {
        return Err(EINVAL);
    }
    if record_size > uapi::MAX_STRUCT_SIZE {
        return Err(E2BIG);
    }
    let start = usize::try_from(start).map_err(|_| EINVAL)?;
    let records = usize::try_from(records).map_err(|_| EINVAL)?;
    records
        .checked_add(capacity.checked_mul(record_size).ok_or(EINVAL)?)
        .ok_or(EINVAL)?;
    let mut chunk = KVec::with_capacity(VMA_CHUNK.min(capacity.max(1)), GFP_KERNEL)?;
    let mut count = 0;
    let walk = mm_walk::with_target_mm(req.pid, |mm| {
        let mut addr = start;
        loop {
            chunk.clear();
            let walk = mm_walk::collect_vmas(mm, addr, capacity - count, &mut chunk, file)?;
            if record_size == ours {
                // The records are contiguous in userspace too: one copy for the chunk.
                let bytes = chunk.as_slice().as_bytes();
                let dest = UserPtr::from_addr(records + count * record_size);
                UserSlice::new(dest, bytes.len())
                    .writer()
                    .write_slice(bytes)?;
                count += chunk.len();
            } else {
                for r in chunk.iter() {
                    let dest = UserPtr::from_addr(records + count * record_size);
                    UserSlice::new(dest, ours)
                        .writer()
                        .write_slice(r.as_bytes())?;
                    count += 1;
                }
            }
            match walk.next {
                Some(next) if count < capacity => addr = next,
                _ => return Ok(walk),
            }
        }
    })?;
    let out = uapi::MmscopeVmaList {
        size: req.size as u32,
        flags: req.flags,
        pid: req.pid.unwrap_or(0),
        reserved: 0,
        start_addr: start as u64,
        records: records as u64,
        record_size: ours as u32,
        capacity: capacity as u32,
        count: count as u32,
        total: walk.map_count as u32,
        next_addr: walk.next.map_or(0, |next| next as u64),
    };
    uapi::write_ext(arg, &out, req.size)
}

/// `MMSCOPE_IOC_VMA_QUERY`: the VMA covering `addr`, or the next one above it with
/// `MMSCOPE_QUERY_COVERING_OR_NEXT`; `ENOENT` if there is none.
fn vma_query(arg: usize, file: &File) -> Result {
    let mut req = uapi::read_mm_request::<uapi::MmscopeVmaQuery>(
        arg,
        uapi::MMSCOPE_QUERY_COVERING_OR_NEXT,
        8,
    )?;
    let addr = req.fields.read::<u64>()?;
    let addr = usize::try_from(addr).map_err(|_| EINVAL)?;
    let or_next = req.flags & uapi::MMSCOPE_QUERY_COVERING_OR_NEXT != 0;
    let vma = mm_walk::with_target_mm(req.pid, |mm| mm_walk::query_vma(mm, addr, or_next, file))?;
    let out = uapi::MmscopeVmaQuery {
        size: req.size as u32,
        flags: req.flags,
        pid: req.pid.unwrap_or(0),
        reserved: 0,
        addr: addr as u64,
        vma,
    };
    uapi::write_ext(arg, &out, req.size)
}
