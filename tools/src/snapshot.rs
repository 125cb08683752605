// SPDX-License-Identifier: GPL-2.0

//! One moment of an address space, as a [`Source`](crate::source::Source) reports it, and the difference between two.
//!
//! Every number here comes from the source ([`Source::read`](crate::source::Source::read): the module's ioctls, or procfs);
//! only file names come from `/proc/<pid>/maps` (see [`crate::procfs::names`]). A source says
//! which summary fields it could not read ([`Snapshot::unknown`]) and which VMA flags it could
//! ([`Snapshot::vma_flags_known`]); everything else is the same whoever answered.

use crate::abi::{self, kind, MmSummary, Vma};
use serde::Serialize;
use std::collections::HashMap;

/// The page size of the machine the command runs on.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety requirements.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// A field of the summary that a source may be unable to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `mm->brk`.
    Brk,
    /// `mm->mmap_base`.
    MmapBase,
    /// `mm->task_size`.
    TaskSize,
}

impl Field {
    /// The field's name in `struct mmscope_mm_summary` and in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Brk => "brk",
            Self::MmapBase => "mmap_base",
            Self::TaskSize => "task_size",
        }
    }
}

/// Every `MMSCOPE_VMA_*` bit.
pub const ALL_VMA_FLAGS: u64 = (1 << abi::VMA_FLAGS.len()) - 1;

/// The summary and the VMAs of one address space, taken one right after the other.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `MMSCOPE_IOC_MM_SUMMARY`, or the same fields from procfs. A field in [`Self::unknown`]
    /// is 0 here and means nothing: read it through [`Self::brk`] and its siblings.
    pub summary: MmSummary,
    /// `MMSCOPE_IOC_VMA_LIST`, or the same records from procfs, in address order.
    pub vmas: Vec<Vma>,
    /// The summary fields the source could not read, each with the reason, a sentence part
    /// for people ("procfs shows only start_brk ...").
    pub unknown: Vec<(Field, &'static str)>,
    /// The `MMSCOPE_VMA_*` bits the source could read; the others are 0 in every record.
    pub vma_flags_known: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            summary: MmSummary::default(),
            vmas: Vec::new(),
            unknown: Vec::new(),
            vma_flags_known: ALL_VMA_FLAGS,
        }
    }
}

impl Snapshot {
    /// Why `field` is unknown, or `None` if the source read it.
    pub fn why_unknown(&self, field: Field) -> Option<&'static str> {
        self.unknown
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, why)| *why)
    }

    /// The value of `field`, if the source read it.
    fn known(&self, field: Field, value: u64) -> Option<u64> {
        self.why_unknown(field).is_none().then_some(value)
    }

    /// `brk`, if known.
    pub fn brk(&self) -> Option<u64> {
        self.known(Field::Brk, self.summary.brk)
    }

    /// `mmap_base`, if known.
    pub fn mmap_base(&self) -> Option<u64> {
        self.known(Field::MmapBase, self.summary.mmap_base)
    }

    /// `task_size`, if known.
    pub fn task_size(&self) -> Option<u64> {
        self.known(Field::TaskSize, self.summary.task_size)
    }

    /// Sets `brk` to a value known from elsewhere (the tracer follows it call by call).
    pub fn set_brk(&mut self, brk: u64) {
        self.summary.brk = brk;
        self.unknown.retain(|(f, _)| *f != Field::Brk);
    }

    /// The heap as `brk` leaves it: `brk - start_brk` bytes, if `brk` is known.
    pub fn heap_bytes(&self) -> Option<u64> {
        self.brk()
            .map(|brk| brk.saturating_sub(self.summary.start_brk))
    }

    /// Bytes of private anonymous memory mapped with some access (not the heap or the stack):
    /// what `mmap(MAP_ANONYMOUS)` added, the mmap side of malloc.
    pub fn anon_mapped_bytes(&self) -> u64 {
        self.vmas
            .iter()
            .filter(|v| v.kind == kind::ANON && v.flags & ACCESS != 0)
            .map(vma_size)
            .sum()
    }

    /// Bytes of private anonymous memory mapped `PROT_NONE`: address space reserved, not
    /// usable (guard pages, the unused part of a malloc thread arena).
    pub fn anon_reserved_bytes(&self) -> u64 {
        self.vmas
            .iter()
            .filter(|v| v.kind == kind::ANON && v.flags & ACCESS == 0)
            .map(vma_size)
            .sum()
    }

    /// The RSS counters in bytes.
    pub fn rss(&self) -> Rss {
        let page = page_size();
        Rss {
            anon: self.summary.rss_anon * page,
            file: self.summary.rss_file * page,
            shmem: self.summary.rss_shmem * page,
        }
    }

    /// The VMA that holds `addr`, if any.
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        let i = self.vmas.partition_point(|v| v.end <= addr);
        self.vmas.get(i).filter(|v| v.start <= addr)
    }
}

