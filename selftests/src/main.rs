// SPDX-License-Identifier: GPL-2.0

//! Selftests for the mmscope kernel module.
//!
//! Runs inside the test guest with the module loaded and prints TAP 13; the last line is
//! `N passed, N failed` (`, N skipped` may follow). Exits 0 only if nothing failed.
//!
//! Usage: `mmscope-selftests [FILTER]` runs the tests whose names contain `FILTER`;
//! `mmscope-selftests --helper NAME` is one of the programs the tests run (see [`helpers`]).

mod access;
mod bench;
mod cli;
mod device;
mod fuzz;
mod harness;
mod heap;
mod helpers;
mod inject;
mod lazy;
mod lifecycle;
mod mm;
mod stress;
mod sys;

use harness::Test;

/// Every test, in the order they run.
const TESTS: &[Test] = &[
    // The device and its ABI.
    Test {
        name: "abi_matches_c_header",
        run: device::abi_matches_c_header,
    },
    Test {
        name: "device_node_is_registered_misc_device",
        run: device::device_node_is_registered,
    },
    // Before any test reloads the module: the mode the guest's init gave the device.
    Test {
        name: "user_traces_own_program_after_insmod",
        run: cli::cli_user_traces_after_insmod,
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
    // The lazily allocating memory object.
    Test {
        name: "mmap_allocates_nothing",
        run: lazy::mmap_allocates_nothing,
    },
    Test {
        name: "touch_k_pages_k_faults",
        run: lazy::touch_k_pages_k_faults,
    },
    Test {
        name: "first_touch_sees_zeroes",
        run: lazy::first_touch_sees_zeroes,
    },
    Test {
        name: "shared_mappings_share_pages",
        run: lazy::shared_mappings_share_pages,
    },
    Test {
        name: "private_mappings_copy_on_write",
        run: lazy::private_mappings_copy_on_write,
    },
    Test {
        name: "private_first_write_one_fault",
        run: lazy::private_first_write_one_fault,
    },
    Test {
        name: "fault_counts_exclude_own_code",
        run: lazy::fault_counts_exclude_own_code,
    },
    Test {
        name: "faults_under_vma_lock",
        run: lazy::faults_under_vma_lock,
    },
    Test {
        name: "exec_is_refused",
        run: lazy::exec_is_refused,
    },
    Test {
        name: "concurrent_faults_one_page_each",
        run: lazy::concurrent_faults_allocate_one_page_each,
    },
    Test {
        name: "partial_munmap_and_mprotect",
        run: lazy::partial_munmap_and_mprotect,
    },
    Test {
        name: "mremap_move_shrink_grow",
        run: lazy::mremap_move_shrink_grow,
    },
    Test {
        name: "madv_dontneed_keeps_data",
        run: lazy::madv_dontneed_keeps_data,
    },
    Test {
        name: "mmap_past_limit_is_einval",
        run: lazy::mmap_past_limit_is_einval,
    },
    Test {
        name: "access_past_limit_is_sigbus",
        run: lazy::access_past_limit_is_sigbus,
    },
    Test {
        name: "set_limit_bad_input",
        run: lazy::set_limit_bad_input,
    },
    Test {
        name: "mem_stats_bad_input",
        run: lazy::mem_stats_bad_input,
    },
    Test {
        name: "pages_freed_with_last_user",
        run: lazy::pages_freed_with_last_user,
    },
    Test {
        name: "fault_around_maps_resident_pages",
        run: lazy::fault_around_maps_resident_pages,
    },
    Test {
        name: "fault_around_only_on_held_pages",
        run: lazy::fault_around_only_on_held_pages,
    },
    Test {
        name: "fault_ahead_on_madv_sequential",
        run: lazy::fault_ahead_on_madv_sequential,
    },
    Test {
        name: "user_cap_is_sigbus",
        run: lazy::user_cap_is_sigbus,
    },
    Test {
        name: "module_wide_cap_is_sigbus",
        run: lazy::module_wide_cap_is_sigbus,
    },
    Test {
        name: "one_user_cannot_starve_another",
        run: lazy::one_user_cannot_starve_another,
    },
    Test {
        name: "pages_charged_to_callers_memcg",
        run: lazy::pages_charged_to_callers_memcg,
    },
    // The address-space ioctls.
    Test {
        name: "report_matches_procfs",
        run: mm::report_matches_procfs,
    },
    Test {
        name: "layout_fields_match_the_kernel",
        run: mm::layout_fields_match_the_kernel,
    },
    Test {
        name: "report_follows_changes",
        run: mm::report_follows_changes,
    },
    Test {
        name: "ten_thousand_vmas_paginated",
        run: mm::ten_thousand_vmas_paginated,
    },
    Test {
        name: "vma_list_walks_from_address_zero",
        run: mm::vma_list_walks_from_address_zero,
    },
    Test {
        name: "vma_query_matches_list",
        run: mm::vma_query_matches_list,
    },
    Test {
        name: "mm_ioctls_bad_input",
        run: mm::mm_ioctls_bad_input,
    },
    Test {
        name: "target_pid_follows_ptrace_rules",
        run: mm::target_pid_follows_ptrace_rules,
    },
    Test {
        name: "tracer_reads_its_tracee",
        run: mm::tracer_reads_its_tracee,
    },
    Test {
        name: "tracer_rule_refuses_third_parties",
        run: access::tracer_rule_refuses_third_parties,
    },
    Test {
        name: "tracer_refused_when_tracee_not_dumpable",
        run: access::tracer_refused_when_tracee_not_dumpable,
    },
    Test {
        name: "exec_after_detach_is_never_read",
        run: access::exec_after_detach_is_never_read,
    },
    Test {
        name: "compat_32bit_userspace",
        run: mm::compat_32bit_userspace,
    },
    // The mmscope command.
    Test {
        name: "extensible_struct_rule",
        run: mm::extensible_struct_rule,
    },
    Test {
        name: "vma_seq_moves_with_the_vmas",
        run: mm::vma_seq_moves_with_the_vmas,
    },
    Test {
        name: "cli_maps_json_matches_procfs",
        run: cli::cli_maps_json_matches_procfs,
    },
    Test {
        name: "cli_maps_text_table_and_picture",
        run: cli::cli_maps_text_table_and_picture,
    },
    Test {
        name: "cli_maps_colour_rules",
        run: cli::cli_maps_colour_rules,
    },
    Test {
        name: "cli_maps_other_process_as_user",
        run: cli::cli_maps_other_process_as_user,
    },
    Test {
        name: "cli_trace_known_calls",
        run: cli::cli_trace_known_calls,
    },
    Test {
        name: "cli_trace_threads",
        run: cli::cli_trace_threads,
    },
    Test {
        name: "cli_trace_exit_and_kill",
        run: cli::cli_trace_exit_and_kill,
    },
    Test {
        name: "cli_trace_text_and_svg",
        run: cli::cli_trace_text_and_svg,
    },
    Test {
        name: "cli_sources_agree_on_maps",
        run: cli::cli_sources_agree_on_maps,
    },
    Test {
        name: "cli_sources_agree_on_trace",
        run: cli::cli_sources_agree_on_trace,
    },
    Test {
        name: "cli_lazy_counts_pages",
        run: cli::cli_lazy_counts_pages,
    },
    Test {
        name: "cli_lazy_sequential",
        run: cli::cli_lazy_sequential,
    },
    Test {
        name: "cli_bad_input",
        run: cli::cli_bad_input,
    },
    Test {
        name: "cli_missing_module_says_how_to_load",
        run: cli::cli_missing_module_says_how_to_load,
    },
    Test {
        name: "cli_trace_delivers_signals",
        run: cli::cli_trace_delivers_signals,
    },
    Test {
        name: "cli_trace_default_dispositions",
        run: cli::cli_trace_default_dispositions,
    },
    Test {
        name: "cli_trace_refused",
        run: cli::cli_trace_refused,
    },
    Test {
        name: "cli_trace_keeps_group_stops",
        run: cli::cli_trace_keeps_group_stops,
    },
    Test {
        name: "cli_trace_forgets_exited_threads",
        run: cli::cli_trace_forgets_exited_threads,
    },
    Test {
        name: "cli_trace_terminal_signals",
        run: cli::cli_trace_terminal_signals,
    },
    Test {
        name: "cli_trace_lets_other_processes_go",
        run: cli::cli_trace_lets_other_processes_go,
    },
    Test {
        name: "cli_trace_untraced_changes_stay_out_of_the_next_call",
        run: cli::cli_trace_untraced_changes_stay_out_of_the_next_call,
    },
    Test {
        name: "cli_trace_stacks",
        run: cli::cli_trace_stacks,
    },
    Test {
        name: "cli_trace_faults",
        run: cli::cli_trace_faults,
    },
    Test {
        name: "cli_trace_html",
        run: cli::cli_trace_html,
    },
    Test {
        name: "cli_trace_kernel",
        run: cli::cli_trace_kernel,
    },
    Test {
        name: "cli_trace_follows_forks",
        run: cli::cli_trace_follows_forks,
    },
    Test {
        name: "cli_trace_follows_past_an_unreadable_child",
        run: cli::cli_trace_follows_past_an_unreadable_child,
    },
    Test {
        name: "cli_trace_exit_is_the_last_thread",
        run: cli::cli_trace_exit_is_the_last_thread,
    },
    Test {
        name: "cli_trace_counts_refused_brk",
        run: cli::cli_trace_counts_refused_brk,
    },
    Test {
        name: "cli_trace_warns_of_32bit_calls",
        run: cli::cli_trace_warns_of_32bit_calls,
    },
    // Last: nothing any test allocated may outlive it.
    // The module's life, and the system's limits.
    Test {
        name: "rmmod_refused_while_mapped",
        run: lifecycle::rmmod_refused_while_mapped,
    },
    Test {
        name: "reload_with_users",
        run: lifecycle::reload_with_users,
    },
    Test {
        name: "memcg_limit_kills_only_the_offender",
        run: lifecycle::memcg_limit_kills_only_the_offender,
    },
    Test {
        name: "fault_ahead_window_never_oom_kills",
        run: lifecycle::fault_ahead_window_never_oom_kills,
    },
    Test {
        name: "stress_against_model",
        run: stress::stress_against_model,
    },
    Test {
        name: "ioctl_fuzz",
        run: fuzz::ioctl_fuzz,
    },
    // Allocation failures injected into every path (the debug kernel).
    Test {
        name: "syscalls_survive_allocation_failures",
        run: inject::syscalls_survive_allocation_failures,
    },
    Test {
        name: "faults_survive_allocation_failures",
        run: inject::faults_survive_allocation_failures,
    },
    Test {
        name: "nothing_left_allocated",
        run: lazy::nothing_left_allocated,
    },
    // What malloc really does: the heap scenarios, every allocator, and the claims table.
    Test {
        name: "cli_trace_diff_shows_every_change",
        run: cli::cli_trace_diff_shows_every_change,
    },
    Test {
        name: "cli_trace_real_program",
        run: cli::cli_trace_real_program,
    },
    Test {
        name: "programs_run_from_disk",
        run: cli::programs_run_from_disk,
    },
    Test {
        name: "cli_trace_attach_sigint",
        run: cli::cli_trace_attach_sigint,
    },
    Test {
        name: "cli_trace_attach_sighup_threads",
        run: cli::cli_trace_attach_sighup_threads,
    },
    Test {
        name: "cli_trace_attach_until_the_end",
        run: cli::cli_trace_attach_until_the_end,
    },
    Test {
        name: "cli_trace_attach_sigterm",
        run: cli::cli_trace_attach_sigterm,
    },
    Test {
        name: "cli_trace_attach_refused",
        run: cli::cli_trace_attach_refused,
    },
    Test {
        name: "heap_small",
        run: || heap::scenario("small"),
    },
    Test {
        name: "heap_large",
        run: || heap::scenario("large"),
    },
    Test {
        name: "heap_threshold",
        run: || heap::scenario("threshold"),
    },
    Test {
        name: "heap_dynamic",
        run: || heap::scenario("dynamic"),
    },
    Test {
        name: "heap_trim",
        run: || heap::scenario("trim"),
    },
    Test {
        name: "heap_lazy",
        run: || heap::scenario("lazy"),
    },
    Test {
        name: "heap_brk_unaligned",
        run: || heap::scenario("brk-unaligned"),
    },
    Test {
        name: "heap_brk_blocked",
        run: || heap::scenario("brk-blocked"),
    },
    Test {
        name: "heap_rlimit_data",
        run: || heap::scenario("rlimit-data"),
    },
    Test {
        name: "heap_thread",
        run: || heap::scenario("thread"),
    },
    Test {
        name: "heap_aslr",
        run: || heap::scenario("aslr"),
    },
    Test {
        name: "heap_heap_before_main",
        run: || heap::scenario("heap-before-main"),
    },
    Test {
        name: "heap_fork_heap",
        run: || heap::scenario("fork-heap"),
    },
    Test {
        name: "heap_bump",
        run: || heap::scenario("bump"),
    },
    Test {
        name: "heap_edges",
        run: || heap::scenario("edges"),
    },
    Test {
        name: "heap_claims_table",
        run: heap::claims_table,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bench") {
        let table = bench::run();
        print!("{table}");
        if let Some(path) = args.get(2) {
            if let Err(e) = std::fs::write(path, &table) {
                eprintln!("mmscope-selftests: cannot write {path}: {e}");
                std::process::exit(1);
            }
        }
        std::process::exit(0);
    }
    if args.get(1).map(String::as_str) == Some("--helper") {
        std::process::exit(helpers::run(args.get(2).map_or("", String::as_str)));
    }
    let filter = args.get(1).cloned();
    let totals = harness::run(TESTS, filter.as_deref());
    std::process::exit(if totals.failed == 0 { 0 } else { 1 });
}
