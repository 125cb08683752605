// SPDX-License-Identifier: GPL-2.0

//! The memory system calls `mmscope trace` follows, and how they print: as `strace` prints
//! them, with symbolic flags.

use serde::Serialize;

/// A system call that changes an address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemCall {
    Brk,
    Mmap,
    Munmap,
    Mremap,
    Mprotect,
    PkeyMprotect,
    Madvise,
    Shmat,
    Shmdt,
}

/// Every call, in the order the summary lists them.
pub const ALL: [MemCall; 9] = [
    MemCall::Brk,
    MemCall::Mmap,
    MemCall::Munmap,
    MemCall::Mremap,
    MemCall::Mprotect,
    MemCall::PkeyMprotect,
    MemCall::Madvise,
    MemCall::Shmat,
    MemCall::Shmdt,
];

impl MemCall {
    /// The call with x86-64 system call number `nr`, if it is one of ours.
    pub fn from_x86_64(nr: u64) -> Option<Self> {
        Some(match nr {
            12 => Self::Brk,
            9 => Self::Mmap,
            11 => Self::Munmap,
            25 => Self::Mremap,
            10 => Self::Mprotect,
            329 => Self::PkeyMprotect,
            28 => Self::Madvise,
            30 => Self::Shmat,
            67 => Self::Shmdt,
            _ => return None,
        })
    }

    /// Its name, as in the C library and `strace`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Brk => "brk",
            Self::Mmap => "mmap",
            Self::Munmap => "munmap",
            Self::Mremap => "mremap",
            Self::Mprotect => "mprotect",
            Self::PkeyMprotect => "pkey_mprotect",
            Self::Madvise => "madvise",
            Self::Shmat => "shmat",
            Self::Shmdt => "shmdt",
        }
    }

    /// How many arguments it takes.
    pub fn arg_count(self) -> usize {
        match self {
            Self::Brk | Self::Shmdt => 1,
            Self::Munmap => 2,
            Self::Mprotect | Self::Madvise | Self::Shmat => 3,
            Self::PkeyMprotect => 4,
            Self::Mremap => 5,
            Self::Mmap => 6,
        }
    }

    /// Whether its result is an address (printed in hex) rather than 0 or -1.
    pub fn returns_address(self) -> bool {
        matches!(self, Self::Brk | Self::Mmap | Self::Mremap | Self::Shmat)
    }

    /// The call as `strace` prints it: `mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS,
    /// -1, 0)`.
    pub fn format(self, args: &[u64]) -> String {
        let mut out = String::new();
        self.format_into(args, &mut out);
        out
    }

    /// [`MemCall::format`], appended to `out`: with no allocation of its own, as a trace
    /// prints it at every call.
    pub fn format_into(self, args: &[u64], out: &mut String) {
        use std::fmt::Write;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        let dec = |out: &mut String, v: i64| {
            let _ = write!(out, "{v}");
        };
        out.push_str(self.name());
        out.push('(');
        match self {
            Self::Brk | Self::Shmdt => ptr_into(out, a(0)),
            Self::Mmap => {
                ptr_into(out, a(0));
                out.push_str(", ");
                dec(out, a(1) as i64);
                out.push_str(", ");
                flags_into(out, a(2), PROT, "PROT_NONE");
                out.push_str(", ");
                map_flags_into(out, a(3));
                out.push_str(", ");
                dec(out, i64::from(a(4) as i32));
                let _ = write!(out, ", {:#x}", a(5));
            }
            Self::Munmap => {
                ptr_into(out, a(0));
                out.push_str(", ");
                dec(out, a(1) as i64);
            }
            Self::Mprotect | Self::PkeyMprotect => {
                ptr_into(out, a(0));
                out.push_str(", ");
                dec(out, a(1) as i64);
                out.push_str(", ");
                flags_into(out, a(2), PROT, "PROT_NONE");
                if self == Self::PkeyMprotect {
                    out.push_str(", ");
                    dec(out, i64::from(a(3) as i32));
                }
            }
            _ => {
                let parts = self.parts(args);
                out.push_str(&parts.join(", "));
            }
        }
        out.push(')');
    }

    /// The arguments of the calls [`MemCall::format_into`] does not write itself (the rarer
    /// ones), each as `strace` prints it.
    fn parts(self, args: &[u64]) -> Vec<String> {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        match self {
            Self::Mremap => {
                let mut v = vec![
                    ptr(a(0)),
                    a(1).to_string(),
                    a(2).to_string(),
                    flags(a(3), MREMAP, "0"),
                ];
                if a(3) & 2 != 0 {
                    v.push(ptr(a(4)));
                }
                v
            }
            Self::Madvise => vec![ptr(a(0)), a(1).to_string(), advice(a(2))],
            Self::Shmat => vec![(a(0) as i32).to_string(), ptr(a(1)), flags(a(2), SHM, "0")],
            Self::Brk
            | Self::Shmdt
            | Self::Mmap
            | Self::Munmap
            | Self::Mprotect
            | Self::PkeyMprotect => Vec::new(),
        }
    }

    /// The result as `strace` prints it: an address, 0, or `-1 ENOMEM (Cannot allocate
    /// memory)`.
    pub fn format_result(self, ret: i64) -> String {
        let mut out = String::new();
        self.format_result_into(ret, &mut out);
        out
    }

    /// [`MemCall::format_result`], appended to `out`.
    pub fn format_result_into(self, ret: i64, out: &mut String) {
        use std::fmt::Write;
        let _ = if (-4095..0).contains(&ret) {
            let errno = nix::errno::Errno::from_raw(-ret as i32);
            write!(out, "-1 {errno:?} ({})", errno.desc())
        } else if self.returns_address() {
            write!(out, "{ret:#x}")
        } else {
            write!(out, "{ret}")
        };
    }
}