/// `MMSCOPE_VMA_READ | WRITE | EXEC`.
const ACCESS: u64 = abi::MMSCOPE_VMA_READ | abi::MMSCOPE_VMA_WRITE | abi::MMSCOPE_VMA_EXEC;

/// The RSS counters of an address space, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rss {
    /// Resident anonymous memory (`RssAnon`).
    pub anon: u64,
    /// Resident file-backed memory (`RssFile`).
    pub file: u64,
    /// Resident shared memory (`RssShmem`).
    pub shmem: u64,
}

impl Rss {
    /// All three together (`VmRSS`).
    pub fn total(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
}

/// The size of a VMA in bytes.
pub fn vma_size(v: &Vma) -> u64 {
    v.end - v.start
}

/// The permissions as `/proc/<pid>/maps` prints them: `rwxp` or `rwxs`.
pub fn perms(v: &Vma) -> String {
    perm_chars(v).iter().collect()
}

/// [`perms`], as four characters.
pub fn perm_chars(v: &Vma) -> [char; 4] {
    let bit = |flag, c| if v.flags & flag != 0 { c } else { '-' };
    [
        bit(abi::MMSCOPE_VMA_READ, 'r'),
        bit(abi::MMSCOPE_VMA_WRITE, 'w'),
        bit(abi::MMSCOPE_VMA_EXEC, 'x'),
        if v.flags & abi::MMSCOPE_VMA_MAYSHARE != 0 {
            's'
        } else {
            'p'
        },
    ]
}

/// The byte offset `/proc/<pid>/maps` shows: the file offset for files and shared memory, 0 for
/// private anonymous memory.
pub fn offset(v: &Vma) -> u64 {
    match v.kind {
        kind::FILE | kind::SHMEM | kind::MMSCOPE => v.pgoff * page_size(),
        _ => 0,
    }
}

/// The name the kernel gives a VMA without a file, as `/proc/<pid>/maps` prints it.
pub fn kind_label(v: &Vma) -> Option<&'static str> {
    match v.kind {
        kind::HEAP => Some("[heap]"),
        kind::STACK => Some("[stack]"),
        kind::VDSO => Some("[vdso]"),
        kind::VVAR => Some("[vvar]"),
        _ => None,
    }
}

/// A VMA for people and scripts: what `/proc/<pid>/maps` says about it, plus its kind and size.
/// These field names are part of the `--json` output and do not change.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VmaView {
    /// First address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// `end - start`.
    pub size: u64,
    /// `rwxp` as in `/proc/<pid>/maps`.
    pub perms: String,
    /// heap, stack, vdso, vvar, anon, file, shmem, mmscope, special.
    pub kind: &'static str,
    /// Byte offset, as `/proc/<pid>/maps` shows it.
    pub offset: u64,
    /// The device as `major:minor` in hex, as `/proc/<pid>/maps` shows it.
    pub dev: String,
    /// The inode number, 0 if none.
    pub inode: u64,
    /// The smaps `VmFlags` mnemonics, of the flags the source could read (all from the
    /// module; from procfs all in `maps`, only `rd wr ex ms` in `trace`).
    pub flags: Vec<&'static str>,
    /// The name `/proc/<pid>/maps` shows, if any.
    pub name: Option<String>,
}

impl VmaView {
    /// Describes `v`; `name` is its file name, if known.
    pub fn new(v: &Vma, name: Option<&str>) -> Self {
        let flags = abi::VMA_FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| v.flags & (1 << i) != 0)
            .map(|(_, f)| *f)
            .collect();
        Self {
            start: v.start,
            end: v.end,
            size: vma_size(v),
            perms: perms(v),
            kind: kind::name(v.kind),
            offset: offset(v),
            dev: format!("{:02x}:{:02x}", v.dev_major, v.dev_minor),
            inode: v.inode,
            flags,
            name: name
                .map(str::to_owned)
                .or_else(|| kind_label(v).map(str::to_owned)),
        }
    }
}

/// What changed between two VMA lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmaDiff {
    /// VMAs of the first list that are not in the second, in address order.
    pub removed: Vec<Vma>,
    /// VMAs of the second list that are not in the first, in address order.
    pub added: Vec<Vma>,
}

