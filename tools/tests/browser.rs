// SPDX-License-Identifier: GPL-2.0

//! The pages of `mmscope trace --html`, in a real browser (Debian's headless chromium, driven
//! through chromedriver): pages the guest made from real traces (`make test` puts them and
//! the JSON lines of the same runs in `MMSCOPE_PAGES`), each held against its JSON trace: no
//! script error; the steps, the VMAs at every step and the `brk` line as the JSON says; the
//! step selected by the keyboard, a click on the list and a click in the address space shows
//! that step's call; the filters by call, thread and address; the time axis; the flame graph
//! of resident memory against the tracer's own count. Screenshots go to `MMSCOPE_SHOTS`.
//!
//! Run by `make test` after the guest (`cargo test --test browser -- --ignored`): the tests
//! need the guest's pages, so a plain `cargo test` leaves them out; run without
//! `MMSCOPE_PAGES`, they fail and say so.

#[path = "support/webdriver.rs"]
mod webdriver;

use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use webdriver::{key, Browser};

/// The directory of the pages and their traces.
fn pages_dir() -> PathBuf {
    match std::env::var_os("MMSCOPE_PAGES") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "MMSCOPE_PAGES is not set: these tests check the pages `make test` has the guest \
             make (build/test-out/pages); run `make test`"
        ),
    }
}

/// Where the screenshots go.
fn shots_dir() -> PathBuf {
    std::env::var_os("MMSCOPE_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| pages_dir().join("shots"))
}

/// A JSON trace, as `mmscope trace --json` wrote it in the guest (gzip-compressed there).
struct Trace {
    events: Vec<Value>,
}

impl Trace {
    fn load(dir: &Path, name: &str) -> Trace {
        let gz = dir.join(format!("{name}.jsonl.gz"));
        let bytes = std::fs::read(&gz).unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
        let events = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        Trace { events }
    }

    /// The program's first event: its exec (or attach).
    fn start(&self) -> &Value {
        (self.events.iter())
            .find(|e| e["event"] == "exec" || e["event"] == "attach")
            .expect("the trace has an exec event")
    }

    /// The program's calls.
    fn steps(&self) -> Vec<&Value> {
        let pid = &self.start()["pid"];
        (self.events.iter())
            .filter(|e| e["event"] == "syscall" && &e["pid"] == pid)
            .collect()
    }

    /// Every call, of every process.
    fn all_steps(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e["event"] == "syscall")
            .count()
    }

    /// The VMAs the program's address space had, one per VMA that came: those at its start,
    /// those that came between two calls and those a call added; with those meeting [lo, hi)
    /// only, if given.
    fn lives(&self, range: Option<(u64, u64)>) -> usize {
        let meets = |v: &&Value| {
            range.is_none_or(|(lo, hi)| {
                v["start"].as_u64().unwrap_or(0) < hi && lo < v["end"].as_u64().unwrap_or(0)
            })
        };
        let count = |list: &Value| {
            list.as_array()
                .map_or(0, |a| a.iter().filter(meets).count())
        };
        count(&self.start()["vmas"])
            + (self.steps().iter())
                .map(|s| count(&s["added_before"]) + count(&s["added"]))
                .sum::<usize>()
    }

    /// The program's VMAs (start, end) at its start and after each of its calls, highest
    /// first: its start's list, then each call's changes applied, exactly (every VMA the JSON
    /// says went away must be there).
    fn vma_lists(&self) -> Vec<Vec<(u64, u64)>> {
        let range = |v: &Value| {
            (
                v["start"].as_u64().unwrap_or(0),
                v["end"].as_u64().unwrap_or(0),
            )
        };
        let mut now: Vec<(u64, u64)> = (self.start()["vmas"].as_array().into_iter().flatten())
            .map(range)
            .collect();
        let sorted = |now: &[(u64, u64)]| {
            let mut v = now.to_vec();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v
        };
        let mut lists = vec![sorted(&now)];
        for (i, step) in self.steps().iter().enumerate() {
            for (gone, came) in [("removed_before", "added_before"), ("removed", "added")] {
                for v in step[gone].as_array().into_iter().flatten() {
                    let at = now.iter().position(|r| *r == range(v));
                    let at = at.unwrap_or_else(|| {
                        panic!("step {}: {gone} {:?} was not there", i + 1, range(v))
                    });
                    now.remove(at);
                }
                now.extend(step[came].as_array().into_iter().flatten().map(range));
            }
            lists.push(sorted(&now));
        }
        lists
    }
}

