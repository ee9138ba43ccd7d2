//! The binary must name `libtorch_cuda.so` in its dynamic section when the libtorch it was built
//! against has one: cargo links with `--as-needed`, which would drop it, and CUDA would then
//! report itself unavailable on a GPU machine (build.rs forces the link). libjpeg-turbo is
//! linked statically where its archive exists.
use std::path::PathBuf;
use std::process::Command;

fn libtorch_lib() -> PathBuf {
    let root = std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.libtorch")));
    let root = if root.is_relative() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(root)
    } else {
        root
    };
    root.join("lib")
}

fn needed(binary: &str) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-d", binary])
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf -d {binary} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            l.split('[')
                .nth(1)
                .map(|s| s.trim_end_matches(']').to_owned())
        })
        .collect()
}

#[test]
fn binary_links_libtorch_cuda_when_libtorch_has_it() {
    let bin = env!("CARGO_BIN_EXE_mislas");
    let libs = needed(bin);
    assert!(
        libs.iter().any(|l| l == "libtorch_cpu.so"),
        "{bin} does not name libtorch_cpu.so: {libs:?}"
    );
    if libtorch_lib().join("libtorch_cuda.so").exists() {
        assert!(
            libs.iter().any(|l| l == "libtorch_cuda.so"),
            "{bin} was built on a libtorch with CUDA but does not name libtorch_cuda.so: {libs:?}"
        );
    }
}

#[test]
fn libjpeg_turbo_is_linked_statically_where_its_archive_exists() {
    // build.rs links libjpeg.a when the compiler finds it, so that a binary copied to another
    // machine (a GPU server) does not need libjpeg-turbo installed there.
    let found = Command::new("cc")
        .arg("-print-file-name=libjpeg.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    if found.is_none() || std::env::var_os("MISLAS_JPEG_LIB").is_some() {
        return;
    }
    let libs = needed(env!("CARGO_BIN_EXE_mislas"));
    assert!(
        !libs.iter().any(|l| l.starts_with("libjpeg")),
        "libjpeg is linked dynamically: {libs:?}"
    );
}

#[test]
fn binary_finds_libtorch_without_environment() {
    // The rpath lets the binary start with no LD_LIBRARY_PATH.
    let out = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .arg("--version")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("mislas runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mislas "));
}
