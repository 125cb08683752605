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
        .filter_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let start = u64::from_str_radix(range.split_once('-')?.0, 16).ok()?;
            // Skip perms, offset, dev and inode; the rest, trimmed, is the name.
            let mut rest = rest;
            for _ in 0..4 {
                rest = rest.trim_start();
                rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
            }
            let name = rest.trim();
            (!name.is_empty()).then(|| (start, name.to_string()))
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
