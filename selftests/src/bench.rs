// SPDX-License-Identifier: GPL-2.0

//! `make bench`: the module's paths side by side with the kernel's own, in one guest boot.
//!
//! Every row runs each of its contenders once per round, in turn, for [`ROUNDS`] rounds, and
//! reports the median with the spread (lowest and highest); page faults per page come from
//! `getrusage`. Absolute times under TCG mean little; the ratios within one run are what
//! count. Nothing here asserts a time: benchmarks are not tests.

use crate::sys;
use mmscope::procfs::{ProcmapQuery, PROCMAP_QUERY, QUERY_COVERING_OR_NEXT_VMA};
use mmscope::{abi, Device, Mapping};
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// Rounds per row.
const ROUNDS: usize = 7;
/// Bytes touched by the fault rows.
const FAULT_BYTES: usize = 32 << 20;
/// VMAs in the process for the walk rows.
const VMAS: usize = 1000;

/// One measurement: nanoseconds per unit, and minor faults per page (if it touches pages).
#[derive(Clone, Copy)]
struct Sample {
    ns: f64,
    faults: f64,
}

/// Times `f`, which does `units` units of work over `pages` pages (0: no faults counted).
fn measure(units: usize, pages: usize, f: impl FnOnce()) -> Sample {
    let flt = sys::minor_faults();
    let t = Instant::now();
    f();
    let ns = t.elapsed().as_nanos() as f64 / units as f64;
    let faults = if pages == 0 {
        0.0
    } else {
        (sys::minor_faults() - flt) as f64 / pages as f64
    };
    Sample { ns, faults }
}

/// Median, lowest and highest of the samples' times, and the median fault count.
struct Stats {
    median: f64,
    low: f64,
    high: f64,
    faults: f64,
}

fn stats(samples: &mut [Sample]) -> Stats {
    samples.sort_by(|a, b| a.ns.total_cmp(&b.ns));
    let mut faults: Vec<f64> = samples.iter().map(|s| s.faults).collect();
    faults.sort_by(f64::total_cmp);
    Stats {
        median: samples[samples.len() / 2].ns,
        low: samples[0].ns,
        high: samples[samples.len() - 1].ns,
        faults: faults[faults.len() / 2],
    }
}

fn cell(s: &Stats, unit: &str) -> String {
    let mut c = format!("{:.2} {unit} ({:.2}–{:.2})", s.median, s.low, s.high);
    if s.faults > 0.0 {
        let _ = write!(c, ", {:.2} faults/page", s.faults);
    }
    c
}

/// Runs `contenders` interleaved for [`ROUNDS`] rounds.
fn rounds(contenders: &mut [&mut dyn FnMut() -> Sample]) -> Vec<Stats> {
    let mut samples = vec![Vec::new(); contenders.len()];
    for _ in 0..ROUNDS {
        for (i, c) in contenders.iter_mut().enumerate() {
            samples[i].push(c());
        }
    }
    samples.iter_mut().map(|s| stats(s)).collect()
}

