// SPDX-License-Identifier: GPL-2.0

//! `mmscope lazy`: demand paging, page by page. Maps a `/dev/mmscope` object and anonymous
//! memory of the same size, touches both in the same order, and reports the faults and pages
//! each has taken; then maps the object a second time and reads it back, where fault-around
//! maps pages the object already holds without a fault each.

use crate::procfs::{parse_maps_line, MapsLine};
use crate::snapshot::page_size;
use crate::{Device, Mapping};
use serde::Serialize;
use std::io;
use std::sync::Once;

/// The order in which pages are touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Every page, first to last.
    Seq,
    /// Every `n`th page, first to last.
    Stride(usize),
    /// Every page, in an order shuffled with a fixed seed.
    Random(u64),
}

impl Pattern {
    /// Parses `seq`, `stride:N` or `random` (seeded with `seed`).
    pub fn parse(s: &str, seed: u64) -> Option<Self> {
        match s {
            "seq" => Some(Self::Seq),
            "random" => Some(Self::Random(seed)),
            _ => {
                let n: usize = s.strip_prefix("stride:")?.parse().ok()?;
                (n > 0).then_some(Self::Stride(n))
            }
        }
    }

    /// The page indices of an object of `pages` pages, in touch order.
    pub fn order(self, pages: usize) -> Vec<usize> {
        match self {
            Self::Seq => (0..pages).collect(),
            Self::Stride(n) => (0..pages).step_by(n).collect(),
            Self::Random(seed) => {
                let mut order: Vec<usize> = (0..pages).collect();
                // Fisher-Yates with xorshift64*: the same seed gives the same order everywhere.
                let mut x = seed | 1;
                for i in (1..order.len()).rev() {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
                    order.swap(i, (r % (i as u64 + 1)) as usize);
                }
                order
            }
        }
    }
}

/// One line of the report. Counts are since the mappings were made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `first_touch` while both mappings are written in the pattern; `second_mapping` for the
    /// read-back through a new mapping of the object.
    pub phase: &'static str,
    /// Pages touched so far in this phase.
    pub touched: u64,
    /// Faults the module served for the object in this phase.
    pub mmscope_faults: u64,
    /// Pages the object holds.
    pub mmscope_pages: u64,
    /// Pages the module mapped in this phase without a fault of their own: by fault-around, or
    /// by fault-ahead with `--sequential`.
    pub mmscope_faultaround: u64,
    /// Minor faults this process took while touching the anonymous mapping in this phase.
    pub anon_faults: u64,
    /// Resident anonymous pages gained since the mappings were made (`RssAnon`).
    pub anon_pages: u64,
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Lazy {
    /// Bytes to map, a multiple of the page size.
    pub size: u64,
    /// How to touch them.
    pub pattern: Pattern,
    /// How many rows the first phase reports at most (besides its start).
    pub rows: usize,
    /// Whether the object's mapping is advised `MADV_SEQUENTIAL` (fault-ahead).
    pub sequential: bool,
}

/// Minor faults of this thread so far (`getrusage(RUSAGE_THREAD)`).
///
/// The first call maps in the program's own code first (see [`map_in_own_code`]), so that the
/// difference of two counts around a loop is the faults on the memory the loop touches, not
/// also one for a page of the loop's code that was not mapped yet.
pub fn minor_faults() -> u64 {
    static OWN_CODE: Once = Once::new();
    OWN_CODE.call_once(map_in_own_code);
    // SAFETY: `getrusage` writes one `rusage` to the pointer, which points to one.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: As above; RUSAGE_THREAD counts this thread only.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_minflt as u64
}

