// SPDX-License-Identifier: GPL-2.0

//! What the command reads from procfs: only names, which the ioctls do not carry.

use std::collections::HashMap;
use std::fs;

/// The names `/proc/<pid>/maps` gives the VMAs of `pid` (`None`: this process), by start
/// address. Empty if the file cannot be read: names are a convenience, every number comes from
/// the module.
pub fn names(pid: Option<i32>) -> HashMap<u64, String> {
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
        .map(|vma| (vma.start, vma.name.to_string()))
        .collect()
}

/// The fields of a line of `/proc/<pid>/maps` the command uses.
pub struct MapsLine<'a> {
    pub start: u64,
    pub end: u64,
    pub perms: &'a str,
    /// The path or `[name]`; empty for an anonymous VMA.
    pub name: &'a str,
}

/// Parses a line of `/proc/<pid>/maps`.
pub fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let (range, rest) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    let (perms, mut rest) = rest.split_once(' ')?;
    // Skip offset, dev and inode; the rest, trimmed, is the name.
    for _ in 0..3 {
        rest = rest.trim_start();
        rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
    }
    Some(MapsLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        name: rest.trim(),
    })
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

/// The names of a traced process's VMAs, read again only when a VMA shows up that has none.
#[derive(Default)]
pub struct NameCache {
    pid: i32,
    names: HashMap<u64, String>,
}

impl NameCache {
    /// Starts over for the process `pid` (after `exec`).
    pub fn reset(&mut self, pid: i32) {
        self.pid = pid;
        self.names = names(Some(pid));
    }

    /// Makes sure names are known for `vmas`, which `tid` (a thread of the process) sees.
    pub fn cover(&mut self, tid: i32, vmas: &[crate::abi::Vma]) {
        let named = |v: &crate::abi::Vma| v.kind != crate::abi::kind::FILE;
        if vmas
            .iter()
            .any(|v| !named(v) && !self.names.contains_key(&v.start))
        {
            self.names = names(Some(tid));
        }
    }

    /// The name procfs gave the VMA starting at `start`.
    pub fn get(&self, start: u64) -> Option<&str> {
        self.names.get(&start).map(String::as_str)
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
        assert!(parse_maps_line("not a maps line").is_none());
    }
}
