//! Shared helpers for ferrogate's benchmarks.
#![deny(unsafe_code)]