/// A memfd of `FAULT_BYTES`, closed when dropped.
fn memfd() -> OwnedFd {
    // SAFETY: A valid C string; memfd_create has no other preconditions.
    let fd = unsafe { libc::memfd_create(c"bench".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is ours.
    unsafe { libc::ftruncate(fd.as_raw_fd(), FAULT_BYTES as i64) };
    fd
}

/// A new mapping of `FAULT_BYTES` of `kind` (`mmscope`, `mmscope-seq` for one advised
/// `MADV_SEQUENTIAL`, `memfd`, or private anonymous memory), with what backs it; unmapped before
/// the backing goes.
struct Fresh {
    map: Mapping,
    _dev: Option<Device>,
    _memfd: Option<OwnedFd>,
}

impl Fresh {
    fn new(kind: &str, flags: i32) -> Self {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        match kind {
            "mmscope" | "mmscope-seq" => {
                let dev = Device::open().expect("open /dev/mmscope");
                let map = dev.map(FAULT_BYTES, rw, flags, 0).expect("mmap");
                if kind == "mmscope-seq" {
                    // SAFETY: Our own mapping; the advice only changes how it is faulted in.
                    let ret = unsafe {
                        libc::madvise(map.addr().cast(), FAULT_BYTES, libc::MADV_SEQUENTIAL)
                    };
                    assert_eq!(ret, 0, "madvise: {}", std::io::Error::last_os_error());
                }
                Self {
                    map,
                    _dev: Some(dev),
                    _memfd: None,
                }
            }
            "memfd" => {
                let fd = memfd();
                let map = Mapping::new(FAULT_BYTES, rw, flags, fd.as_raw_fd(), 0).expect("mmap");
                Self {
                    map,
                    _dev: None,
                    _memfd: Some(fd),
                }
            }
            _ => {
                let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let map = Mapping::new(FAULT_BYTES, rw, anon, -1, 0).expect("mmap");
                Self {
                    map,
                    _dev: None,
                    _memfd: None,
                }
            }
        }
    }
}

fn write_pages(m: &Mapping, from: usize, to: usize) {
    let ps = crate::sys::page_size();
    for p in from..to {
        m.write(p * ps, 1);
    }
}

fn read_pages(m: &Mapping) -> u64 {
    let ps = crate::sys::page_size();
    (0..m.len() / ps).map(|p| u64::from(m.read(p * ps))).sum()
}

/// A first touch (write) of `FAULT_BYTES` through a fresh mapping of `kind`.
fn first_touch(kind: &str, flags: i32) -> Sample {
    let pages = FAULT_BYTES / crate::sys::page_size();
    let fresh = Fresh::new(kind, flags);
    measure(pages, pages, || write_pages(&fresh.map, 0, pages))
}

/// A new read-only mapping of an object whose pages are all there already: every page read.
fn refault(kind: &str, populated: &Populated) -> Sample {
    let ps = crate::sys::page_size();
    let pages = FAULT_BYTES / ps;
    let m = match kind {
        "mmscope" => populated
            .dev
            .map(FAULT_BYTES, libc::PROT_READ, libc::MAP_SHARED, 0),
        _ => Mapping::new(
            FAULT_BYTES,
            libc::PROT_READ,
            libc::MAP_SHARED,
            populated.memfd.as_raw_fd(),
            0,
        ),
    }
    .expect("mmap");
    let mut sum = 0;
    let s = measure(pages, pages, || sum = read_pages(&m));
    std::hint::black_box(sum);
    s
}

/// An object of each kind, every page written once.
struct Populated {
    dev: Device,
    memfd: OwnedFd,
}

impl Populated {
    fn new() -> Self {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let pages = FAULT_BYTES / crate::sys::page_size();
        let dev = Device::open().expect("open /dev/mmscope");
        write_pages(
            &dev.map(FAULT_BYTES, rw, libc::MAP_SHARED, 0).expect("mmap"),
            0,
            pages,
        );
        let memfd = memfd();
        write_pages(
            &Mapping::new(FAULT_BYTES, rw, libc::MAP_SHARED, memfd.as_raw_fd(), 0).expect("mmap"),
            0,
            pages,
        );
        Self { dev, memfd }
    }
}

/// First touch by `threads` threads, each on its share of the pages; nanoseconds per page of
/// wall time.
fn threaded(kind: &str, threads: usize) -> Sample {
    let pages = FAULT_BYTES / crate::sys::page_size();
    let fresh = Fresh::new(kind, libc::MAP_SHARED);
    let m = &fresh.map;
    let share = pages / threads;
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            s.spawn(move || write_pages(m, i * share, (i + 1) * share));
        }
    });
    let ns = t.elapsed().as_nanos() as f64 / pages as f64;
    Sample { ns, faults: 0.0 }
}

/// `VMAS` small mappings that cannot merge (alternating protections), kept for the walks.
fn many_vmas() -> Mapping {
    let ps = crate::sys::page_size();
    let m = Mapping::new(
        VMAS * ps,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )
    .expect("mmap");
    for p in (0..VMAS).step_by(2) {
        // SAFETY: A page of our own mapping.
        unsafe { libc::mprotect(m.addr().add(p * ps).cast(), ps, libc::PROT_READ) };
    }
    m
}

