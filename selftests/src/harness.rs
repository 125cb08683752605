// SPDX-License-Identifier: GPL-2.0

//! A small kselftest-style harness: TAP 13 output, each test in its own forked process.
//!
//! Isolation by `fork` means a test that crashes, hangs (it is killed after
//! [`TEST_TIMEOUT_SECS`]) or leaves mappings behind cannot disturb the next one.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::{fmt, fs, io};

/// How long one test may run before it is killed and reported as failed, unless
/// `MMSCOPE_TEST_TIMEOUT` (seconds) says otherwise: the debug kernel is several times slower.
pub const TEST_TIMEOUT_SECS: u32 = 120;

/// The timeout in force: `MMSCOPE_TEST_TIMEOUT` or [`TEST_TIMEOUT_SECS`].
fn test_timeout() -> u32 {
    std::env::var("MMSCOPE_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(TEST_TIMEOUT_SECS)
}

/// Why a test did not pass.
#[derive(Debug)]
pub enum Outcome {
    /// The behaviour under test is wrong.
    Fail(String),
    /// The test cannot run here; the reason says why.
    Skip(String),
}

/// What every test returns.
pub type TestResult = Result<(), Outcome>;

/// One registered test.
pub struct Test {
    /// The name printed on its TAP line.
    pub name: &'static str,
    /// The test itself.
    pub run: fn() -> TestResult,
}

impl From<io::Error> for Outcome {
    fn from(e: io::Error) -> Self {
        Outcome::Fail(format!("unexpected I/O error: {e}"))
    }
}

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::harness::Outcome::Fail(format!(
                "{}:{}: {}", file!(), line!(), format!($($msg)+)
            )));
        }
    };
}

/// Fails the test unless `left == right`, showing both.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {
        $crate::check_eq!($left, $right, "{} == {}", stringify!($left), stringify!($right))
    };
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::harness::Outcome::Fail(format!(
                "{}:{}: {}: left {:?}, right {:?}", file!(), line!(), format!($($msg)+), l, r
            )));
        }
    }};
}

/// Skips the test with a reason.
#[macro_export]
macro_rules! skip {
    ($($msg:tt)+) => {
        return Err($crate::harness::Outcome::Skip(format!($($msg)+)))
    };
}

/// Attaches what was being done to an I/O error, for `?` in tests.
pub trait Context<T> {
    /// Turns an error into a failure that says what failed.
    fn context(self, what: impl fmt::Display) -> Result<T, Outcome>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl fmt::Display) -> Result<T, Outcome> {
        self.map_err(|e| Outcome::Fail(format!("{what}: {e}")))
    }
}

/// Expects `res` to be the errno `want`, for tests of error paths.
pub fn expect_errno<T: fmt::Debug>(res: io::Result<T>, want: i32, what: &str) -> TestResult {
    match res {
        Err(e) if e.raw_os_error() == Some(want) => Ok(()),
        Err(e) => Err(Outcome::Fail(format!(
            "{what}: expected {}, got {e}",
            io::Error::from_raw_os_error(want)
        ))),
        Ok(v) => Err(Outcome::Fail(format!(
            "{what}: expected {}, but it succeeded with {v:?}",
            io::Error::from_raw_os_error(want)
        ))),
    }
}

/// The final tally.
#[derive(Default)]
pub struct Totals {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that were skipped.
    pub skipped: usize,
}

/// Runs `tests` whose names contain `filter` (all if `None`), prints TAP 13 and the totals line.
pub fn run(tests: &[Test], filter: Option<&str>) -> Totals {
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|t| filter.is_none_or(|f| t.name.contains(f)))
        .collect();
    println!("TAP version 13");
    println!("1..{}", selected.len());
    let mut totals = Totals::default();
    for (i, test) in selected.iter().enumerate() {
        let n = i + 1;
        match run_isolated(test) {
            Ok(()) => {
                totals.passed += 1;
                println!("ok {n} {}", test.name);
            }
            Err(Outcome::Skip(why)) => {
                totals.skipped += 1;
                println!("ok {n} {} # SKIP {}", test.name, one_line(&why));
            }
            Err(Outcome::Fail(why)) => {
                totals.failed += 1;
                for line in why.lines() {
                    println!("# {line}");
                }
                println!("not ok {n} {}", test.name);
            }
        }
    }
    print!("{} passed, {} failed", totals.passed, totals.failed);
    if totals.skipped > 0 {
        print!(", {} skipped", totals.skipped);
    }
    println!();
    totals
}

/// Folds a message onto one line, for a `# SKIP` reason.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exit codes the child uses to report its outcome.
const CHILD_PASS: i32 = 0;
const CHILD_FAIL: i32 = 1;
const CHILD_SKIP: i32 = 4;

/// Runs one test in a forked child; its failure or skip message comes back through a pipe.
fn run_isolated(test: &Test) -> TestResult {
    let _ = io::stdout().flush();
    let timeout = test_timeout();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Outcome::Fail(format!(
            "pipe2: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: The harness is single-threaded, so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Outcome::Fail(format!(
            "fork: {}",
            io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(rd);
        // SAFETY: alarm only arms a timer; SIGALRM's default action ends the child.
        unsafe { libc::alarm(timeout) };
        let (code, msg) = match (test.run)() {
            Ok(()) => (CHILD_PASS, String::new()),
            Err(Outcome::Fail(m)) => (CHILD_FAIL, m),
            Err(Outcome::Skip(m)) => (CHILD_SKIP, m),
        };
        let mut wr = fs::File::from(wr);
        let _ = wr.write_all(msg.as_bytes());
        let _ = io::stdout().flush();
        // SAFETY: _exit ends the child without running the parent's atexit handlers twice.
        unsafe { libc::_exit(code) };
    }
    drop(wr);
    let mut msg = String::new();
    let _ = fs::File::from(rd).read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(Outcome::Fail(format!(
            "waitpid: {}",
            io::Error::last_os_error()
        )));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let why = if sig == libc::SIGALRM {
            format!("timed out after {timeout}s")
        } else {
            format!("killed by signal {sig}")
        };
        return Err(Outcome::Fail(format!("{why} {msg}")));
    }
    match libc::WEXITSTATUS(status) {
        CHILD_PASS => Ok(()),
        CHILD_SKIP => Err(Outcome::Skip(msg)),
        CHILD_FAIL => Err(Outcome::Fail(msg)),
        code => Err(Outcome::Fail(format!("exited with status {code} {msg}"))),
    }
}
