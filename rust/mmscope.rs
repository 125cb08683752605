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

mod lazy_mem;
mod uapi;
mod vm_ops;

use lazy_mem::{
    LazyMem,
    Limits, //
};

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
            description: "Cap on the memory all objects together may allocate, in MiB",
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
        object_pages: pages(module_parameters::object_max_mb.value())?,
        max_pages: pages(module_parameters::max_mb.value())? as u64,
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

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let mem = LazyMem::new(limits()?)?;
        Ok(KBox::new(MmscopeFile { mem }, GFP_KERNEL_ACCOUNT)?)
    }

    /// Maps the memory object. Nothing is allocated here; see [`LazyMem`].
    ///
    /// Fails with `EPERM` for `PROT_EXEC` (mappings of the device are never executable, and
    /// `mprotect` cannot make them so), and with `EFBIG` if the mapping reaches past the
    /// object's size limit.
    fn mmap(me: &MmscopeFile, _file: &File, vma: &VmaNew) -> Result {
        if vma.executable() {
            return Err(EPERM);
        }
        vma.try_clear_mayexec()?;
        let pages = (vma.end() - vma.start()) >> PAGE_SHIFT;
        let end = vm_ops::pgoff(vma).checked_add(pages).ok_or(EOVERFLOW)?;
        if end > me.mem.limit_pages() {
            return Err(EFBIG);
        }
        vma.set_mixedmap();
        vm_ops::install(vma, me.mem.clone());
        Ok(())
    }

    fn ioctl(me: &MmscopeFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let user = UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd));
        match cmd {
            uapi::MMSCOPE_IOC_VERSION => user.writer().write(&uapi::MMSCOPE_ABI_VERSION)?,
            uapi::MMSCOPE_IOC_MEM_STATS => me.mem_stats(arg)?,
            uapi::MMSCOPE_IOC_SET_LIMIT => me.set_limit(user.reader().read::<u64>()?)?,
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
    }
}

impl MmscopeFile {
    /// `MMSCOPE_IOC_MEM_STATS`: copies this object's and the module-wide counters out.
    fn mem_stats(&self, arg: usize) -> Result {
        let size = uapi::read_ext_header::<uapi::MmscopeMemStats>(arg)?;
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