/// Every VMA through the module's list: one call.
fn walk_mmscope(dev: &Device, buf: &mut [abi::Vma]) -> usize {
    dev.vma_list_page(None, 0, buf)
        .map_or(0, |l| l.count as usize)
}

/// Every VMA through `/proc/self/maps` text, read and parsed into ranges.
fn walk_maps_text(buf: &mut Vec<u8>) -> usize {
    use std::io::Read;
    buf.clear();
    let Ok(mut f) = std::fs::File::open("/proc/self/maps") else {
        return 0;
    };
    let _ = f.read_to_end(buf);
    buf.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let dash = l.iter().position(|&b| b == b'-')?;
            let start = u64::from_str_radix(std::str::from_utf8(&l[..dash]).ok()?, 16).ok()?;
            Some(start)
        })
        .count()
}

/// Every VMA through a `PROCMAP_QUERY` loop on `/proc/self/maps`.
fn walk_procmap(fd: i32) -> usize {
    let mut addr = 0;
    let mut n = 0;
    loop {
        let mut q = ProcmapQuery {
            size: size_of::<ProcmapQuery>() as u64,
            query_flags: QUERY_COVERING_OR_NEXT_VMA,
            query_addr: addr,
            ..Default::default()
        };
        // SAFETY: `q` is a procmap_query of the size it says.
        if unsafe { libc::ioctl(fd, PROCMAP_QUERY as _, &mut q) } != 0 {
            return n;
        }
        n += 1;
        addr = q.vma_end;
    }
}

/// Every VMA through a `MMSCOPE_IOC_VMA_QUERY` loop.
fn walk_mmscope_query(dev: &Device) -> usize {
    let mut addr = 0;
    let mut n = 0;
    while let Ok(v) = dev.vma_query(None, addr, true) {
        n += 1;
        addr = v.end;
    }
    n
}

/// One row of the table: our median and spread, the others', the ratios.
fn row(table: &mut String, path: &str, ours: &Stats, unit: &str, others: &[(&str, &Stats)]) {
    let compared: Vec<String> = others
        .iter()
        .map(|(n, s)| format!("{n}: {}", cell(s, unit)))
        .collect();
    let ratios: Vec<String> = others
        .iter()
        .map(|(n, s)| format!("{}× {n}", ratio(ours.median / s.median)))
        .collect();
    let _ = writeln!(
        table,
        "| {path} | {} | {} | {} |",
        cell(ours, unit),
        compared.join("; "),
        ratios.join(", ")
    );
    eprintln!("bench: {path} done");
}

