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
//! * Compiles `src/distributed/c10d.cc`, the C boundary to PyTorch's c10d (TCPStore, ProcessGroupGloo,
//!   ProcessGroupNCCL when CUDA's headers are found, and the gradient hooks of the all-reduce
//!   overlapped with the backward pass), against the headers of the same
//!   libtorch, and sets `mislas_c10d` (and `mislas_nccl`). Without gloo's headers (Debian:
//!   `libgloo-dev`, which `scripts/setup.sh` installs) it is left out with a warning: mislas then
//!   builds and trains on one process, and says at run time why more cannot start.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    jpeg_turbo();
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    c10d(&lib);
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:rustc-cfg=mislas_torch_cuda");
    }
    println!("cargo::rustc-check-cfg=cfg(mislas_torch_cuda)");
}

/// Builds the c10d glue (see the module doc); `lib` is libtorch's `lib/` folder.
fn c10d(lib: &Path) {
    println!("cargo::rustc-check-cfg=cfg(mislas_c10d, mislas_nccl)");
    println!("cargo:rerun-if-changed=src/distributed/c10d.cc");
    println!("cargo:rerun-if-env-changed=MISLAS_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=MISLAS_CUDA_INCLUDE");
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    let gloo = std::env::var("MISLAS_GLOO_INCLUDE")
        .map_or_else(|_| PathBuf::from("/usr/include"), PathBuf::from);
    if !gloo.join("gloo/algorithm.h").is_file() {
        println!(
            "cargo:warning=gloo's headers are not in {} (Debian: apt-get install libgloo-dev, or \
             set MISLAS_GLOO_INCLUDE): mislas is built without data-parallel training",
            gloo.display()
        );
        return;
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("src/distributed/c10d.cc")
        .std("c++17")
        .opt_level(2)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-interference-size");
    let nccl = nccl_includes(lib);
    if let Some(dirs) = &nccl {
        build
            .define("USE_C10D_NCCL", None)
            .define("MISLAS_NCCL", None);
        for d in dirs {
            build.include(d);
        }
    }
    if let Err(e) = build.try_compile("mislas_c10d") {
        panic!(
            "\n\ncompiling src/distributed/c10d.cc against {} failed: {e}\n",
            include.display()
        );
    }
    println!("cargo:rustc-cfg=mislas_c10d");
    if nccl.is_some() {
        println!("cargo:rustc-cfg=mislas_nccl");
    }
}

/// The include folders ProcessGroupNCCL.hpp needs, when all are found: the CUDA runtime's and
/// NCCL's headers of the wheels torch loads (`nvidia/cu13`, `nvidia/nccl`) and CCCL's
/// (`nv/target`, from the `nvidia-cuda-cccl` wheel or a CUDA toolkit, `MISLAS_CUDA_INCLUDE`).
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    let nvidia = lib.parent()?.parent()?.join("nvidia");
    let mut dirs = vec![nvidia.join("cu13/include"), nvidia.join("nccl/include")];
    if let Ok(extra) = std::env::var("MISLAS_CUDA_INCLUDE") {
        dirs.push(PathBuf::from(extra));
    }
    dirs.push(nvidia.join("cu13/include/cccl"));
    let has = |file: &str| dirs.iter().any(|d| d.join(file).is_file());
    let found =
        has("cuda_runtime.h") && has("nccl.h") && has("nv/target") && has("crt/host_config.h");
    if !found {
        println!(
            "cargo:warning=CUDA's headers for NCCL (cuda_runtime.h, crt/host_config.h, CCCL's \
             nv/target, nccl.h) were not all found under {}: mislas is built without NCCL \
             (multi-GPU training); install the nvidia-cuda-cccl wheel or set MISLAS_CUDA_INCLUDE",
            nvidia.display()
        );
    }
    found.then_some(dirs)
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
