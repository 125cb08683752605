// SPDX-License-Identifier: GPL-2.0

//! Compiles `c/abi.c` against `include/uapi/mmscope.h`, so that the tests compare the Rust ABI
//! definitions with what a C compiler makes of the header.

fn main() {
    println!("cargo:rerun-if-changed=c/abi.c");
    println!("cargo:rerun-if-changed=../include/uapi/mmscope.h");
    cc::Build::new()
        .file("c/abi.c")
        .include("../include/uapi")
        .warnings_into_errors(true)
        .compile("mmscope_c_abi");
}
