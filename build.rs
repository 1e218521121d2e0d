//! Link settings. The `runtime-kernels` build (the release packages') links llama.cpp's shared
//! libraries, which the packages install in `/usr/lib/rapport` (`cpu::PACKAGED_KERNELS_DIR`), a
//! private directory the dynamic loader does not search by itself: the binary's RUNPATH names it.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_RUNTIME_KERNELS").is_some() {
        println!("cargo::rustc-link-arg-bins=-Wl,-rpath,/usr/lib/rapport");
    }
}
