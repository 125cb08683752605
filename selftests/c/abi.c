// SPDX-License-Identifier: GPL-2.0
/*
 * The ABI as the C header defines it, compiled by a C compiler, so that the
 * selftests can compare it with the Rust definitions.
 */
#include "mmscope.h"

const unsigned int mmscope_c_ioc_magic = MMSCOPE_IOC_MAGIC;
const unsigned int mmscope_c_abi_version = MMSCOPE_ABI_VERSION;
const unsigned int mmscope_c_ioc_version = MMSCOPE_IOC_VERSION;
