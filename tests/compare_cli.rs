//! `mislas compare`'s command line: bad methods and trained checkpoints are refused in words
//! before anything is loaded.
use std::process::Command;

fn compare(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .arg("compare")
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("mislas runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_step_is_named() {
    let (code, err) = compare(&["--checkpoint", "x.safetensors", "--methods", "ce,ce+foo"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "method 'ce+foo': unknown post-hoc step 'foo' (expected tau-norm, ncm, la, ts or vs)"
        ),
        "{err}"
    );
}

#[test]
fn logit_replacing_step_must_come_first() {
    let (code, err) = compare(&[
        "--checkpoint",
        "x.safetensors",
        "--methods",
        "ce+ts+tau-norm",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("replaces the logits, so it must come first"),
        "{err}"
    );
}

#[test]
fn trained_needs_name_and_path() {
    let (code, err) = compare(&["--checkpoint", "x.safetensors", "--trained", "crt"]);
    assert_eq!(code, 1);
    assert!(err.contains("--trained 'crt': expected NAME=PATH"), "{err}");
}

#[test]
fn a_method_on_a_missing_base_says_which_flag() {
    let (code, err) = compare(&[
        "--checkpoint",
        "x.safetensors",
        "--methods",
        "crt+ts",
        "device",
        "cpu",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("needs the checkpoint of 'crt': add --trained crt=PATH"),
        "{err}"
    );
}

#[test]
fn a_missing_checkpoint_is_named() {
    let (code, err) = compare(&[
        "--checkpoint",
        "/nonexistent/ck.safetensors",
        "--methods",
        "ce",
        "device",
        "cpu",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/ck.safetensors"), "{err}");
}