fn hex(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => format!("0x{n:x}"),
        None => "?".to_string(),
    }
}

/// What the page shows now: the selected step's heading, its VMA table's rows, its brk.
fn shown(b: &Browser) -> (String, u64, String) {
    let v = b
        .run(
            "return [document.querySelector('#detail h2').textContent, \
             document.querySelectorAll('#vmas tbody tr').length, \
             (document.getElementById('brk-after') || {}).textContent || ''];",
            json!([]),
        )
        .expect("the page answers");
    (
        v[0].as_str().unwrap_or("").to_string(),
        v[1].as_u64().unwrap_or(0),
        v[2].as_str().unwrap_or("").to_string(),
    )
}

/// The heading the page gives a step: its number, thread and call.
fn heading(step: &Value) -> String {
    format!(
        "#{} [{}] {} = ",
        step["step"],
        step["tid"],
        step["call"].as_str().unwrap_or("")
    )
}

/// The stack a step shows: a line per frame of the JSON's, innermost first, each starting
/// with its function (or `[` where it has none).
fn check_stack(name: &str, p: usize, frames: &Value, shown: &Value) {
    let Some(frames) = frames.as_array() else {
        assert!(
            shown.is_null(),
            "{name}: step {p} shows a stack the JSON has not"
        );
        return;
    };
    let text = shown.as_str().unwrap_or("");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        frames.len(),
        "{name}: step {p}'s stack: {text}"
    );
    for (line, frame) in lines.iter().zip(frames) {
        let want = frame["function"].as_str().unwrap_or("[");
        assert!(
            line.starts_with(want),
            "{name}: step {p}'s frame {line:?} is not {want}"
        );
    }
}

/// The kernel graph a step shows (`--kernel`): a line per node of the JSON's `call` tree,
/// depth first, indented two spaces per level, each starting with its function.
fn check_kernel(name: &str, p: usize, kernel: &Value, shown: &Value) {
    fn walk<'a>(nodes: &'a Value, depth: usize, out: &mut Vec<(usize, &'a str)>) {
        for n in nodes.as_array().into_iter().flatten() {
            out.push((depth, n["function"].as_str().unwrap_or("")));
            walk(&n["calls"], depth + 1, out);
        }
    }
    if kernel.is_null() {
        assert!(
            shown.is_null(),
            "{name}: step {p} shows a kernel graph the JSON has not"
        );
        return;
    }
    let mut want = Vec::new();
    walk(&kernel["call"], 0, &mut want);
    let text = shown.as_str().unwrap_or("");
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('(')).collect();
    assert_eq!(
        lines.len(),
        want.len(),
        "{name}: step {p}'s kernel graph: {text}"
    );
    for (line, (depth, function)) in lines.iter().zip(want) {
        let indent = line.len() - line.trim_start().len();
        assert!(
            indent == 2 * depth && line.trim_start().starts_with(function),
            "{name}: step {p}'s kernel line {line:?} is not {function} at depth {depth}"
        );
    }
}

/// Console lines that are errors.
fn errors(b: &Browser) -> Vec<String> {
    (b.console().expect("the console log"))
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .collect()
}

/// Opens page `name`, waits until it has drawn the trace, and says how long that took.
fn open(b: &Browser, name: &str) -> f64 {
    open_file(b, &pages_dir().join(format!("{name}.html")))
}

/// Opens the page at `path`, waits until it has drawn the trace, and says how long that
/// took: from the navigation's start, in ms.
fn open_file(b: &Browser, path: &Path) -> f64 {
    let page = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.open(&format!("file://{}", page.display()))
        .expect("the page opens");
    let state = b
        .wait_for(
            "return document.body.dataset.ready || null;",
            Duration::from_secs(60),
        )
        .expect("the page finishes");
    assert_eq!(
        state,
        "1",
        "{}: the page reported an error: {:?} {:?}",
        path.display(),
        b.run(
            "return document.getElementById('error').textContent;",
            json!([])
        ),
        errors(b)
    );
    let at = b
        .run("return Number(document.body.dataset.readyAt);", json!([]))
        .expect("readyAt");
    at.as_f64().unwrap_or(f64::NAN)
}

