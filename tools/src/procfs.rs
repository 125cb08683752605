// SPDX-License-Identifier: GPL-2.0

//! Reading procfs: the names of VMAs, which the module's ioctls do not carry, and the parsers
//! of `/proc/<pid>/maps`, `smaps`, `stat` and `status` the procfs source
//! ([`crate::source::Procfs`]) reads its numbers with.

use std::collections::HashMap;
use std::fs;

/// `PROCFS_IOCTL_MAGIC`.
pub const PROCFS_IOCTL_MAGIC: u32 = b'f' as u32;

/// `struct procmap_query` (`include/uapi/linux/fs.h`): the `PROCMAP_QUERY` ioctl on an open
/// `/proc/<pid>/maps` (Linux 6.11 and later).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcmapQuery {
    pub size: u64,
    pub query_flags: u64,
    pub query_addr: u64,
    pub vma_start: u64,
    pub vma_end: u64,
    pub vma_flags: u64,
    pub vma_page_size: u64,
    pub vma_offset: u64,
    pub inode: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub vma_name_size: u32,
    pub build_id_size: u32,
    pub vma_name_addr: u64,
    pub build_id_addr: u64,
}

/// `PROCMAP_QUERY`.
pub const PROCMAP_QUERY: u32 = crate::abi::iowr::<ProcmapQuery>(PROCFS_IOCTL_MAGIC, 17);
/// `PROCMAP_QUERY_VMA_READABLE`.
pub const QUERY_VMA_READABLE: u64 = 0x01;
/// `PROCMAP_QUERY_VMA_WRITABLE`.
pub const QUERY_VMA_WRITABLE: u64 = 0x02;
/// `PROCMAP_QUERY_VMA_EXECUTABLE`.
pub const QUERY_VMA_EXECUTABLE: u64 = 0x04;
/// `PROCMAP_QUERY_VMA_SHARED`: `VM_MAYSHARE`.
pub const QUERY_VMA_SHARED: u64 = 0x08;
/// `PROCMAP_QUERY_COVERING_OR_NEXT_VMA`.
pub const QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;

/// VMA names by start address and inode: a VMA that replaced another at the same address (an
/// anonymous mapping made with `MAP_FIXED` over a file's) does not take the old one's name.
pub type Names = HashMap<(u64, u64), String>;

/// The names `/proc/<pid>/maps` gives the VMAs of `pid` (`None`: this process), by start
/// address and inode. Empty if the file cannot be read: names are a convenience, every number
/// comes from the source.
pub fn names(pid: Option<i32>) -> Names {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/maps"),
        None => "/proc/self/maps".to_string(),
    };
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(parse_maps_line)
        .filter(|vma| !vma.name.is_empty())
        .map(|vma| ((vma.start, vma.inode), vma.name.to_string()))
        .collect()
}

/// A line of `/proc/<pid>/maps`.
pub struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: &'a str,
    /// The offset in bytes (0 for memory without a file).
    pub offset: u64,
    /// The device of the file's filesystem, major and minor (0:0 without a file).
    pub dev: (u32, u32),
    /// The file's inode number (0 without a file).
    pub inode: u64,
    /// The path or `[name]`; empty for an anonymous VMA.
    pub name: &'a str,
}

/// Parses a line of `/proc/<pid>/maps`: `start-end perms offset major:minor inode name`.
pub fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (f, r) = trimmed.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let (start, end) = field()?.split_once('-')?;
    let perms = field()?;
    let offset = field()?;
    let (major, minor) = field()?.split_once(':')?;
    let inode = field()?;
    if perms.len() != 4 {
        return None;
    }
    Some(MapsLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        name: rest.trim(),
    })
}

/// The `MMSCOPE_VMA_*` bits of the smaps `VmFlags` mnemonics in `list` (`rd wr mr mw me ac`).
/// Mnemonics the module does not export (`sd`, `um`, `ss` and so on) are left out.
pub fn vm_flags_bits(list: &str) -> u64 {
    list.split_ascii_whitespace()
        .filter_map(|m| crate::abi::VMA_FLAGS.iter().position(|f| *f == m))
        .fold(0, |bits, i| bits | 1 << i)
}

