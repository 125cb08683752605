// SPDX-License-Identifier: GPL-2.0

//! The heap scenarios (`demo/heap/*.c`): what malloc really does, measured.
//!
//! Each scenario is a small C program built once per allocator (glibc, musl, jemalloc,
//! mimalloc; `MMSCOPE_HEAP/ALLOCATOR/SCENARIO`), and once more for a second glibc
//! (`MMSCOPE_HEAP/glibc-SERIES/SCENARIO`, the same code run on that glibc's own loader and
//! libraries: `scripts/build-heap.sh`). It drives the allocator, watches its own
//! address space through the module's ioctls (checking every snapshot against
//! `/proc/self/maps` and `/proc/self/stat` as it goes), and prints one verdict per claim. The
//! tests here run every build in a fresh process, hold glibc to its documented behaviour and
//! the kernel's claims to every allocator, run the glibc builds again under `mmscope trace`
//! (which must change nothing), and write the claims table (`claims.md` in `MMSCOPE_OUT`)
//! that the README carries.

use crate::harness::{Context, Outcome, TestResult};
use crate::{check, check_eq, skip};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The allocators, in the table's column order; the second glibc's column, found in
/// `MMSCOPE_HEAP` (see [`columns`]), comes after the first.
const ALLOCATORS: &[&str] = &["glibc", "musl", "jemalloc", "mimalloc"];

/// The build directory of the glibc every column's program was linked against.
const GLIBC: &str = "glibc";

/// Where the tests leave each scenario's verdicts for [`claims_table`].
const RESULTS_DIR: &str = "/tmp/mmscope-heap";

/// A claim's verdict, as a scenario prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Holds,
    HoldsIf,
    DoesNotHold,
    NotApplicable,
}

impl Verdict {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "holds" => Self::Holds,
            "holds-if" => Self::HoldsIf,
            "does-not-hold" => Self::DoesNotHold,
            "n/a" => Self::NotApplicable,
            _ => return None,
        })
    }

    /// How the table shows it.
    fn label(self) -> &'static str {
        match self {
            Self::Holds => "**holds**",
            Self::HoldsIf => "**holds with a condition**",
            Self::DoesNotHold => "**does not hold**",
            Self::NotApplicable => "n/a",
        }
    }
}

/// Who a claim is about, and so what the tests require of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum About {
    /// The kernel: the verdict it must get whatever the allocator.
    Kernel(Verdict),
    /// glibc's malloc, whose documented behaviour is the verdict given; other allocators'
    /// verdicts are measurements, not requirements.
    Glibc(Verdict),
}

/// One claim of the common explanation of process memory.
struct Claim {
    /// The id the scenario prints.
    id: &'static str,
    /// The scenario program that measures it.
    scenario: &'static str,
    /// The claim, as the table states it.
    text: &'static str,
    about: About,
}

use About::{Glibc, Kernel};
use Verdict::{DoesNotHold, Holds, HoldsIf, NotApplicable};