/// Everything a page must show of its trace; `sweep` is every how-many-th step whose
/// selection is compared with the JSON (1: all).
fn check_page(name: &str, sweep: usize) {
    let dir = pages_dir();
    let trace = Trace::load(&dir, name);
    let steps = trace.steps();
    let start = trace.start();
    assert!(
        steps.len() > 3,
        "{name}: the trace has {} steps",
        steps.len()
    );
    let b = Browser::start(1400, 1000).unwrap_or_else(|e| panic!("{e}"));
    let opened = open(&b, name);
    let bytes = std::fs::metadata(dir.join(format!("{name}.html"))).map_or(0, |m| m.len());
    println!(
        "{name}: {} steps, page {bytes} bytes ({} per step), drawn {opened:.0} ms after the \
         navigation began",
        trace.all_steps(),
        bytes / trace.all_steps().max(1) as u64
    );
    let shots = shots_dir();
    b.screenshot(&shots.join(format!("{name}-start.png")))
        .expect("screenshot");
    assert_eq!(errors(&b), Vec::<String>::new(), "{name}: script errors");

    // The steps and the VMAs' bands.
    let counted = b
        .run(
            "return [Number(document.getElementById('summary').dataset.steps), \
             document.querySelectorAll('#space-chart rect.vma').length, \
             document.querySelectorAll('#steps > div').length];",
            json!([]),
        )
        .expect("counts");
    assert_eq!(
        counted[0],
        trace.all_steps(),
        "{name}: steps in the summary"
    );
    assert_eq!(
        counted[1],
        trace.lives(None),
        "{name}: one band per VMA that came"
    );
    assert_eq!(
        counted[2],
        steps.len() + 1,
        "{name}: the list: the start and each step"
    );

    // The brk line: its values, and drawn in their order (a higher brk is higher up).
    let line = b
        .run(
            "const p = document.getElementById('brk-line'); \
             return [p.dataset.brk, p.getAttribute('d')];",
            json!([]),
        )
        .expect("the brk line");
    let brks: Vec<Option<u64>> = (line[0].as_str().unwrap_or("").split(','))
        .map(|v| v.parse().ok())
        .collect();
    let expected: Vec<Option<u64>> = std::iter::once(start["brk"].as_u64())
        .chain(steps.iter().map(|s| s["brk_after"].as_u64()))
        .collect();
    assert_eq!(brks, expected, "{name}: the brk line's values");
    let ys: Vec<f64> = (line[1].as_str().unwrap_or("").split(['M', 'L']))
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split(' ').nth(1)?.parse().ok())
        .step_by(2)
        .collect();
    let known: Vec<u64> = expected.iter().flatten().copied().collect();
    assert_eq!(
        ys.len(),
        known.len(),
        "{name}: one segment of the brk line per column"
    );
    for i in 1..known.len() {
        let (a, b_) = (known[i - 1], known[i]);
        let ok = match a.cmp(&b_) {
            std::cmp::Ordering::Less => ys[i] < ys[i - 1],
            std::cmp::Ordering::Greater => ys[i] > ys[i - 1],
            std::cmp::Ordering::Equal => (ys[i] - ys[i - 1]).abs() < 0.01,
        };
        assert!(
            ok,
            "{name}: brk {a:#x} -> {b_:#x} drawn at y {} -> {}",
            ys[i - 1],
            ys[i]
        );
    }

    // The address axis inside each VMA the JSON has: an address a third of the way up is
    // drawn between its edges, and reads back as itself.
    let ranges: Vec<(u64, u64)> = (start["vmas"].as_array().into_iter().flatten())
        .chain(steps.iter().flat_map(|s| {
            (s["added"].as_array().into_iter().flatten())
                .chain(s["added_before"].as_array().into_iter().flatten())
        }))
        .filter_map(|v| Some((v["start"].as_u64()?, v["end"].as_u64()?)))
        .collect();
    let ys = b
        .run(
            "const y = mmscope.view.y; return arguments[0].map(([a, z]) => { \
               const m = a + Math.floor((z - a) / 3); \
               return [y.y(a), y.y(m), y.y(z), y.addr(y.y(m))]; });",
            json!([ranges]),
        )
        .expect("the axis");
    for (i, &(a, z)) in ranges.iter().enumerate() {
        let r: Vec<f64> = (0..4)
            .map(|k| ys[i][k].as_f64().unwrap_or(f64::NAN))
            .collect();
        let m = a + (z - a) / 3;
        assert!(
            r[0] > r[1] && r[1] > r[2] && (r[3] - m as f64).abs() <= (z - a) as f64 / 100.0,
            "{name}: {a:#x}-{z:#x}: {m:#x} drawn at y {} (edges {} {}), read back as {:#x}",
            r[1],
            r[0],
            r[2],
            r[3] as u64
        );
    }
    // Each step selected (every `sweep`th, and the last): its call, its VMAs (their ranges as
    // the JSON's changes make them, their number as the kernel's map_count), its brk.
    let positions: Vec<usize> = (0..=steps.len())
        .filter(|p| p % sweep == 0 || *p == steps.len())
        .collect();
    let seen = b
        .run(
            "return arguments[0].map((p) => { mmscope.select(p); \
               return [document.querySelector('#detail h2').textContent, \
                 document.querySelectorAll('#vmas tbody tr').length, \
                 (document.getElementById('brk-after') || {}).textContent || '', \
                 [...document.querySelectorAll('#vmas tbody tr')].map((r) => \
                   r.cells[0].textContent + '-' + r.cells[1].textContent), \
                 (document.getElementById('stack') || {}).textContent ?? null, \
                 (document.getElementById('kernel') || {}).textContent ?? null]; });",
            json!([positions]),
        )
        .expect("the sweep");
    let lists = trace.vma_lists();
    for (i, &p) in positions.iter().enumerate() {
        let row = &seen[i];
        let listed: Vec<&str> = (row[3].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let want: Vec<String> = (lists[p].iter())
            .map(|(s, e)| format!("{s:#x}-{e:#x}"))
            .collect();
        assert_eq!(listed, want, "{name}: the VMAs listed after step {p}");
        let (want_count, want_brk) = match p {
            0 => (&start["map_count"], hex(&start["brk"])),
            _ => (&steps[p - 1]["map_count"], hex(&steps[p - 1]["brk_after"])),
        };
        if p > 0 {
            let h = row[0].as_str().unwrap_or("");
            assert!(
                h.starts_with(&heading(steps[p - 1])),
                "{name}: step {p} shows {h}"
            );
        }
        assert_eq!(
            &row[1], want_count,
            "{name}: the VMAs after step {p} (map_count)"
        );
        assert_eq!(
            row[2].as_str(),
            Some(want_brk.as_str()),
            "{name}: brk after step {p}"
        );
        if p > 0 {
            check_stack(name, p, &steps[p - 1]["stack"], &row[4]);
            check_kernel(name, p, &steps[p - 1]["kernel"], &row[5]);
        }
    }

    // The keyboard.
    b.run(
        "document.activeElement.blur(); window.scrollTo(0, 0);",
        json!([]),
    )
    .expect("blur");
    b.keys(&[key::HOME], false).expect("keys");
    assert!(
        shown(&b).0.starts_with("start:"),
        "{name}: Home shows the start"
    );
    b.keys(&[key::RIGHT, key::RIGHT, key::RIGHT], false)
        .expect("keys");
    assert!(
        shown(&b).0.starts_with(&heading(steps[2])),
        "{name}: → three times: step 3"
    );
    b.keys(&[key::LEFT], false).expect("keys");
    assert!(
        shown(&b).0.starts_with(&heading(steps[1])),
        "{name}: ← : step 2"
    );
    b.keys(&[key::END], false).expect("keys");
    let last = shown(&b);
    assert!(
        last.0.starts_with(&heading(steps[steps.len() - 1])),
        "{name}: End: the last step"
    );
    b.keys(&[key::LEFT], true).expect("keys");
    let back = steps.len().saturating_sub(10);
    let want = match back {
        0 => "start:".to_string(),
        n => heading(steps[n - 1]),
    };
    assert!(
        shown(&b).0.starts_with(&want),
        "{name}: Shift+← from the last step: step {back}"
    );

    // A click in the list, then in the address space.
    b.click("#steps > div[data-pos=\"2\"]")
        .expect("a click in the list");
    assert!(
        shown(&b).0.starts_with(&heading(steps[1])),
        "{name}: clicked row: step 2"
    );
    // The click lands on a whole pixel: the step is the column under that pixel (on a long
    // trace a pixel holds several columns).
    let aim = steps.len() * 2 / 3;
    let at = b
        .run(
            "const svg = document.getElementById('space-chart'); \
             svg.scrollIntoView({block: 'start'}); \
             const r = svg.getBoundingClientRect(); \
             const d = svg.dataset; \
             return [r.left, r.top, r.width / svg.viewBox.baseVal.width, Number(d.plotLeft), \
                     Number(d.plotWidth), Number(d.columns)];",
            json!([]),
        )
        .expect("the chart's place");
    let g: Vec<f64> = (0..6).map(|i| at[i].as_f64().unwrap_or(f64::NAN)).collect();
    let (left, top, k, plot_left, plot_w, columns) = (g[0], g[1], g[2], g[3], g[4], g[5]);
    let x = (left + (plot_left + (aim as f64 + 0.5) * plot_w / columns) * k).round();
    let target = (((x - left) / k - plot_left) * columns / plot_w).floor() as usize;
    b.click_at(x, (top + 40.0 * k).round())
        .expect("a click in the chart");
    assert!(
        target >= 1 && target <= steps.len(),
        "{name}: the click's column {target}"
    );
    let clicked = shown(&b);
    assert!(
        clicked.0.starts_with(&heading(steps[target - 1])),
        "{name}: a click at step {target}'s column shows {}",
        clicked.0
    );
    b.run("window.scrollTo(0, 0);", json!([])).expect("scroll");
    b.screenshot(&shots.join(format!("{name}-step.png")))
        .expect("screenshot");

    // The call filter: the most frequent call alone.
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for s in &steps {
        *counts
            .entry(s["syscall"].as_str().unwrap_or(""))
            .or_default() += 1;
    }
    let (call, n) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (*c, *n))
        .unwrap_or(("", 0));
    // A selected step the filter hides gives way to the last shown one before it.
    let hidden = (1..=steps.len())
        .find(|&p| {
            steps[p - 1]["syscall"] != call && steps[p..].iter().any(|s| s["syscall"] == call)
        })
        .unwrap_or(0);
    b.run("mmscope.select(arguments[0]);", json!([hidden]))
        .expect("select");
    for other in counts.keys().filter(|c| **c != call) {
        b.click(&format!("#calls input[value=\"{other}\"]"))
            .expect("a call's box");
    }
    let before = (1..hidden).rev().find(|&p| steps[p - 1]["syscall"] == call);
    let now = shown(&b).0;
    let want = before.map_or("start:".to_string(), |p| heading(steps[p - 1]));
    assert!(
        now.starts_with(&want),
        "{name}: step {hidden} hidden by the filter: shows {now}, not step {before:?}"
    );
    // The counters of the calls shown: a segment each, in the JSON's order.
    let shown_steps: Vec<&Value> = std::iter::once(start)
        .chain(steps.iter().copied().filter(|s| s["syscall"] == call))
        .collect();
    for (id, field) in [
        ("series-heap", "heap_bytes"),
        ("series-anon", "anon_bytes"),
        ("series-rss", "rss"),
    ] {
        let d = b
            .run(
                "return document.getElementById(arguments[0]).getAttribute('d');",
                json!([id]),
            )
            .expect("a series");
        let ys: Vec<f64> = (d.as_str().unwrap_or("").split(['M', 'L']))
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split(' ').nth(1)?.parse().ok())
            .step_by(2)
            .collect();
        let want: Vec<u64> = (shown_steps.iter())
            .map(|e| match field {
                "rss" => e["rss"]["anon"].as_u64(),
                _ => e[field].as_u64(),
            })
            .map(|v| v.unwrap_or(0))
            .collect();
        assert_eq!(
            ys.len(),
            want.len(),
            "{name}: {id}: one segment per column shown"
        );
        for i in 1..want.len() {
            let ok = match want[i - 1].cmp(&want[i]) {
                std::cmp::Ordering::Less => ys[i] < ys[i - 1],
                std::cmp::Ordering::Greater => ys[i] > ys[i - 1],
                std::cmp::Ordering::Equal => (ys[i] - ys[i - 1]).abs() < 0.01,
            };
            assert!(
                ok,
                "{name}: {id} ({call} alone): {} -> {} drawn at y {} -> {}",
                want[i - 1],
                want[i],
                ys[i - 1],
                ys[i]
            );
        }
    }
    let rows = b
        .run(
            "return [...document.querySelectorAll('#steps > div')].map((d) => d.textContent);",
            json!([]),
        )
        .expect("rows");
    let rows: Vec<&str> = (rows.as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        rows.len(),
        n + 1,
        "{name}: {call} alone: the start and its {n} calls"
    );
    assert!(
        rows[1..].iter().all(|r| r.contains(&format!("] {call}("))),
        "{name}: only {call} calls are listed"
    );
    b.keys(&[key::END], false).expect("keys");
    let last_of = steps
        .iter()
        .rev()
        .find(|s| s["syscall"] == call)
        .expect("a call");
    assert!(
        shown(&b).0.starts_with(&heading(last_of)),
        "{name}: End: the last {call}"
    );
    for other in counts.keys().filter(|c| **c != call) {
        b.click(&format!("#calls input[value=\"{other}\"]"))
            .expect("a call's box");
    }

    // The thread filter, where there are threads.
    let mut tids: Vec<i64> = steps.iter().filter_map(|s| s["tid"].as_i64()).collect();
    tids.sort_unstable();
    tids.dedup();
    if let Some(&tid) = tids.iter().find(|&&t| Some(t) != start["pid"].as_i64()) {
        b.click(&format!("#thread option[value=\"{tid}\"]"))
            .expect("a thread");
        let listed = b
            .run(
                "return document.querySelectorAll('#steps > div').length;",
                json!([]),
            )
            .expect("rows");
        let of_tid = steps.iter().filter(|s| s["tid"] == tid).count();
        assert_eq!(listed, of_tid + 1, "{name}: thread {tid}'s {of_tid} calls");
        b.screenshot(&shots.join(format!("{name}-thread.png")))
            .expect("screenshot");
        b.click("#thread option[value=\"\"]").expect("all threads");
    }

    // The address filter: the heap's range (brk's extent), as a person types it.
    let heap_lo = start["start_brk"].as_u64().unwrap_or(0);
    let heap_hi = known.iter().copied().max().unwrap_or(heap_lo);
    if heap_hi > heap_lo {
        let hi = heap_hi.next_multiple_of(4096);
        b.run(
            "document.getElementById('lo').value = arguments[0]; \
             document.getElementById('hi').value = arguments[1];",
            json!([format!("{heap_lo:#x}"), format!("{hi:#x}")]),
        )
        .expect("the range");
        let keep = steps.len() / 2;
        b.run("mmscope.select(arguments[0]);", json!([keep]))
            .expect("select");
        b.click("#zoom").expect("zoom");
        assert!(
            shown(&b).0.starts_with(&heading(steps[keep - 1])),
            "{name}: the zoom keeps step {keep}: shows {}",
            shown(&b).0
        );
        let bands = b
            .run(
                "return document.querySelectorAll('#space-chart rect.vma').length;",
                json!([]),
            )
            .expect("bands");
        assert_eq!(
            bands,
            trace.lives(Some((heap_lo, hi))),
            "{name}: the bands of the VMAs meeting {heap_lo:#x}-{hi:#x}"
        );
        b.screenshot(&shots.join(format!("{name}-heap.png")))
            .expect("screenshot");
        b.click("#unzoom").expect("unzoom");
        let bands = b
            .run(
                "return document.querySelectorAll('#space-chart rect.vma').length;",
                json!([]),
            )
            .expect("bands");
        assert_eq!(bands, trace.lives(None), "{name}: every band again");
    }
    // Bad input: a sentence, and the view kept.
    b.run(
        "document.getElementById('lo').value = 'heap'; document.getElementById('hi').value = '';",
        json!([]),
    )
    .expect("input");
    b.click("#zoom").expect("zoom");
    let said = b
        .run(
            "return document.getElementById('error').textContent;",
            json!([]),
        )
        .expect("error");
    assert!(
        said.as_str().unwrap_or("").contains("hexadecimal"),
        "{name}: bad range: {said}"
    );

    // The time axis: each step's column starts at its time (the JSON's `time_us`, each at
    // least its predecessor's: the steps keep their order), the start at 0.
    b.click("input[name=axis][value=time]").expect("time");
    let mut times = vec![0.0f64];
    for s in &steps {
        let t = s["time_us"].as_f64().unwrap_or(f64::NAN);
        times.push(times[times.len() - 1].max(t));
    }
    let probe = [0, 1, steps.len() / 3, steps.len() * 2 / 3, steps.len()];
    let xs = b
        .run(
            "return arguments[0].map((p) => { mmscope.select(p); \
               return Number(document.getElementById('space-cursor').getAttribute('x')); });",
            json!([probe]),
        )
        .expect("the cursor");
    let x = |i: usize| xs[i].as_f64().unwrap_or(f64::NAN);
    assert!(x(0).abs() < 0.01, "{name}: the start at x {}", x(0));
    let last = probe.len() - 1;
    for i in 1..last {
        let (want, got) = (times[probe[i]] / times[probe[last]], x(i) / x(last));
        assert!(
            (want - got).abs() < 0.005,
            "{name}: step {} at {got} of the last step's x, its time at {want} of the last's",
            probe[i]
        );
    }
    let ticks = b
        .run(
            "return [...document.querySelectorAll('#space-chart g.axis text')].map((t) => t.textContent).filter((t) => t.endsWith(' ms')).length;",
            json!([]),
        )
        .expect("ticks");
    assert!(
        ticks.as_u64().unwrap_or(0) >= 2,
        "{name}: the time axis has ticks in ms"
    );
    b.screenshot(&shots.join(format!("{name}-time.png")))
        .expect("screenshot");
    b.click("input[name=axis][value=steps]").expect("steps");

    // Resident memory, where the trace recorded page faults: at exit, the tracer's count.
    let pid = &start["pid"];
    let resident: Vec<&Value> = (trace.events.iter())
        .filter(|e| e["event"] == "resident" && &e["pid"] == pid)
        .collect();
    let flame = b
        .run(
            "return !document.getElementById('view-flame').disabled;",
            json!([]),
        )
        .expect("flame button");
    assert_eq!(
        flame,
        !resident.is_empty(),
        "{name}: the flame view is there when faults are"
    );
    if !resident.is_empty() {
        let summary = (trace.events.iter().rev())
            .find(|e| e["event"] == "summary")
            .map(|s| s["resident"].clone())
            .unwrap_or_default();
        b.click("#view-flame").expect("flame");
        for (button, field) in [("#flame-peak", "peak_pages"), ("#flame-exit", "exit_pages")] {
            b.click(button).expect("a flame button");
            let pages = b
                .run(
                    "return Number(document.getElementById('flame').dataset.pages);",
                    json!([]),
                )
                .expect("pages");
            assert_eq!(
                pages, summary[field],
                "{name}: the flame graph's pages ({field})"
            );
            assert!(
                summary[field].as_u64().unwrap_or(0) > 0,
                "{name}: {field} is 0"
            );
        }
        b.click("#flame-peak").expect("peak");
        b.screenshot(&shots.join(format!("{name}-flame.png")))
            .expect("screenshot");
        b.click("#view-space").expect("back");
    }
    assert_eq!(errors(&b), Vec::<String>::new(), "{name}: script errors");
}

