//! Links the examples (bare-metal PV kernels) with this crate's linker
//! script; host builds link normally.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/pv-kernel.ld");
    println!("cargo:rerun-if-changed={script}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-examples=-T{script}");
        println!("cargo:rustc-link-arg-examples=--no-pie");
        println!("cargo:rustc-link-arg-examples=-zmax-page-size=4096");
    }
}