/// The rows, measured; the Markdown table.
pub fn run() -> String {
    let shared = libc::MAP_SHARED;
    let private = libc::MAP_PRIVATE;
    let mut table = String::from(
        "| path | mmscope | compared with | ratio (mmscope / other) |\n|---|---|---|---|\n",
    );

    let s = rounds(&mut [
        &mut || first_touch("mmscope", shared),
        &mut || first_touch("memfd", shared),
        &mut || first_touch("anon", private),
    ]);
    row(
        &mut table,
        "first-touch write, MAP_SHARED, 32 MiB",
        &s[0],
        "ns/page",
        &[("memfd", &s[1]), ("private anon", &s[2])],
    );

    let s = rounds(&mut [&mut || first_touch("mmscope-seq", shared), &mut || {
        first_touch("anon", private)
    }]);
    row(
        &mut table,
        "first-touch write, MAP_SHARED, 32 MiB, `MADV_SEQUENTIAL` (fault-ahead)",
        &s[0],
        "ns/page",
        &[("private anon", &s[1])],
    );

    let s = rounds(&mut [&mut || first_touch("mmscope", private), &mut || {
        first_touch("memfd", private)
    }]);
    row(
        &mut table,
        "first-touch write, MAP_PRIVATE, 32 MiB",
        &s[0],
        "ns/page",
        &[("memfd MAP_PRIVATE", &s[1])],
    );

    let populated = Populated::new();
    let s = rounds(&mut [&mut || refault("mmscope", &populated), &mut || {
        refault("memfd", &populated)
    }]);
    row(
        &mut table,
        "re-fault read, new mapping of a populated object",
        &s[0],
        "ns/page",
        &[("memfd", &s[1])],
    );
    drop(populated);

    let s = rounds(&mut [
        &mut || threaded("mmscope", 1),
        &mut || threaded("mmscope", 2),
        &mut || threaded("memfd", 1),
        &mut || threaded("memfd", 2),
        &mut || threaded("anon", 1),
        &mut || threaded("anon", 2),
    ]);
    let _ = writeln!(
        table,
        "| 2 threads on disjoint halves: speed-up over 1 thread | {:.2} | memfd {:.2}, private anon {:.2} | |",
        s[0].median / s[1].median,
        s[2].median / s[3].median,
        s[4].median / s[5].median
    );

    let dev = Device::open().expect("open /dev/mmscope");
    let vmas = many_vmas();
    let mut recs = vec![abi::Vma::default(); VMAS + 256];
    let mut text = Vec::with_capacity(1 << 20);
    // SAFETY: A valid C string.
    let maps_fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    let count = walk_mmscope(&dev, &mut recs);
    let s = rounds(&mut [
        &mut || {
            measure(count, 0, || {
                std::hint::black_box(walk_mmscope(&dev, &mut recs));
            })
        },
        &mut || {
            measure(count, 0, || {
                std::hint::black_box(walk_maps_text(&mut text));
            })
        },
        &mut || {
            measure(count, 0, || {
                std::hint::black_box(walk_procmap(maps_fd));
            })
        },
        &mut || {
            measure(count, 0, || {
                std::hint::black_box(walk_mmscope_query(&dev));
            })
        },
    ]);
    row(
        &mut table,
        &format!("full VMA list, {count} VMAs"),
        &s[0],
        "ns/VMA",
        &[("maps text", &s[1]), ("PROCMAP_QUERY loop", &s[2])],
    );
    row(
        &mut table,
        "VMA query loop",
        &s[3],
        "ns/VMA",
        &[("PROCMAP_QUERY loop", &s[2])],
    );
    drop(vmas);

    let mut buf = Vec::with_capacity(1 << 16);
    let s = rounds(&mut [
        &mut || {
            measure(100, 0, || {
                for _ in 0..100 {
                    std::hint::black_box(dev.mm_summary(None).ok());
                }
            })
        },
        &mut || {
            measure(100, 0, || {
                for _ in 0..100 {
                    for f in ["/proc/self/stat", "/proc/self/status"] {
                        use std::io::Read;
                        buf.clear();
                        if let Ok(mut file) = std::fs::File::open(f) {
                            let _ = file.read_to_end(&mut buf);
                        }
                    }
                }
            })
        },
    ]);
    row(
        &mut table,
        "mm summary",
        &s[0],
        "ns",
        &[("/proc/self/stat + status", &s[1])],
    );

    tracer_rows(&mut table);

    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "Measured in one guest boot ({} CPUs, {cpus}; accelerator: {}), {ROUNDS} interleaved rounds, \
         median (lowest–highest).\n\n{table}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::env::var("MMSCOPE_ACCEL").unwrap_or_else(|_| "unknown".into()),
    )
}

/// A ratio with two decimals, or two significant digits below 0.1 (`0.0016`), so that a small
/// one does not read as 0.
fn ratio(r: f64) -> String {
    if r >= 0.1 || r <= 0.0 {
        format!("{r:.2}")
    } else {
        let places = (-r.log10()).floor() as usize + 2;
        format!("{r:.places$}")
    }
}