/// Every claim, in the table's row order.
const CLAIMS: &[Claim] = &[
    Claim {
        id: "small-from-brk",
        scenario: "small",
        text: "`malloc` below the mmap threshold (1 B, 100 KiB and 128 KiB - 24 B, the \
               largest such request, here) comes from the `brk` heap: the block is in \
               `[heap]`, which `brk` grows when its free top is too small; no other VMA appears",
        about: Glibc(Holds),
    },
    Claim {
        id: "edge-default",
        scenario: "edges",
        text: "The edge, by bisection, when the heap must grow (its free top taken first): a \
               request comes from `brk` while its chunk (the request + its 8-byte size field, \
               rounded up to 16) is below the 128 KiB threshold, and gets a mapping from there",
        about: Glibc(Holds),
    },
    Claim {
        id: "large-from-mmap",
        scenario: "large",
        text: "`malloc(128 KiB)` gets a mapping of its own (page-rounded, with the header) \
               between the heap and `mmap_base`; `free` unmaps it",
        about: Glibc(HoldsIf),
    },
    Claim {
        id: "mallopt-threshold",
        scenario: "threshold",
        text: "`mallopt(M_MMAP_THRESHOLD)` moves that boundary both ways",
        about: Glibc(Holds),
    },
    Claim {
        id: "edge-mallopt",
        scenario: "edges",
        text: "…to the byte: after `mallopt(M_MMAP_THRESHOLD, 1 MiB)` the largest request \
               from `brk` has a chunk just below 1 MiB",
        about: Glibc(Holds),
    },
    Claim {
        id: "edge-mallopt-above-max",
        scenario: "edges",
        text: "`mallopt` accepts a threshold above 32 MiB (the dynamic threshold's maximum): \
               at 64 MiB, requests up to 64 MiB - 24 B come from `brk`",
        about: Glibc(Holds),
    },
    Claim {
        id: "dynamic-threshold",
        scenario: "dynamic",
        text: "After an mmapped block (200 KiB here; the largest that does it: below) is \
               freed the threshold rises: the same size then comes from `brk`",
        about: Glibc(Holds),
    },
    Claim {
        id: "dyn-threshold-chunk",
        scenario: "edges",
        text: "…and the new threshold is the freed block's chunk (its whole mapping), not the \
               request: bigger requests than the freed one come from `brk`",
        about: Glibc(Holds),
    },
    Claim {
        id: "dyn-trim-threshold",
        scenario: "edges",
        text: "…and the trim threshold becomes twice that: `free` lowers `brk` only once the \
               top chunk reaches twice the freed block's mapping",
        about: Glibc(Holds),
    },
    Claim {
        id: "dyn-threshold-max",
        scenario: "edges",
        text: "A freed mapped block moves the threshold if its mapping is at most 32 MiB \
               (`DEFAULT_MMAP_THRESHOLD_MAX`)",
        about: Glibc(DoesNotHold),
    },
    Claim {
        id: "free-shrinks-brk",
        scenario: "trim",
        text: "`free` shrinks the heap: `brk` goes down",
        about: Glibc(HoldsIf),
    },
    Claim {
        id: "malloc-trim",
        scenario: "trim",
        text: "`malloc_trim(0)` gives free heap memory back to the kernel",
        about: Glibc(Holds),
    },
    Claim {
        id: "trim-edge",
        scenario: "edges",
        text: "The trimming edge, by bisection, at the default thresholds, the block having \
               just grown the heap: `free` of a block at the top lowers `brk` once the block is \
               too big for the thread cache, giving back all but a 128 KiB top (`M_TOP_PAD`)",
        about: Glibc(Holds),
    },
    Claim {
        id: "small-frees",
        scenario: "edges",
        text: "Freeing many small blocks (1,000 of 1 KiB, all of them: nothing live above) \
               gives the heap back without `malloc_trim`",
        about: Glibc(Holds),
    },
    Claim {
        id: "first-growth",
        scenario: "edges",
        text: "A fresh process's first `malloc(1)` grows the heap by 132 KiB: the first \
               chunk (the thread cache's own, 656 B) and `M_TOP_PAD` (128 KiB), page-rounded; \
               the block comes from that pad",
        about: Glibc(Holds),
    },
    Claim {
        id: "lazy-malloc",
        scenario: "lazy",
        text: "`malloc` reserves only address space: RSS does not move",
        about: Glibc(HoldsIf),
    },
    Claim {
        id: "lazy-memset",
        scenario: "lazy",
        text: "Writing k pages of a fresh block makes exactly k pages resident",
        about: Kernel(Holds),
    },
    Claim {
        id: "lazy-calloc",
        scenario: "lazy",
        text: "`calloc` of a large block touches none of it (fresh memory is already zero)",
        about: Glibc(HoldsIf),
    },
    Claim {
        id: "brk-exact",
        scenario: "brk-unaligned",
        text: "The kernel keeps `mm->brk` to the byte; the `[heap]` VMA ends page-aligned",
        about: Kernel(Holds),
    },
    Claim {
        id: "heap-before-main",
        scenario: "heap-before-main",
        text: "A program has no heap before `main`: `brk` is still `start_brk` (glibc: built \
               dynamically, and statically)",
        about: Glibc(DoesNotHold),
    },
    Claim {
        id: "fork-heap",
        scenario: "fork-heap",
        text: "After `fork`, a child that grows `brk` grows its `[heap]`: one VMA, longer; \
               its parent's is unchanged",
        about: Kernel(DoesNotHold),
    },
    Claim {
        id: "brk-blocked",
        scenario: "brk-blocked",
        text: "`brk` cannot grow into an existing mapping",
        about: Kernel(Holds),
    },
    Claim {
        id: "brk-blocked-fallback",
        scenario: "brk-blocked",
        text: "…and `malloc` carries on with `mmap` (a non-contiguous heap)",
        about: Glibc(Holds),
    },
    Claim {
        id: "brk-blocked-again",
        scenario: "brk-blocked",
        text: "…and each time that runs out, with `brk` still blocked, maps at least 1 MiB \
               more (`MMAP_AS_MORECORE_SIZE`)",
        about: Glibc(DoesNotHold),
    },
    Claim {
        id: "rlimit-data-brk",
        scenario: "rlimit-data",
        text: "`RLIMIT_DATA` below the current data size stops `brk`",
        about: Kernel(Holds),
    },
    Claim {
        id: "rlimit-data-mmap",
        scenario: "rlimit-data",
        text: "…and `malloc` still succeeds through `mmap`",
        about: Glibc(DoesNotHold),
    },
    Claim {
        id: "rlimit-data-shrink",
        scenario: "rlimit-data",
        text: "With `RLIMIT_DATA` below what the heap already uses, `brk` can still shrink \
               (by a page, to a size still above the limit)",
        about: Kernel(DoesNotHold),
    },
    Claim {
        id: "rlimit-data-zero",
        scenario: "rlimit-data",
        text: "A soft `RLIMIT_DATA` of 0 (a larger hard limit) refuses `brk` but not new \
               private mappings: the kernel's exception for it (`may_expand_vm`)",
        about: Kernel(Holds),
    },
    Claim {
        id: "rlimit-data-zero-malloc",
        scenario: "rlimit-data",
        text: "…so `malloc(1 MiB)` still works then",
        about: Glibc(Holds),
    },
    Claim {
        id: "musl-bump",
        scenario: "bump",
        text: "A static musl program that never calls `free` gets musl's bump allocator, \
               which takes every block from `brk`",
        about: Glibc(NotApplicable),
    },
    Claim {
        id: "thread-arena",
        scenario: "thread",
        text: "A second thread's `malloc` uses an arena of its own: a 64 MiB-aligned \
               reservation, mostly `PROT_NONE`, not `brk`",
        about: Glibc(Holds),
    },
    Claim {
        id: "arena-max",
        scenario: "thread",
        text: "`MALLOC_ARENA_MAX=1` keeps it on the main heap",
        about: Glibc(Holds),
    },
    Claim {
        id: "aslr-on",
        scenario: "aslr",
        text: "`start_brk` is a random distance (up to 1 GiB) above the end of the data segment",
        about: Kernel(Holds),
    },
    Claim {
        id: "aslr-off",
        scenario: "aslr",
        text: "With randomization off (`setarch -R`) it is right after it",
        about: Kernel(Holds),
    },
];