/// A heap scenario with threads (glibc's `thread`: an arena of the second thread's own),
/// traced with stacks.
#[test]
#[ignore = "needs the pages the guest makes: make test runs it"]
fn heap_scenario_page() {
    check_page("thread", 1);
}

/// GNU sort, traced with its stacks and page faults.
#[test]
#[ignore = "needs the pages the guest makes: make test runs it"]
fn sort_page() {
    check_page("sort", 1);
}

/// demo/kernelpaths.c traced with `--kernel` (in the boot with one TCG thread): each call's
/// kernel graph.
#[test]
#[ignore = "needs the pages the guest makes: make test runs it"]
fn kernel_graphs_page() {
    check_page("kernelpaths", 1);
}

/// `sh -c 'sort | tail'` traced with `-f`: each process's address space (an exec or a fork
/// each) in the menu, with its own calls and, after its last one, its VMAs as the kernel
/// counted them.
#[test]
#[ignore = "needs the pages the guest makes: make test runs it"]
fn processes_page() {
    let name = "follow";
    let trace = Trace::load(&pages_dir(), name);
    // The address spaces in the order they came, each with its calls.
    let mut spaces: Vec<(i64, Vec<&Value>)> = Vec::new();
    let mut latest = std::collections::HashMap::new();
    for e in &trace.events {
        match e["event"].as_str() {
            Some("exec" | "attach" | "fork") => {
                let pid = e["pid"].as_i64().unwrap_or(0);
                latest.insert(pid, spaces.len());
                spaces.push((pid, Vec::new()));
            }
            Some("syscall") => {
                if let Some(&i) = latest.get(&e["pid"].as_i64().unwrap_or(0)) {
                    spaces[i].1.push(e);
                }
            }
            _ => {}
        }
    }
    assert!(
        spaces.len() >= 3,
        "{name}: the shell, sort and tail: {} address spaces",
        spaces.len()
    );
    let b = Browser::start(1400, 1000).unwrap_or_else(|e| panic!("{e}"));
    open(&b, name);
    let options = b
        .run(
            "return document.querySelectorAll('#space option').length;",
            json!([]),
        )
        .expect("the menu");
    assert_eq!(
        options,
        spaces.len(),
        "{name}: one address space per exec and fork"
    );
    for (i, (pid, steps)) in spaces.iter().enumerate() {
        b.click(&format!("#space option[value=\"{i}\"]"))
            .expect("a process");
        let rows = b
            .run(
                "return document.querySelectorAll('#steps > div').length;",
                json!([]),
            )
            .expect("rows");
        assert_eq!(
            rows,
            steps.len() + 1,
            "{name}: process {pid}'s calls (space {i})"
        );
        if let Some(last) = steps.last() {
            // The keys go to the page, not to the menu just used (where End picks the last
            // process, as a menu does).
            b.run("document.activeElement.blur();", json!([]))
                .expect("blur");
            b.keys(&[key::END], false).expect("keys");
            let (heading_shown, vmas, _) = shown(&b);
            assert!(
                heading_shown.starts_with(&heading(last)),
                "{name}: End in process {pid}: {heading_shown}"
            );
            assert_eq!(
                last["map_count"].as_u64(),
                Some(vmas),
                "{name}: process {pid}'s VMAs after its last call"
            );
        }
        if *pid != spaces[0].0 {
            b.screenshot(&shots_dir().join(format!("{name}-{i}.png")))
                .expect("screenshot");
        }
    }
    assert_eq!(errors(&b), Vec::<String>::new(), "{name}: script errors");
}

