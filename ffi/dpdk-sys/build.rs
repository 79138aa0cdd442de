//! Generates bindings to the system DPDK, found with pkg-config (Debian: libdpdk-dev).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .expect("libdpdk not found by pkg-config: apt-get install libdpdk-dev (tests/run.sh does)");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // The full compile flags (pkg-config's -march=corei7 and -include rte_config.h among
    // them): DPDK's inline functions need the ISA they were built for.
    let cflags: Vec<String> = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut clang_args: Vec<String> = lib
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();
    clang_args.extend(cflags.iter().cloned());
    clang_args.push("-include".into());
    clang_args.push("rte_config.h".into());
    let static_fns = out.join("static_fns");
    bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&clang_args)
        .allowlist_function("rte_.*|fg_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&static_fns)
        // Packed structs holding aligned ones (L2TPv2, GTP) cannot be expressed in Rust;
        // the gateway never looks inside them.
        .opaque_type("rte_l2tpv2_.*|rte_gtp_.*|rte_flow_item_gtp_psc|rte_flow_item_l2tpv2")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen over the DPDK headers failed")
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings");
    let mut cc = cc::Build::new();
    cc.file(static_fns.with_extension("c"))
        .include(env!("CARGO_MANIFEST_DIR"))
        .flag("-include")
        .flag("rte_config.h")
        .flag("-Wno-deprecated-declarations")
        .warnings(false);
    for p in &lib.include_paths {
        cc.include(p);
    }
    for f in cflags.iter().filter(|f| f.starts_with("-m")) {
        cc.flag(f);
    }
    cc.compile("fg_dpdk_static_fns");
}
