// SPDX-License-Identifier: GPL-2.0

//! Selftests for the mmscope kernel module.
//!
//! Runs inside the test guest with the module loaded and prints TAP 13; the last line is
//! `N passed, N failed` (`, N skipped` may follow). Exits 0 only if nothing failed.
//!
//! Usage: `mmscope-selftests [FILTER]` runs the tests whose names contain `FILTER`.

mod device;
mod harness;
mod sys;

use harness::Test;

/// Every test, in the order they run.
const TESTS: &[Test] = &[
    Test {
        name: "abi_matches_c_header",
        run: device::abi_matches_c_header,
    },
    Test {
        name: "device_node_is_registered_misc_device",
        run: device::device_node_is_registered,
    },
    Test {
        name: "version_ioctl_reports_abi_version",
        run: device::version_ioctl,
    },
    Test {
        name: "version_ioctl_bad_pointer_is_efault",
        run: device::version_ioctl_bad_pointer,
    },
    Test {
        name: "unknown_ioctl_is_enotty",
        run: device::unknown_ioctl_is_enotty,
    },
    Test {
        name: "rmmod_refused_while_open_then_allowed",
        run: device::rmmod_refused_while_open,
    },
];

fn main() {
    let filter = std::env::args().nth(1);
    let totals = harness::run(TESTS, filter.as_deref());
    std::process::exit(if totals.failed == 0 { 0 } else { 1 });
}