/// Whether `call` with `args` failed, returning `ret`: an errno, or for `brk`, a break other
/// than the one asked for (`brk(2)` returns the break it leaves, also when it refuses to move
/// it; `brk(NULL)` only asks).
pub fn failed(call: MemCall, args: &[u64], ret: i64) -> bool {
    match (call, args.first()) {
        (MemCall::Brk, Some(&want)) if want != 0 => ret as u64 != want,
        _ => errno_name(ret).is_some(),
    }
}

/// The errno name of a failed result, `None` if it succeeded.
pub fn errno_name(ret: i64) -> Option<String> {
    (-4095..0)
        .contains(&ret)
        .then(|| format!("{:?}", nix::errno::Errno::from_raw(-ret as i32)))
}

/// A pointer argument: `NULL` or hex.
fn ptr(v: u64) -> String {
    let mut out = String::new();
    ptr_into(&mut out, v);
    out
}

/// [`ptr`], appended to `out`.
fn ptr_into(out: &mut String, v: u64) {
    use std::fmt::Write;
    if v == 0 {
        out.push_str("NULL");
    } else {
        let _ = write!(out, "{v:#x}");
    }
}

/// Symbolic flags, with what is left over in hex.
fn flags(v: u64, names: &[(u64, &str)], zero: &str) -> String {
    let mut out = String::new();
    flags_into(&mut out, v, names, zero);
    out
}

/// [`flags`], appended to `out`.
fn flags_into(out: &mut String, v: u64, names: &[(u64, &str)], zero: &str) {
    use std::fmt::Write;
    if v == 0 {
        out.push_str(zero);
        return;
    }
    let mut rest = v;
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push('|');
        }
    };
    for &(bit, name) in names {
        if bit != 0 && rest & bit == bit {
            sep(out);
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        sep(out);
        let _ = write!(out, "{rest:#x}");
    }
}

/// `MAP_HUGETLB`.
const MAP_HUGETLB: u64 = 0x40000;
/// `MAP_HUGE_SHIFT`: with `MAP_HUGETLB`, bits 26-31 hold log2 of the huge page size.
const MAP_HUGE_SHIFT: u64 = 26;
/// `MAP_HUGE_MASK`.
const MAP_HUGE_MASK: u64 = 0x3f;

