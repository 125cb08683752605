// SPDX-License-Identifier: GPL-2.0

//! The source of truth about an address space: one trait, two implementations.
//!
//! [`Device`] answers through the module's ioctls (`MMSCOPE_IOC_MM_SUMMARY`,
//! `MMSCOPE_IOC_VMA_LIST`): every field, exactly. [`Procfs`] answers where the module is absent,
//! from `/proc/<pid>/maps` (`PROCMAP_QUERY`, Linux 6.11 and later, or the text), `smaps`,
//! `stat` and `status`: the same records, classified the same way, with the fields procfs does
//! not show marked unknown in the [`Snapshot`]. Nothing above this module knows which one
//! answered, except to name it in the output.

mod procfs;

pub use procfs::Procfs;

use crate::snapshot::{Snapshot, ALL_VMA_FLAGS};
use crate::Device;
use std::io;
use std::path::Path;

/// How much a reading should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Everything the source can give, whatever it costs: for one reading (`mmscope maps`).
    Full,
    /// What can be read at every system call of a traced program. From procfs, the VMA flags
    /// are then only `rd wr ex ms` (`PROCMAP_QUERY` has no others; `smaps`, which has them all,
    /// walks every page table).
    Light,
}

/// Where the numbers about an address space come from.
pub trait Source {
    /// Its name in the output (`source` in `--json`): `module` or `procfs`.
    fn name(&self) -> &'static str;

    /// What it reads, for the text outputs: `/dev/mmscope (the mmscope module)`.
    fn describe(&self) -> String;

    /// Reads the address space of this process (`None`) or of `pid` into `snap`, replacing
    /// what it held: the summary, the VMAs in address order, which summary fields are unknown
    /// and which VMA flags are known.
    ///
    /// Fails with `ESRCH` if the process or its address space is gone, and `EACCES` if the
    /// caller may not read it.
    fn read(&self, pid: Option<i32>, depth: Depth, snap: &mut Snapshot) -> io::Result<()>;

    /// Reads as [`Source::read`] does, where `prev` is an earlier reading of the same address
    /// space (of the same program: not from before an `execve`). A source that can tell that
    /// no VMA has changed since (the module's `vma_seq`) takes the VMAs from `prev` instead of
    /// walking them again; the others read everything.
    fn read_after(
        &self,
        pid: Option<i32>,
        depth: Depth,
        prev: &Snapshot,
        snap: &mut Snapshot,
    ) -> io::Result<()> {
        let _ = prev;
        self.read(pid, depth, snap)
    }

    /// A new reading of the address space of this process (`None`) or of `pid` at `depth`.
    fn snapshot(&self, pid: Option<i32>, depth: Depth) -> io::Result<Snapshot> {
        let mut snap = Snapshot::default();
        self.read(pid, depth, &mut snap)?;
        Ok(snap)
    }
}

impl Source for Device {
    fn name(&self) -> &'static str {
        "module"
    }

    fn describe(&self) -> String {
        format!("{} (the mmscope module)", self.path().display())
    }

    fn read(&self, pid: Option<i32>, _depth: Depth, snap: &mut Snapshot) -> io::Result<()> {
        read_device(self, pid, None, snap)
    }

    fn read_after(
        &self,
        pid: Option<i32>,
        _depth: Depth,
        prev: &Snapshot,
        snap: &mut Snapshot,
    ) -> io::Result<()> {
        read_device(self, pid, Some(prev), snap)
    }
}

/// A reading from the module: the summary, then the VMAs, unless `prev` holds them already
/// (the same nonzero `vma_seq`: the mmap lock's writers have not been in since).
fn read_device(
    dev: &Device,
    pid: Option<i32>,
    prev: Option<&Snapshot>,
    snap: &mut Snapshot,
) -> io::Result<()> {
    snap.summary = dev.mm_summary(pid)?;
    let seq = snap.summary.vma_seq;
    match prev {
        Some(prev) if seq != 0 && prev.summary.vma_seq == seq => snap.vmas.clone_from(&prev.vmas),
        _ => {
            let expect = usize::try_from(snap.summary.map_count).unwrap_or(0);
            dev.vmas_into_expecting(pid, &mut snap.vmas, expect.min(1 << 16))?;
        }
    }
    snap.unknown.clear();
    snap.vma_flags_known = ALL_VMA_FLAGS;
    Ok(())
}

/// Which source the command uses (`--source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// The module if its device opens, else procfs.
    Auto,
    /// The module; fail without it.
    Module,
    /// procfs, even with the module loaded.
    Procfs,
}

/// Opens the source `choice` names; `device` is the module's device node. For
/// [`Choice::Module`] the error is the device's; [`Choice::Auto`] never fails.
pub fn open(choice: Choice, device: &Path) -> io::Result<Box<dyn Source>> {
    match choice {
        Choice::Module => Ok(Box::new(Device::open_path(device)?)),
        Choice::Procfs => Ok(Box::new(Procfs::new())),
        Choice::Auto => Ok(match Device::open_path(device) {
            Ok(dev) => Box::new(dev),
            Err(_) => Box::new(Procfs::new()),
        }),
    }
}
