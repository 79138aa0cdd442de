fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    cc::Build::new()
        .file("csrc/shim.c")
        .opt_level(2)
        .warnings(true)
        .compile("fg_ipsecmb_shim");
    // Debian's libipsec-mb-dev installs libIPSec_MB.so.
    println!("cargo:rustc-link-lib=IPSec_MB");
}
