// SPDX-License-Identifier: GPL-2.0

//! The `mmscope` command on the host, without the module (`make test-host`): the procfs
//! source, held against truths it does not compute itself: what a traced program says its
//! break is (`sbrk(0)`, after each step), `/proc/<pid>/stat` as the program reads it,
//! `/proc/<pid>/maps` and `smaps` of a process that holds still.
//!
//! The helper program is C, compiled here with `cc`, so that its heap is glibc's and its
//! break moves only where it says.

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The helper: `steps` moves the break in known steps and prints `NAME BRK` after each, on
/// one `write` each (stdio would allocate, and move the break, itself); `hold` prints its
/// break and waits for its stdin to close.
const HELPER_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void say(const char *what, unsigned long value)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "%s %lu\n", what, value);
	if (write(1, line, n) != n)
		_exit(3);
}

static void step(const char *what)
{
	say(what, (unsigned long)sbrk(0));
}

/* Field 47 of /proc/self/stat: start_brk. */
static unsigned long stat_start_brk(void)
{
	static char buf[4096];
	int fd = open("/proc/self/stat", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		_exit(4);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	for (int field = 2; p && field < 47; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoul(p + 1, NULL, 10) : 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "hold")) {
		char *block = malloc(1000);
		void *map = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (!block || map == MAP_FAILED)
			return 2;
		memset(block, 1, 1000);
		memset(map, 1, 3 * 4096);
		step("hold");
		char c;
		while (read(0, &c, 1) > 0)
			;
		return 0;
	}
	say("start_brk", stat_start_brk());
	step("start");
	void *a = malloc(1000);
	step("malloc1000");
	sbrk(100);
	step("sbrk+100");
	sbrk(5000);
	step("sbrk+5000");
	void *b = malloc(50000);
	step("malloc50000");
	sbrk(-3000);
	step("sbrk-3000");
	/* Refused (no room for 64 TiB): brk(2) returns the break it leaves. */
	if (sbrk(1UL << 46) != (void *)-1)
		return 5;
	step("refused");
	free(b);
	free(a);
	step("free");
	return 0;
}
"#;

/// The `mmscope` command cargo built for these tests.
fn mmscope() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmscope"));
    cmd.env_remove("NO_COLOR").stdin(Stdio::null());
    cmd
}

/// The helper, compiled once per test into a directory of its own.
fn helper(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mmscope-host-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let src = dir.join("helper.c");
    std::fs::write(&src, HELPER_C).expect("write the helper's source");
    let exe = dir.join("helper");
    let status = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run cc (a C compiler is needed for the host tests)");
    assert!(status.success(), "cc failed on the helper");
    exe
}