/// The claims whose verdict differs on the second glibc, with that verdict and the change in
/// glibc's history that explains it; every other claim about glibc must get the same verdict
/// on both.
const CHANGED: &[(&str, Verdict, &str)] = &[(
    "brk-blocked-again",
    Holds,
    "glibc 2.38 swapped back the arguments 2.35 had transposed in its call of \
     `sysmalloc_mmap_fallback`",
)];

/// The verdict glibc must get on `claim` in the column `col`, or `None` if it is not
/// required.
fn required(claim: &Claim, col: &Column) -> Option<Verdict> {
    match claim.about {
        Kernel(want) => Some(want),
        Glibc(_) if !col.is_glibc() => None,
        Glibc(want) if col.dir == GLIBC => Some(want),
        Glibc(want) => Some(
            CHANGED
                .iter()
                .find(|(id, _, _)| *id == claim.id)
                .map_or(want, |(_, v, _)| *v),
        ),
    }
}

/// One verdict as a scenario printed it.
#[derive(Clone, Debug)]
struct Found {
    verdict: Verdict,
    numbers: String,
}

/// The directory of the scenario builds.
pub(crate) fn heap_dir() -> Result<PathBuf, Outcome> {
    match std::env::var("MMSCOPE_HEAP") {
        Ok(p) => Ok(PathBuf::from(p)),
        Err(_) => Err(Outcome::Skip("MMSCOPE_HEAP is not set".into())),
    }
}

/// One column of the table: a directory of builds under `MMSCOPE_HEAP`.
struct Column {
    /// The directory: `glibc`, `glibc-2.41`, `musl`, ...
    dir: String,
    /// Its allocator's name: `glibc` for both glibc columns.
    name: &'static str,
    /// The allocator's Debian package version (the directory's `VERSION`).
    version: String,
}

