//! Link-time set-up for libtorch.
//!
//! * Embeds an rpath to the libtorch the crate was built against, so the binary finds
//!   `libtorch*.so` without `LD_LIBRARY_PATH`.
//! * Forces `libtorch_cuda.so` into the dynamic section when the libtorch has one: cargo
//!   links with `--as-needed`, which otherwise drops it (no symbol of it is referenced
//!   directly) and CUDA then reports itself unavailable at run time.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-cfg=mislas_torch_cuda");
    }
    println!("cargo::rustc-check-cfg=cfg(mislas_torch_cuda)");
}