/// `mmap` flags as `strace` prints them: with `MAP_HUGETLB`, the page size in bits 26-31 as
/// `MAP_HUGE_2MB`, `MAP_HUGE_1GB` (`include/uapi/asm-generic/hugetlb_encode.h`), not as
/// `MAP_UNINITIALIZED` and leftover bits; appended to `out`.
fn map_flags_into(out: &mut String, v: u64) {
    let huge = (v >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if v & MAP_HUGETLB == 0 || huge == 0 {
        flags_into(out, v, MAP, "0");
    } else {
        out.push_str(&huge_map_flags(v, huge));
    }
}

/// The flags of a `MAP_HUGETLB` mapping whose size field holds `huge` (log2 of the page size).
fn huge_map_flags(v: u64, huge: u64) -> String {
    let size = match huge {
        0..=9 => format!("{}B", 1u64 << huge),
        10..=19 => format!("{}KB", 1u64 << (huge - 10)),
        20..=29 => format!("{}MB", 1u64 << (huge - 20)),
        _ => format!("{}GB", 1u64 << (huge - 30)),
    };
    let rest = v & !(MAP_HUGE_MASK << MAP_HUGE_SHIFT);
    format!("{}|MAP_HUGE_{size}", flags(rest, MAP, "0"))
}

const PROT: &[(u64, &str)] = &[
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];

const MAP: &[(u64, &str)] = &[
    (0x03, "MAP_SHARED_VALIDATE"),
    (0x01, "MAP_SHARED"),
    (0x02, "MAP_PRIVATE"),
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x40, "MAP_32BIT"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
    (0x4000000, "MAP_UNINITIALIZED"),
];

const MREMAP: &[(u64, &str)] = &[
    (1, "MREMAP_MAYMOVE"),
    (2, "MREMAP_FIXED"),
    (4, "MREMAP_DONTUNMAP"),
];

const SHM: &[(u64, &str)] = &[
    (0o10000, "SHM_RDONLY"),
    (0o20000, "SHM_RND"),
    (0o40000, "SHM_REMAP"),
    (0o100000, "SHM_EXEC"),
];

/// `madvise` advice by name.
fn advice(v: u64) -> String {
    let name = match v {
        0 => "MADV_NORMAL",
        1 => "MADV_RANDOM",
        2 => "MADV_SEQUENTIAL",
        3 => "MADV_WILLNEED",
        4 => "MADV_DONTNEED",
        8 => "MADV_FREE",
        9 => "MADV_REMOVE",
        10 => "MADV_DONTFORK",
        11 => "MADV_DOFORK",
        12 => "MADV_MERGEABLE",
        13 => "MADV_UNMERGEABLE",
        14 => "MADV_HUGEPAGE",
        15 => "MADV_NOHUGEPAGE",
        16 => "MADV_DONTDUMP",
        17 => "MADV_DODUMP",
        18 => "MADV_WIPEONFORK",
        19 => "MADV_KEEPONFORK",
        20 => "MADV_COLD",
        21 => "MADV_PAGEOUT",
        22 => "MADV_POPULATE_READ",
        23 => "MADV_POPULATE_WRITE",
        24 => "MADV_DONTNEED_LOCKED",
        25 => "MADV_COLLAPSE",
        100 => "MADV_HWPOISON",
        _ => return v.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_strace() {
        let args = [0, 4096, 3, 0x22, u64::MAX, 0];
        assert_eq!(
            MemCall::Mmap.format(&args),
            "mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0)"
        );
        assert_eq!(MemCall::Brk.format(&[0]), "brk(NULL)");
        assert_eq!(MemCall::Brk.format(&[0x5000]), "brk(0x5000)");
        assert_eq!(
            MemCall::Munmap.format(&[0x7f00_0000_0000, 8192]),
            "munmap(0x7f0000000000, 8192)"
        );
        assert_eq!(
            MemCall::Mprotect.format(&[0x1000, 4096, 0]),
            "mprotect(0x1000, 4096, PROT_NONE)"
        );
        assert_eq!(
            MemCall::PkeyMprotect.format(&[0x1000, 4096, 5, u64::MAX]),
            "pkey_mprotect(0x1000, 4096, PROT_READ|PROT_EXEC, -1)"
        );
        assert_eq!(
            MemCall::Mremap.format(&[0x1000, 4096, 8192, 3, 0x9000]),
            "mremap(0x1000, 4096, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x9000)"
        );
        assert_eq!(
            MemCall::Mmap.format(&[0x1000, 4096, 0x80_0001, 0x1_0000_0012, 3, 0x2000]),
            "mmap(0x1000, 4096, PROT_READ|0x800000, MAP_PRIVATE|MAP_FIXED|0x100000000, 3, 0x2000)"
        );
        assert_eq!(MemCall::Shmdt.format(&[0x1000]), "shmdt(0x1000)");
        assert_eq!(
            MemCall::Madvise.format(&[0x1000, 8192, 4]),
            "madvise(0x1000, 8192, MADV_DONTNEED)"
        );
        assert_eq!(
            MemCall::Mmap.format_result(0x7f00_0000_0000),
            "0x7f0000000000"
        );
        assert_eq!(MemCall::Munmap.format_result(0), "0");
        assert!(MemCall::Mmap.format_result(-12).starts_with("-1 ENOMEM"));
        assert_eq!(errno_name(-12).as_deref(), Some("ENOMEM"));
        assert_eq!(MemCall::from_x86_64(12), Some(MemCall::Brk));
        assert_eq!(MemCall::from_x86_64(0), None);
    }

    #[test]
    fn huge_page_sizes() {
        let anon_huge = 0x22 | MAP_HUGETLB;
        let mmap = |f: u64| MemCall::Mmap.format(&[0, 2 << 20, 3, f, u64::MAX, 0]);
        assert!(mmap(anon_huge | 21 << 26)
            .contains(", MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB, "));
        assert!(mmap(anon_huge | 30 << 26).contains("|MAP_HUGETLB|MAP_HUGE_1GB, "));
        assert!(mmap(anon_huge | 16 << 26).contains("|MAP_HUGETLB|MAP_HUGE_64KB, "));
        assert!(mmap(anon_huge | 34 << 26).contains("|MAP_HUGETLB|MAP_HUGE_16GB, "));
        assert!(mmap(anon_huge).contains(", MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, "));
        // Without MAP_HUGETLB, bit 26 is MAP_UNINITIALIZED.
        assert!(mmap(0x22 | 0x400_0000).contains("|MAP_UNINITIALIZED, "));
    }

    #[test]
    fn failed_calls() {
        // brk returns the break it leaves: a refusal is the old break, not an errno.
        assert!(failed(MemCall::Brk, &[0x60_0000], 0x50_0000));
        assert!(!failed(MemCall::Brk, &[0x60_0000], 0x60_0000));
        assert!(!failed(MemCall::Brk, &[0], 0x50_0000));
        assert!(failed(MemCall::Mmap, &[0, 4096], -12));
        assert!(!failed(MemCall::Mmap, &[0, 4096], 0x7f00_0000_0000));
        assert!(failed(MemCall::Munmap, &[1, 4096], -22));
    }
}