/// The lines `NAME VALUE` the helper printed, in order.
fn said(stdout: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// Runs `mmscope trace --json` of the helper with `source`; the events and what the helper
/// printed.
fn trace_helper(test: &str, source: &str) -> (Vec<Value>, Vec<(String, u64)>) {
    let exe = helper(test);
    let out_path = exe.with_file_name("trace.json");
    let out = mmscope()
        .args(["--source", source, "trace", "--json", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&exe)
        .output()
        .expect("run mmscope trace");
    assert_eq!(
        out.status.code(),
        Some(0),
        "mmscope trace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read_to_string(&out_path).expect("read the trace");
    let events = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (events, said(&out.stdout))
}

/// Every `brk` a trace reports, in order: exec's, each call's before and after, each exit's.
fn trace_brks(events: &[Value]) -> Vec<u64> {
    let mut out = Vec::new();
    for e in events {
        for key in ["brk", "brk_before", "brk_after"] {
            match &e[key] {
                Value::Null => {
                    let applies = match e["event"].as_str() {
                        Some("exec") => key == "brk",
                        Some("syscall") => key != "brk",
                        _ => false,
                    };
                    assert!(!applies, "{key} is missing in {e}");
                }
                v => out.push(v.as_u64().expect("brk is a number")),
            }
        }
    }
    out
}

#[test]
fn trace_brk_is_exact_from_procfs() {
    let (events, said) = trace_helper("brk", "procfs");
    let exec = &events[0];
    assert_eq!(exec["event"], "exec", "the first event");
    assert_eq!(exec["source"], "procfs", "the trace names its source");
    assert_eq!(exec["mmap_base"], Value::Null, "mmap_base is unknown");
    let start_brk = said[0].1;
    assert_eq!(said[0].0, "start_brk");
    assert_eq!(
        exec["start_brk"].as_u64(),
        Some(start_brk),
        "start_brk against the program's /proc/self/stat"
    );
    assert_eq!(
        exec["brk"].as_u64(),
        Some(start_brk),
        "brk at exec is start_brk (load_elf_binary)"
    );

    let printed: Vec<u64> = said[1..].iter().map(|(_, v)| *v).collect();
    let printed_set: HashSet<u64> = printed.iter().copied().collect();
    // Every brk the trace reports is one the program saw.
    for brk in trace_brks(&events) {
        assert!(
            printed_set.contains(&brk),
            "the trace reports brk {brk:#x}, which the program never saw: {said:x?}"
        );
    }
    // And every step's break is in the trace, in the program's order: the breaks after the
    // brk calls, each repeat counted once.
    let mut after_calls: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "syscall" && e["syscall"] == "brk")
        .map(|e| {
            let after = e["brk_after"].as_u64().expect("brk_after");
            assert_eq!(e["ret"].as_u64(), Some(after), "brk returns the break: {e}");
            after
        })
        .collect();
    after_calls.dedup();
    let mut steps = printed.clone();
    steps.dedup();
    // The first brk calls, by the loader and glibc's start-up, read the break unchanged.
    after_calls.retain(|b| *b != start_brk);
    steps.retain(|b| *b != start_brk);
    assert_eq!(
        after_calls, steps,
        "the breaks the trace shows, step by step, against the program's sbrk(0)"
    );
    let refused = events
        .iter()
        .filter(|e| e["syscall"] == "brk")
        .find(|e| {
            e["args"][0]
                .as_u64()
                .is_some_and(|a| a != 0 && e["ret"] != a)
        })
        .expect("the refused brk is in the trace");
    let after_refusal = said.iter().find(|(n, _)| n == "refused").map(|s| s.1);
    assert_eq!(
        refused["brk_after"].as_u64(),
        after_refusal,
        "a refused brk leaves the break where it was"
    );
}

#[test]
fn trace_text_names_the_source() {
    let exe = helper("text");
    let out = mmscope()
        .args(["--source", "procfs", "trace", "--"])
        .arg(&exe)
        .output()
        .expect("run mmscope trace");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("exec pid ") && first.ends_with("(source: procfs)"),
        "the first line names the source: {first:?}"
    );
    assert!(first.contains("mmap_base unknown"), "{first:?}");
    assert!(!first.contains("brk unknown"), "brk is known: {first:?}");
}

/// The helper in `hold` mode, stopped after it printed its break; killed on drop.
struct Held {
    child: Child,
    brk: u64,
}

impl Held {
    fn start(test: &str) -> Self {
        let exe = helper(test);
        let mut child = Command::new(&exe)
            .arg("hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the helper");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the helper's line");
        let brk = line
            .trim()
            .strip_prefix("hold ")
            .and_then(|v| v.parse().ok())
            .expect("hold BRK");
        Self { child, brk }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kind `/proc/<pid>/maps` implies for a line, by the module's rules.
fn kind_of(name: &str, inode: u64) -> &'static str {
    match name {
        "[heap]" => "heap",
        "[stack]" => "stack",
        "[vdso]" => "vdso",
        "[vvar]" | "[vvar_vclock]" => "vvar",
        n if n.starts_with("/dev/zero") || n.starts_with("/memfd:") => "shmem",
        _ if inode != 0 => "file",
        "" => "anon",
        n if n.starts_with("[anon:") => "anon",
        _ => "special",
    }
}

#[test]
fn maps_json_equals_proc_maps() {
    let held = Held::start("maps");
    let pid = held.pid().to_string();
    let out = mmscope()
        .args(["--source", "procfs", "maps", "--json", &pid])
        .output()
        .expect("run mmscope maps");
    assert_eq!(
        out.status.code(),
        Some(0),
        "mmscope maps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    assert_eq!(doc["source"], "procfs");
    assert_eq!(doc["summary"]["brk"], Value::Null, "brk is unknown");
    assert!(
        doc["summary"]["unknown"]["brk"]
            .as_str()
            .is_some_and(|why| why.contains("start_brk")),
        "and says why: {}",
        doc["summary"]["unknown"]
    );

    // The gate page (vsyscall) is not a VMA of the address space.
    let lines: Vec<&str> = maps
        .lines()
        .filter(|l| !l.ends_with("[vsyscall]"))
        .collect();
    let vmas = doc["vmas"].as_array().expect("vmas");
    assert_eq!(vmas.len(), lines.len(), "one VMA per maps line");
    assert_eq!(
        doc["summary"]["map_count"].as_u64(),
        Some(lines.len() as u64)
    );
    for (v, line) in vmas.iter().zip(&lines) {
        let f: Vec<&str> = line.splitn(6, ' ').collect();
        let name = f.get(5).map_or("", |n| n.trim());
        let inode: u64 = f[4].parse().expect("inode");
        let ours = (
            format!(
                "{:x}-{:x}",
                v["start"].as_u64().unwrap_or(0),
                v["end"].as_u64().unwrap_or(0)
            ),
            v["perms"].as_str().unwrap_or(""),
            format!("{:08x}", v["offset"].as_u64().unwrap_or(u64::MAX)),
            v["dev"].as_str().unwrap_or(""),
            v["inode"].as_u64().unwrap_or(u64::MAX),
            v["name"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
        );
        let theirs = (
            f[0].to_string(),
            f[1],
            f[2].to_string(),
            f[3],
            inode,
            name,
            kind_of(name, inode),
        );
        assert_eq!(ours, theirs, "the VMA against {line:?}");
    }
    let shared = vmas
        .iter()
        .find(|v| v["name"].as_str() == Some("/dev/zero (deleted)"))
        .expect("the helper's MAP_SHARED|MAP_ANONYMOUS mapping");
    assert_eq!(shared["kind"], "shmem");
    assert_eq!(shared["size"].as_u64(), Some(3 * 4096));
    assert!(
        doc["summary"]["rss_shmem"].as_u64() >= Some(3),
        "the helper's 3 shared pages are resident: {}",
        doc["summary"]
    );

    // Every flag smaps shows that the module exports, and no other.
    let mut smaps_flags = Vec::new();
    for l in smaps.lines() {
        if let Some(list) = l.strip_prefix("VmFlags:") {
            let known: Vec<&str> = list
                .split_whitespace()
                .filter(|m| mmscope::abi::VMA_FLAGS.contains(m))
                .collect();
            smaps_flags.push(known);
        }
    }
    let smaps_flags: Vec<Vec<&str>> = smaps_flags
        .into_iter()
        .zip(maps.lines())
        .filter(|(_, l)| !l.ends_with("[vsyscall]"))
        .map(|(f, _)| f)
        .collect();
    for (v, want) in vmas.iter().zip(&smaps_flags) {
        let mut ours: Vec<&str> = v["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut want = want.clone();
        ours.sort_unstable();
        want.sort_unstable();
        assert_eq!(ours, want, "the flags of {v}");
    }

    // The counters against status, the layout against stat.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Read here, not with the library's own parsers: `Key:   N kB` lines, and the fields after
    // the last `)` of stat (the command name may hold spaces and parentheses).
    let kb = |key: &str| {
        status.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let stat_field = |n: usize| {
        let (_, after) = stat.rsplit_once(')')?;
        after.split_whitespace().nth(n - 3)?.parse::<u64>().ok()
    };
    let pk = doc["summary"]["page_size"].as_u64().unwrap_or(4096) / 1024;
    for (field, key) in [
        ("total_vm", "VmSize"),
        ("data_vm", "VmData"),
        ("stack_vm", "VmStk"),
        ("rss_anon", "RssAnon"),
        ("rss_file", "RssFile"),
        ("rss_shmem", "RssShmem"),
    ] {
        assert_eq!(
            doc["summary"][field].as_u64().map(|p| p * pk),
            kb(key),
            "{field} against {key}"
        );
    }
    let s = &doc["summary"];
    assert_eq!(
        s["start_brk"].as_u64(),
        stat_field(47),
        "start_brk against field 47 of /proc/PID/stat"
    );
    assert!(
        s["start_brk"].as_u64().is_some_and(|b| b <= held.brk),
        "start_brk {} is at or below the break the helper reads, {:#x}",
        s["start_brk"],
        held.brk
    );
}

#[test]
fn maps_text_says_brk_is_unknown() {
    let held = Held::start("text");
    let out = mmscope()
        .args(["--source", "procfs", "maps", &held.pid().to_string()])
        .output()
        .expect("run mmscope maps");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("  source     procfs"),
        "the header names the source: {:?}",
        lines[1]
    );
    let heap = lines
        .iter()
        .find(|l| l.starts_with("  heap "))
        .expect("a heap line");
    assert!(
        heap.contains("brk unknown: procfs shows only start_brk"),
        "the heap line says brk is unknown and why: {heap:?}"
    );
    assert!(text.contains("mmap_base  unknown"), "{text}");
    assert!(text.contains("[heap]"), "the table and picture are there");
    assert!(
        text.contains("high addresses on top"),
        "the picture is there"
    );
}

#[test]
fn module_without_the_device_fails_with_a_sentence() {
    let missing = Path::new("/nonexistent/mmscope");
    for args in [&["--source", "module", "maps"][..], &["lazy"][..]] {
        let out = mmscope()
            .arg("--device")
            .arg(missing)
            .args(args)
            .output()
            .expect("run mmscope");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one sentence: {err:?}");
        assert!(
            err.contains("/nonexistent/mmscope does not exist")
                && err.contains("insmod mmscope.ko"),
            "{args:?}: {err:?}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = mmscope()
        .args(["--source", "procfs", "lazy"])
        .output()
        .expect("run mmscope lazy");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mmscope lazy maps the module's device"));
}

#[test]
fn auto_without_the_device_is_procfs() {
    let out = mmscope()
        .args(["--device", "/nonexistent/mmscope", "maps", "--json"])
        .output()
        .expect("run mmscope maps");
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(doc["source"], "procfs");
}