impl Column {
    fn is_glibc(&self) -> bool {
        self.name == GLIBC
    }

    /// The version a running build names on its first line (glibc's upstream version: the
    /// glibc it was loaded with), or `None` where the scenarios print no version.
    fn running(&self) -> Option<String> {
        self.is_glibc()
            .then(|| format!("({GLIBC} {})", self.upstream()))
    }

    /// The upstream part of the Debian version: `2.36` of `2.36-9+deb12u14`.
    fn upstream(&self) -> &str {
        self.version.split('-').next().unwrap_or(&self.version)
    }
}

/// The table's columns: [`ALLOCATORS`], with the second glibc's build (`glibc-SERIES`, which
/// `scripts/build-heap.sh` always makes) after the first.
fn columns(dir: &std::path::Path) -> Result<Vec<Column>, Outcome> {
    let mut second = Vec::new();
    for entry in std::fs::read_dir(dir).context(dir.display())? {
        let name = entry.context(dir.display())?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("glibc-") {
            second.push(name.into_owned());
        }
    }
    check_eq!(
        second.len(),
        1,
        "second glibc builds in {}: {second:?} (scripts/build-heap.sh makes one)",
        dir.display()
    );
    let mut columns = Vec::new();
    for alloc in ALLOCATORS {
        let mut dirs = vec![alloc.to_string()];
        if *alloc == GLIBC {
            dirs.append(&mut second);
        }
        for d in dirs {
            let version_file = dir.join(&d).join("VERSION");
            let version = std::fs::read_to_string(&version_file).context(version_file.display())?;
            columns.push(Column {
                dir: d,
                name: alloc,
                version: version.trim().to_string(),
            });
        }
    }
    Ok(columns)
}

/// The verdicts in a scenario's output: `claim: ID: VERDICT: NUMBERS` lines.
fn parse_claims(out: &str) -> Result<BTreeMap<String, Found>, Outcome> {
    let mut found = BTreeMap::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("claim: ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ": ");
        let (Some(id), Some(word), Some(numbers)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Outcome::Fail(format!("malformed claim line {line:?}")));
        };
        let verdict = Verdict::parse(word)
            .ok_or_else(|| Outcome::Fail(format!("unknown verdict in {line:?}")))?;
        check!(
            CLAIMS.iter().any(|c| c.id == id),
            "unknown claim id in {line:?}"
        );
        let f = Found {
            verdict,
            numbers: numbers.to_string(),
        };
        check!(
            found.insert(id.to_string(), f).is_none(),
            "claim {id} printed twice"
        );
    }
    Ok(found)
}