/// Maps in every page of the files this process runs code from (its executable and shared
/// libraries: each of their mappings, code and read-only data), with `MADV_POPULATE_READ`.
///
/// A code page is mapped at its first run, by a minor fault; file fault-around maps the code
/// around it 64 KiB at a time, and where those windows fall moves with the load address, so
/// without this a count could take one fault more in some runs and not in others. Best effort:
/// a kernel without `MADV_POPULATE_READ` (before 5.14) refuses it, and counts stay as they were.
pub fn map_in_own_code() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let vmas: Vec<MapsLine<'_>> = maps.lines().filter_map(parse_maps_line).collect();
    let code_files: Vec<&str> = vmas
        .iter()
        .filter(|vma| vma.perms.contains('x') && vma.name.starts_with('/'))
        .map(|vma| vma.name)
        .collect();
    for vma in &vmas {
        if vma.perms.starts_with('r') && code_files.contains(&vma.name) {
            // SAFETY: Only page tables of our own file mappings are filled in; their contents
            // and protections do not change.
            unsafe {
                libc::madvise(
                    vma.start as *mut libc::c_void,
                    (vma.end - vma.start) as usize,
                    libc::MADV_POPULATE_READ,
                )
            };
        }
    }
}

impl Lazy {
    /// Runs the experiment on a new object of `dev`, reporting each row to `on_row`.
    pub fn run(&self, dev: &Device, mut on_row: impl FnMut(&Row)) -> io::Result<()> {
        let page = page_size() as usize;
        let len =
            usize::try_from(self.size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let pages = len / page;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // Aligned, so that every fault-ahead window is a whole 64 KiB (a window ends where a
        // page table does).
        let object = dev.map_pmd_aligned(len, rw, libc::MAP_SHARED, 0)?;
        if self.sequential {
            // SAFETY: Our own mapping; the advice changes how it is faulted in, not its data.
            if unsafe { libc::madvise(object.addr().cast(), len, libc::MADV_SEQUENTIAL) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let anon = Mapping::new(len, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)?;
        let order = self.pattern.order(pages);

        let stats0 = dev.mem_stats()?;
        let rss0 = dev.mm_summary(None)?.rss_anon;
        let mut row = Row {
            phase: "first_touch",
            ..Default::default()
        };
        on_row(&row);
        let every = order.len().div_ceil(self.rows.max(1)).max(1);
        let mut anon_faults = 0;
        for chunk in order.chunks(every) {
            for &p in chunk {
                object.write(p * page, 1);
            }
            let f0 = minor_faults();
            for &p in chunk {
                anon.write(p * page, 1);
            }
            anon_faults += minor_faults() - f0;
            let stats = dev.mem_stats()?;
            let rss = dev.mm_summary(None)?.rss_anon;
            row.touched += chunk.len() as u64;
            row.mmscope_faults = stats.obj_faults - stats0.obj_faults;
            row.mmscope_pages = stats.obj_pages;
            row.mmscope_faultaround = stats.obj_faultaround_pages - stats0.obj_faultaround_pages;
            row.anon_faults = anon_faults;
            row.anon_pages = rss.saturating_sub(rss0);
            on_row(&row);
        }

        // A second mapping of the same object: the pages are there, only the page table
        // entries are missing.
        let again = dev.map(len, libc::PROT_READ, libc::MAP_SHARED, 0)?;
        let before = dev.mem_stats()?;
        for &p in &order {
            again.read(p * page);
        }
        let after = dev.mem_stats()?;
        row.phase = "second_mapping";
        row.mmscope_faults = after.obj_faults - before.obj_faults;
        row.mmscope_pages = after.obj_pages;
        row.mmscope_faultaround = after.obj_faultaround_pages - before.obj_faultaround_pages;
        row.anon_faults = 0;
        on_row(&row);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(Pattern::parse("stride:4", 1), Some(Pattern::Stride(4)));
        assert_eq!(Pattern::parse("stride:0", 1), None);
        assert_eq!(Pattern::parse("zigzag", 1), None);
        assert_eq!(Pattern::Stride(4).order(10), vec![0, 4, 8]);
        let mut r = Pattern::Random(7).order(100);
        assert_ne!(r, Pattern::Seq.order(100));
        r.sort();
        assert_eq!(r, Pattern::Seq.order(100));
    }
}