/// 10,000 calls: every 10th selected.
#[test]
#[ignore = "needs the pages the guest makes: make test runs it"]
fn many_steps_page() {
    check_page("manysteps", 10);
}

/// `make bench`: how long the page of a 10,000-call trace (`MMSCOPE_BENCH_PAGE`, made in the
/// guest) takes to open in headless chromium, from the navigation's start to the trace drawn,
/// five times in new tabs' worth of fresh loads; the median and range, with the page's size,
/// go as a row into `MMSCOPE_BENCH_MD`. A measurement, not a test: nothing is asserted of the
/// time.
#[test]
#[ignore = "a benchmark: make bench runs it"]
fn page_opens() {
    let page = PathBuf::from(std::env::var_os("MMSCOPE_BENCH_PAGE").expect("MMSCOPE_BENCH_PAGE"));
    let table = PathBuf::from(std::env::var_os("MMSCOPE_BENCH_MD").expect("MMSCOPE_BENCH_MD"));
    let bytes = std::fs::metadata(&page).map_or(0, |m| m.len());
    let json_bytes: u64 = std::fs::read_to_string(page.with_extension("json-bytes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let b = Browser::start(1400, 1000).unwrap_or_else(|e| panic!("{e}"));
    let mut times = Vec::new();
    let mut steps = 0;
    for _ in 0..5 {
        b.open("about:blank").expect("a blank page");
        times.push(open_file(&b, &page));
        let v = b
            .run(
                "return Number(document.getElementById('summary').dataset.steps);",
                json!([]),
            )
            .expect("the steps");
        steps = v.as_u64().unwrap_or(0);
    }
    assert!(errors(&b).is_empty(), "script errors");
    times.sort_by(f64::total_cmp);
    let per_step = |n: u64| n as f64 / steps.max(1) as f64;
    let row = format!(
        "| the page of a trace of {steps} calls (`mmscope trace --html`, demo/manysteps.c), \
         opened in headless Chromium {} until drawn | {:.0} ms ({:.0}\u{2013}{:.0}); \
         {bytes} bytes, {:.0} bytes/step | its JSON trace (`--json`): {json_bytes} bytes, \
         {:.0} bytes/step | {:.3}\u{d7} the JSON's size |\n",
        chromium_version(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        per_step(bytes),
        per_step(json_bytes),
        bytes as f64 / json_bytes.max(1) as f64,
    );
    print!("{row}");
    let mut text =
        std::fs::read_to_string(&table).unwrap_or_else(|e| panic!("{}: {e}", table.display()));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&row);
    std::fs::write(&table, text).unwrap_or_else(|e| panic!("{}: {e}", table.display()));
}

/// Chromium's version, as `chromium --version` says it (its number only).
fn chromium_version() -> String {
    std::process::Command::new(webdriver::CHROMIUM)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.split_whitespace()
                .find(|w| w.contains('.'))
                .map(str::to_string)
        })
        .unwrap_or_default()
}