/// A program's own system calls under each tracer: `--helper costs` (5,000 `getppid`, 200
/// `mmap`/`munmap` pairs, timed from inside) untraced, under `mmscope trace` with and without
/// `-f`, and under
/// `strace -f -e trace=%memory` with and without `--seccomp-bpf` (where the guest has strace,
/// from the host, and the kernel can filter), one run of each per round.
fn tracer_rows(table: &mut String) {
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mmscope = std::env::var("MMSCOPE_BIN").unwrap_or_else(|_| "/bin/mmscope".into());
    let strace = "/usr/bin/strace";
    let helper = [exe.as_str(), "--helper", "costs"];
    let trace = |more: &[&str]| -> Vec<String> {
        let mut v = vec![mmscope.clone(), "trace".into()];
        v.extend(more.iter().map(|m| m.to_string()));
        v.extend(["-o", "/dev/null", "--"].map(String::from));
        v
    };
    // Ours first after the baseline: with -f, under its seccomp filter, as `strace -f
    // --seccomp-bpf`; then without, where every call stops.
    let mut contenders: Vec<(String, Vec<String>)> = vec![
        ("untraced".into(), vec![]),
        ("mmscope trace -f".into(), trace(&["-f"])),
        ("mmscope trace (no -f)".into(), trace(&[])),
        (
            "mmscope trace -f --stacks".into(),
            trace(&["-f", "--stacks"]),
        ),
        (
            "mmscope trace -f --faults".into(),
            trace(&["-f", "--faults"]),
        ),
    ];
    let mut missing = Vec::new();
    if std::path::Path::new(strace).exists() {
        let memory = ["-f", "-e", "trace=%memory", "-o", "/dev/null"];
        let plain: Vec<String> = std::iter::once(strace)
            .chain(memory)
            .map(String::from)
            .collect();
        contenders.push(("strace -f -e trace=%memory".into(), plain.clone()));
        // strace says on stderr when it cannot install its filter, and traces without it.
        let mut seccomp = plain;
        seccomp.insert(1, "--seccomp-bpf".into());
        let probe = std::process::Command::new(&seccomp[0])
            .args(&seccomp[1..])
            .arg("/bin/true")
            .output();
        match probe {
            Ok(out) if out.status.success() && out.stderr.is_empty() => {
                contenders.push(("strace --seccomp-bpf".into(), seccomp));
            }
            Ok(out) => missing.push(format!(
                "strace --seccomp-bpf: not here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => missing.push(format!("strace --seccomp-bpf: {e}")),
        }
    } else {
        missing.push(format!("strace: {strace} is not in this guest"));
    }
    // [contender][round] = (getppid ns, pair ns, first touch ns)
    let mut got: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); contenders.len()];
    for _ in 0..ROUNDS {
        for (i, (_, prefix)) in contenders.iter().enumerate() {
            let argv: Vec<&str> = prefix.iter().map(String::as_str).chain(helper).collect();
            let out = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .output();
            let parsed = out.ok().and_then(|o| {
                let v: serde_json::Value =
                    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).ok()?;
                Some((
                    v["getppid_ns"].as_f64()?,
                    v["pair_ns"].as_f64()?,
                    v["touch_ns"].as_f64()?,
                ))
            });
            if let Some(p) = parsed {
                got[i].push(p);
            }
        }
    }
    let metric = |i: usize, pick: fn(&(f64, f64, f64)) -> f64| {
        let mut samples: Vec<Sample> = got[i]
            .iter()
            .map(|p| Sample {
                ns: pick(p),
                faults: 0.0,
            })
            .collect();
        (!samples.is_empty()).then(|| stats(&mut samples))
    };
    for (path, pick) in [
        (
            "traced program: `getppid`, not a memory call",
            (|p: &(f64, f64, f64)| p.0) as fn(&(f64, f64, f64)) -> f64,
        ),
        (
            "traced program: `mmap` + `munmap` of a page",
            |p: &(f64, f64, f64)| p.1,
        ),
        (
            "traced program: first touch of a page (a page fault)",
            |p: &(f64, f64, f64)| p.2,
        ),
    ] {
        let all: Vec<Option<Stats>> = (0..contenders.len()).map(|i| metric(i, pick)).collect();
        let Some(ours) = &all[1] else {
            let _ = writeln!(table, "| {path} | no result | | |");
            continue;
        };
        let others: Vec<(&str, &Stats)> = contenders
            .iter()
            .zip(&all)
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .filter_map(|(_, ((name, _), s))| Some((name.as_str(), s.as_ref()?)))
            .collect();
        row(table, path, ours, "ns", &others);
    }
    for m in missing {
        let _ = writeln!(table, "| ({m}) | | | |");
    }
}