/// The `VmFlags` of every VMA in the text of `/proc/<pid>/smaps`, as `MMSCOPE_VMA_*` bits, by
/// start and end address.
pub fn smaps_flags(text: &str) -> HashMap<(u64, u64), u64> {
    let mut out = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(list) = line.strip_prefix("VmFlags:") {
            if let Some(range) = current.take() {
                out.insert(range, vm_flags_bits(list));
            }
        } else if line.split_once(' ').is_some_and(|(r, _)| r.contains('-')) {
            // A header line: the maps line of the next VMA. (Field lines are `Key: value`, and
            // their key holds no `-`.)
            if let Some(m) = parse_maps_line(line) {
                current = Some((m.start, m.end));
            }
        }
    }
    out
}

/// Field `n` (numbered from 1, as in proc(5)) of the text of `/proc/<pid>/stat`, as a number.
/// The command name (field 2) may hold spaces and parentheses: fields are counted from the
/// last `)`.
pub fn stat_field(text: &str, n: usize) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_ascii_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// The value of `key` in the text of `/proc/<pid>/status`, in kB (`VmSize:   1234 kB`).
pub fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().strip_suffix(" kB")?.trim().parse().ok())?
    })
}

/// Every field of the text of `/proc/<pid>/stat` from the third on (fields are counted from
/// the last `)`, after the command name), as numbers: field `n` (numbered from 1, as in
/// proc(5)) is at `n - 3`. One pass, for a reader that needs many.
pub fn stat_fields(text: &str) -> Vec<Option<u64>> {
    text.rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_ascii_whitespace()
                .map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every line of the text of `/proc/<pid>/status` whose value is in kB (`VmSize:   1234
/// kB`), as `(key, kB)`: one pass, for a reader that needs many.
pub fn status_kbs(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k, v.trim().strip_suffix(" kB")?.trim().parse().ok()?))
        })
        .collect()
}

/// The command name of `pid` (`/proc/<pid>/comm`), if it can be read.
pub fn comm(pid: Option<i32>) -> Option<String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/comm"),
        None => "/proc/self/comm".to_string(),
    };
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The name procfs gave `v`, if `names` has one for it.
pub fn name<'a>(names: &'a Names, v: &crate::abi::Vma) -> Option<&'a str> {
    names.get(&(v.start, v.inode)).map(String::as_str)
}

/// The names of a traced process's VMAs, read again only when a VMA shows up that has none.
#[derive(Default)]
pub struct NameCache {
    pid: i32,
    names: Names,
}

impl NameCache {
    /// Starts over for the process `pid` (after `exec`).
    pub fn reset(&mut self, pid: i32) {
        self.pid = pid;
        self.names = names(Some(pid));
    }

    /// Makes sure names are known for `vmas`, which `tid` (a thread of the process) sees: read
    /// again if a VMA of a file or of shared memory, which always has a name, has none here.
    pub fn cover(&mut self, tid: i32, vmas: &[crate::abi::Vma]) {
        use crate::abi::kind;
        if vmas.iter().any(|v| {
            matches!(v.kind, kind::FILE | kind::SHMEM)
                && !self.names.contains_key(&(v.start, v.inode))
        }) {
            // Added to, not replaced: the VMAs a call removed keep their names for its diff.
            self.names.extend(names(Some(tid)));
        }
    }

    /// The name procfs gave `v`.
    pub fn get(&self, v: &crate::abi::Vma) -> Option<&str> {
        name(&self.names, v)
    }

