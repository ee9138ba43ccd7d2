//! Link-time set-up for libtorch.
//!
//! * Embeds an rpath to the libtorch the crate was built against, so the binary finds
//!   `libtorch*.so` without `LD_LIBRARY_PATH`.
//! * Forces `libtorch_cuda.so` into the dynamic section when the libtorch has one: cargo
//!   links with `--as-needed`, which otherwise drops it (no symbol of it is referenced
//!   directly) and CUDA then reports itself unavailable at run time.
//! * Compiles `src/data/jpeg_turbo.c` (the JPEG decoder's glue) against the system's
//!   libjpeg-turbo and links `libjpeg`, statically when `libjpeg.a` is there (Debian:
//!   `libjpeg62-turbo-dev`, which `scripts/setup.sh` installs); the build stops with a message
//!   saying so when it is missing.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    jpeg_turbo();
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

/// Builds the libjpeg-turbo glue and links the library (see the module doc).
fn jpeg_turbo() {
    println!("cargo:rerun-if-changed=src/data/jpeg_turbo.c");
    println!("cargo:rerun-if-env-changed=MISLAS_JPEG_INCLUDE");
    println!("cargo:rerun-if-env-changed=MISLAS_JPEG_LIB");
    let mut build = cc::Build::new();
    build
        .file("src/data/jpeg_turbo.c")
        .opt_level(2)
        .warnings(true);
    if let Ok(dir) = std::env::var("MISLAS_JPEG_INCLUDE") {
        build.include(dir);
    }
    if let Err(e) = build.try_compile("mislas_jpeg_turbo") {
        panic!(
            "\n\nmislas decodes JPEGs with libjpeg-turbo, and compiling its glue \
             (src/data/jpeg_turbo.c) failed: {e}\n\
             Install libjpeg-turbo's development files (Debian/Ubuntu: `apt-get install \
             libjpeg62-turbo-dev`, or run scripts/setup.sh), or point MISLAS_JPEG_INCLUDE at the \
             folder of its jpeglib.h and MISLAS_JPEG_LIB at the folder of its libjpeg.\n"
        );
    }
    // The static library when there is one (Debian's package ships `libjpeg.a`): the binary
    // then runs where libjpeg-turbo is not installed, e.g. a GPU machine it is copied to.
    let dir = std::env::var("MISLAS_JPEG_LIB").ok().or_else(|| {
        let out = std::process::Command::new(build.get_compiler().path())
            .arg("-print-file-name=libjpeg.a")
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        // Without the file, the compiler prints the bare name back.
        path.is_absolute()
            .then(|| path.parent().map(|p| p.display().to_string()))
            .flatten()
    });
    match dir {
        Some(dir) if PathBuf::from(&dir).join("libjpeg.a").is_file() => {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-lib=static=jpeg");
        }
        Some(dir) => {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-lib=jpeg");
        }
        None => println!("cargo:rustc-link-lib=jpeg"),
    }
}
