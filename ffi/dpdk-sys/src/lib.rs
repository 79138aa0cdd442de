//! Raw bindings to the system DPDK, generated at build time. Nothing but bindings lives here;
//! the safe wrapper is `dataplane::dpdk`.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
// The generated code is DPDK's C API verbatim: its naming and layout are not ours to lint.

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