/// Runs one build of a scenario (under `mmscope trace` if `traced`); returns its output.
fn run_scenario(prog: &PathBuf, traced: bool) -> Result<String, Outcome> {
    let mut cmd = if traced {
        let bin = std::env::var("MMSCOPE_BIN")
            .map_err(|_| Outcome::Skip("MMSCOPE_BIN is not set".into()))?;
        let mut c = Command::new(bin);
        c.args(["trace", "-o", "/dev/null", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    };
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context(format!("running {}", prog.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in stdout.lines() {
        println!("# {line}");
    }
    check!(
        out.status.success(),
        "{}{} failed ({}): {}{}",
        if traced { "mmscope trace -- " } else { "" },
        prog.display(),
        out.status,
        stdout.lines().last().unwrap_or(""),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Runs `scenario` for every allocator, checks its verdicts and keeps them for the table.
pub fn scenario(name: &str) -> TestResult {
    let dir = heap_dir()?;
    if !dir.join(GLIBC).join(name).exists() {
        skip!("{} has no build of {name}", dir.display());
    }
    let ours: Vec<&Claim> = CLAIMS.iter().filter(|c| c.scenario == name).collect();
    let mut saved = String::new();
    for col in columns(&dir)? {
        let alloc = &col.dir;
        let prog = dir.join(alloc).join(name);
        let out = run_scenario(&prog, false)?;
        if let Some(running) = col.running() {
            // The second glibc's column must really run on it, not on the host's.
            let first = out.lines().next().unwrap_or("");
            check!(
                first.contains(&running),
                "{alloc}/{name} should run on {running}, its first line says {first:?}"
            );
        }
        let found = parse_claims(&out)?;
        for claim in &ours {
            let Some(f) = found.get(claim.id) else {
                return Err(Outcome::Fail(format!(
                    "{alloc}/{name} gave no verdict on {}",
                    claim.id
                )));
            };
            if let Some(want) = required(claim, &col) {
                check_eq!(
                    f.verdict,
                    want,
                    "{} with {alloc} (see CHANGED for a claim that changed between the two \
                     glibc versions): {}",
                    claim.id,
                    f.numbers
                );
            }
            writeln!(
                saved,
                "{alloc}\t{}\t{}\t{}",
                claim.id,
                f.verdict.label(),
                f.numbers
            )
            .map_err(|e| Outcome::Fail(e.to_string()))?;
        }
        check_eq!(
            found.len(),
            ours.len(),
            "{alloc}/{name} printed verdicts on other scenarios' claims"
        );
        if alloc == GLIBC {
            // The demo shows the scenarios under the tracer: it must not change a verdict.
            let traced = parse_claims(&run_scenario(&prog, true)?)?;
            for claim in &ours {
                check_eq!(
                    traced.get(claim.id).map(|f| f.verdict),
                    found.get(claim.id).map(|f| f.verdict),
                    "{} under mmscope trace",
                    claim.id
                );
            }
        }
    }
    std::fs::create_dir_all(RESULTS_DIR).context(RESULTS_DIR)?;
    let path = format!("{RESULTS_DIR}/{name}");
    std::fs::write(&path, saved).context(&path)?;
    Ok(())
}

/// The Markdown claims table from the verdicts the scenario tests left.
fn table(dir: &std::path::Path) -> Result<String, Outcome> {
    let mut results: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    let scenarios: std::collections::BTreeSet<&str> = CLAIMS.iter().map(|c| c.scenario).collect();
    for scenario in scenarios {
        let path = format!("{RESULTS_DIR}/{scenario}");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Outcome::Fail(format!("{path}: {e} (did heap_{scenario} pass?)")))?;
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(4, '\t').collect();
            if let [alloc, id, verdict, numbers] = f[..] {
                results.insert(
                    (alloc.to_string(), id.to_string()),
                    (verdict.to_string(), numbers.to_string()),
                );
            }
        }
    }
    let columns = columns(dir)?;
    let mut md = String::from("| Claim |");
    let mut rule = String::from("|---|");
    for col in &columns {
        // The fetched glibc by its upstream version: its suite's next revision, fetched by a
        // fresh cache, changes nothing measured, and must not change the table.
        let version = if col.is_glibc() && col.dir != GLIBC {
            col.upstream()
        } else {
            &col.version
        };
        md += &format!(" {} {version} |", col.name);
        rule += "---|";
    }
    md += "\n";
    md += &rule;
    md += "\n";
    let first_version = columns
        .iter()
        .find(|c| c.dir == GLIBC)
        .map_or("", Column::upstream);
    for claim in CLAIMS {
        md += &format!("| {} |", claim.text);
        let verdict_of = |alloc: &str| {
            results
                .get(&(alloc.to_string(), claim.id.to_string()))
                .ok_or_else(|| Outcome::Fail(format!("no verdict on {} for {alloc}", claim.id)))
        };
        let first = &verdict_of(GLIBC)?.0;
        for col in &columns {
            let (verdict, numbers) = verdict_of(&col.dir)?;
            md += &format!(" {verdict}: {}", numbers.replace('|', "\\|"));
            if col.is_glibc() && verdict != first {
                // A verdict that changed between the two glibc versions says so, and why.
                let why = CHANGED
                    .iter()
                    .find(|(id, _, _)| *id == claim.id)
                    .map(|(_, _, why)| *why)
                    .ok_or_else(|| {
                        Outcome::Fail(format!(
                            "{} differs between the glibc versions, and CHANGED does not say why",
                            claim.id
                        ))
                    })?;
                md += &format!(" (*unlike glibc {first_version}*: {why})");
            }
            md += " |";
        }
        md += "\n";
    }
    Ok(md)
}

/// Writes the claims table to `MMSCOPE_OUT/claims.md` (and into the TAP log).
pub fn claims_table() -> TestResult {
    let dir = heap_dir()?;
    let md = table(&dir)?;
    for line in md.lines() {
        println!("# {line}");
    }
    if let Ok(out) = std::env::var("MMSCOPE_OUT") {
        let path = format!("{out}/claims.md");
        std::fs::write(&path, &md).context(&path)?;
    }
    Ok(())
}