impl VmaDiff {
    /// Compares `before` with `after`; a VMA counts as the same if its range, flags, offset,
    /// file and kind are.
    pub fn between(before: &[Vma], after: &[Vma]) -> Self {
        let key = |v: &Vma| (v.start, v.end, v.flags, v.pgoff, v.inode, v.kind);
        let sorted = |vmas: &[Vma]| vmas.windows(2).all(|w| w[0].start < w[1].start);
        if sorted(before) && sorted(after) {
            // As every source gives them, in address order, each start once: one merge walk.
            let (mut removed, mut added) = (Vec::new(), Vec::new());
            let (mut b, mut a) = (before.iter().peekable(), after.iter().peekable());
            loop {
                match (b.peek(), a.peek()) {
                    (Some(&x), Some(&y)) if x.start == y.start => {
                        if key(x) != key(y) {
                            removed.push(*x);
                            added.push(*y);
                        }
                        b.next();
                        a.next();
                    }
                    (Some(&x), Some(&y)) if x.start < y.start => {
                        removed.push(*x);
                        b.next();
                    }
                    (Some(&x), None) => {
                        removed.push(*x);
                        b.next();
                    }
                    (_, Some(&y)) => {
                        added.push(*y);
                        a.next();
                    }
                    (None, None) => return Self { removed, added },
                }
            }
        }
        Self::by_key(before, after)
    }

    /// [`VmaDiff::between`] for lists in any order: a VMA of `before` is removed unless as many
    /// of its kind are in `after`, and the other way round.
    fn by_key(before: &[Vma], after: &[Vma]) -> Self {
        let key = |v: &Vma| (v.start, v.end, v.flags, v.pgoff, v.inode, v.kind);
        let mut seen: HashMap<_, usize> = HashMap::new();
        for v in after {
            *seen.entry(key(v)).or_default() += 1;
        }
        let mut removed = Vec::new();
        for v in before {
            match seen.get_mut(&key(v)) {
                Some(n) if *n > 0 => *n -= 1,
                _ => removed.push(*v),
            }
        }
        let mut kept: HashMap<_, usize> = HashMap::new();
        for v in before {
            *kept.entry(key(v)).or_default() += 1;
        }
        let mut added = Vec::new();
        for v in after {
            match kept.get_mut(&key(v)) {
                Some(n) if *n > 0 => *n -= 1,
                _ => added.push(*v),
            }
        }
        Self { removed, added }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_walk_finds_what_the_multiset_diff_finds() {
        // Lists in address order, as sources give them: every pair of 0..5 kept, changed,
        // gone or new, against the order-free comparison.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for _ in 0..500 {
            let (mut before, mut after) = (Vec::new(), Vec::new());
            for i in 0..8u64 {
                let v = vma(
                    i * 0x10000,
                    i * 0x10000 + 0x1000 * (1 + next() % 3),
                    next() % 2,
                );
                match next() % 4 {
                    0 => before.push(v),
                    1 => after.push(v),
                    2 => {
                        before.push(v);
                        after.push(v);
                    }
                    _ => {
                        before.push(v);
                        after.push(Vma {
                            flags: v.flags ^ 1,
                            ..v
                        });
                    }
                }
            }
            let (walk, keyed) = (
                VmaDiff::between(&before, &after),
                VmaDiff::by_key(&before, &after),
            );
            assert_eq!(walk.removed, keyed.removed, "{before:?} -> {after:?}");
            assert_eq!(walk.added, keyed.added, "{before:?} -> {after:?}");
        }
    }

    fn vma(start: u64, end: u64, flags: u64) -> Vma {
        Vma {
            start,
            end,
            flags,
            ..Default::default()
        }
    }

    #[test]
    fn diff_finds_grown_added_and_removed() {
        let before = [
            vma(0x1000, 0x2000, 3),
            vma(0x5000, 0x6000, 3),
            vma(0x9000, 0xa000, 1),
        ];
        let after = [
            vma(0x1000, 0x3000, 3),
            vma(0x5000, 0x6000, 3),
            vma(0xb000, 0xc000, 3),
        ];
        let d = VmaDiff::between(&before, &after);
        assert_eq!(d.removed, vec![before[0], before[2]]);
        assert_eq!(d.added, vec![after[0], after[2]]);
        assert!(VmaDiff::between(&before, &before).is_empty());
    }

    #[test]
    fn perms_like_procfs() {
        let v = vma(0, 0x1000, abi::MMSCOPE_VMA_READ | abi::MMSCOPE_VMA_EXEC);
        assert_eq!(perms(&v), "r-xp");
        let s = vma(
            0,
            0x1000,
            abi::MMSCOPE_VMA_MAYSHARE | abi::MMSCOPE_VMA_WRITE,
        );
        assert_eq!(perms(&s), "-w-s");
    }

    #[test]
    fn vma_at_finds_the_covering_vma() {
        let snap = Snapshot {
            vmas: vec![vma(0x1000, 0x2000, 0), vma(0x4000, 0x6000, 0)],
            ..Default::default()
        };
        assert_eq!(snap.vma_at(0x1fff).map(|v| v.start), Some(0x1000));
        assert_eq!(snap.vma_at(0x2000), None);
        assert_eq!(snap.vma_at(0x5000).map(|v| v.start), Some(0x4000));
        assert_eq!(snap.vma_at(0x7000), None);
    }
}