    /// The process these names belong to.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vma_in_anothers_place_does_not_take_its_name() {
        use crate::abi::{kind, Vma};
        let file = Vma {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_4000,
            inode: 42,
            kind: kind::FILE,
            ..Default::default()
        };
        let anon = Vma {
            inode: 0,
            kind: kind::ANON,
            ..file
        };
        let cache = NameCache {
            pid: 1,
            names: Names::from([((file.start, file.inode), "/usr/lib/libx.so".to_string())]),
        };
        assert_eq!(cache.get(&file), Some("/usr/lib/libx.so"));
        assert_eq!(
            cache.get(&anon),
            None,
            "MAP_FIXED anonymous memory over a file"
        );
    }

    #[test]
    fn maps_lines() {
        let file = parse_maps_line(
            "7f0000001000-7f0000003000 r-xp 00001000 00:03 10      /usr/lib/a b.so (deleted)",
        )
        .expect("a file line");
        assert_eq!(
            (file.start, file.end, file.perms, file.name),
            (
                0x7f0000001000,
                0x7f0000003000,
                "r-xp",
                "/usr/lib/a b.so (deleted)"
            )
        );
        let anon = parse_maps_line("7f0000004000-7f0000005000 rw-p 00000000 00:00 0 ")
            .expect("an anonymous line");
        assert_eq!((anon.perms, anon.name), ("rw-p", ""));
        assert_eq!((file.offset, file.dev, file.inode), (0x1000, (0, 3), 10));
        assert!(parse_maps_line("not a maps line").is_none());
        assert!(parse_maps_line("1000-2000 rw-p 0 zz:00 0").is_none());
        assert!(parse_maps_line("1000-2000 rw-p 0 00:00").is_none());
        assert!(parse_maps_line("").is_none());
        let gate = parse_maps_line(
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
        )
        .expect("the gate line");
        assert_eq!((gate.start, gate.name), (0xffffffffff600000, "[vsyscall]"));
    }

    #[test]
    fn smaps_vm_flags() {
        let text = "\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
KernelPageSize:        4 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0000001000 r--s 00000000 00:01 1025                       /dev/zero (deleted)
Size:                  4 kB
VmFlags: rd sh mr mw me ms sd
";
        let flags = smaps_flags(text);
        let bits = |names: &[&str]| {
            names
                .iter()
                .map(|n| {
                    1u64 << crate::abi::VMA_FLAGS
                        .iter()
                        .position(|f| f == n)
                        .unwrap_or(63)
                })
                .fold(0, |a, b| a | b)
        };
        assert_eq!(
            flags.get(&(0x55d0c0a00000, 0x55d0c0a21000)),
            Some(&bits(&["rd", "wr", "mr", "mw", "me", "ac"]))
        );
        assert_eq!(
            flags.get(&(0x7f0000000000, 0x7f0000001000)),
            Some(&bits(&["rd", "sh", "mr", "mw", "me", "ms"]))
        );
        assert_eq!(flags.len(), 2);
        assert_eq!(vm_flags_bits("gd lo lf zz"), 1 << 8 | 1 << 9 | 1 << 23);
    }

    #[test]
    fn stat_fields() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5 1000 50 \
                    18446744073709551615 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0 \
                    12288 12800 20480 140100 140200 140200 140300 0";
        // Field 3 is the state, a letter.
        assert_eq!(stat_field(stat, 3), None);
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 26), Some(4096));
        assert_eq!(stat_field(stat, 27), Some(8192));
        assert_eq!(stat_field(stat, 28), Some(140000));
        assert_eq!(stat_field(stat, 47), Some(20480));
        assert_eq!(stat_field(stat, 51), Some(140300));
        assert_eq!(stat_field(stat, 60), None);
        assert_eq!(stat_field(stat, 1), None);
        assert_eq!(stat_field("no parenthesis", 4), None);
    }

    #[test]
    fn status_values() {
        let status = "Name:\tcat\nVmPeak:\t    8000 kB\nVmSize:\t    7000 kB\nRssAnon:\t\t  100 kB\nVmLck:\t bad kB\n";
        assert_eq!(status_kb(status, "VmPeak"), Some(8000));
        assert_eq!(status_kb(status, "VmSize"), Some(7000));
        assert_eq!(status_kb(status, "RssAnon"), Some(100));
        assert_eq!(status_kb(status, "VmLck"), None);
        assert_eq!(status_kb(status, "Name"), None);
        assert_eq!(status_kb(status, "VmHWM"), None);
    }
}
