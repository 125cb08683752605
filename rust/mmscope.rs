// SPDX-License-Identifier: GPL-2.0

//! mmscope: process memory management made visible.
//!
//! Registers the misc device `/dev/mmscope`. Each open of it is an independent handle; ioctls on
//! it answer questions about the caller's memory. The userspace contract is
//! `include/uapi/mmscope.h`, mirrored in [`uapi`].

use kernel::{
    fs::File,
    ioctl::_IOC_SIZE,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

mod uapi;

module! {
    type: MmscopeModule,
    name: "mmscope",
    authors: ["The mmscope developers"],
    description: "Process memory management made visible: lazy-fault device and mm introspection",
    license: "GPL",
}

/// The loaded module: owns the registration of `/dev/mmscope`.
#[pin_data]
struct MmscopeModule {
    /// The misc device, deregistered when the module unloads.
    #[pin]
    _miscdev: MiscDeviceRegistration<MmscopeFile>,
}

impl kernel::InPlaceModule for MmscopeModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions { name: c"mmscope" };
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}

/// The state of one open of `/dev/mmscope`.
struct MmscopeFile;

#[vtable]
impl MiscDevice for MmscopeFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(MmscopeFile, GFP_KERNEL_ACCOUNT)?)
    }

    fn ioctl(_me: &MmscopeFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let user = UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd));
        match cmd {
            uapi::MMSCOPE_IOC_VERSION => user.writer().write(&uapi::MMSCOPE_ABI_VERSION)?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
