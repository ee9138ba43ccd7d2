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
            "method 'ce+foo': unknown post-hoc step 'foo' (expected tau-norm, ncm, la, ts, vs, \
             la-q, em or bbse)"
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
        err.contains("replaces the logits, so it must come right after the base"),
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

#[test]
fn zero_bootstrap_draws_is_refused_in_words() {
    let (code, err) = compare(&[
        "--checkpoint",
        "x.safetensors",
        "--methods",
        "ce",
        "--draws",
        "0",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--draws 0: a 95 % interval needs at least 2 bootstrap draws"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A run folder `<root>/<name>/` with `config.yaml` (the Fashion-MNIST-LT preset of `stage`,
/// with `overrides`) and a placeholder `ckps/current.safetensors`; returns the checkpoint.
fn fake_run(root: &std::path::Path, name: &str, stage: &str, overrides: &str) -> String {
    let preset = match stage {
        "stage1" => "fashion_mnist_imb001_stage1_mixup",
        _ => "fashion_mnist_imb001_stage2_crt",
    };
    let text = std::fs::read_to_string(format!(
        "{}/presets/fashion_mnist/{preset}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("ckps")).unwrap();
    std::fs::write(dir.join("config.yaml"), format!("{text}{overrides}")).unwrap();
    let ck = dir.join("ckps/current.safetensors");
    std::fs::write(&ck, b"not read: the checks come first").unwrap();
    ck.display().to_string()
}

/// A trained base must be a classifier stage of the same data; a stage-2 checkpoint is not the
/// stage-1 one. Each refusal names the file and what was expected, before any network runs.
#[test]
fn checkpoints_of_the_wrong_stage_or_data_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let s1 = fake_run(root.path(), "s1", "stage1", "");
    let other = fake_run(root.path(), "s1_if10", "stage1", "");
    let crt = fake_run(root.path(), "crt", "stage2", "");
    let crt_if10 = fake_run(root.path(), "crt_if10", "stage2", "");
    for (dir, imb) in [("s1_if10", "0.1"), ("crt_if10", "0.1")] {
        let f = root.path().join(dir).join("config.yaml");
        let t = std::fs::read_to_string(&f).unwrap();
        std::fs::write(
            &f,
            t.replace("imb_factor: 0.01", &format!("imb_factor: {imb}")),
        )
        .unwrap();
    }
    let cases: [(&[&str], String); 3] = [
        (
            &["--trained", &format!("other={other}")],
            format!("--trained other={other}: a stage-1 checkpoint"),
        ),
        (
            &["--trained", &format!("crt={crt_if10}")],
            format!(
                "--trained crt={crt_if10}: trained on fashion_mnist, IF 0.1, 10 classes, \
                 resnet32_fe, not on the stage-1 run's fashion_mnist, IF 0.01, 10 classes, \
                 resnet32_fe"
            ),
        ),
        (
            &["--trained", "crt=/nonexistent/crt.safetensors"],
            "no checkpoint at /nonexistent/crt.safetensors".into(),
        ),
    ];
    for (extra, want) in &cases {
        let mut args = vec!["--checkpoint", s1.as_str(), "--methods", "ce"];
        args.extend_from_slice(extra);
        let (code, err) = compare(&args);
        assert_eq!(code, 1, "{extra:?}");
        assert!(err.contains(want.as_str()), "{extra:?}: {err}");
    }
    let (code, err) = compare(&["--checkpoint", &crt, "--methods", "ce"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{crt} is a stage-2 checkpoint: give it as --trained"
        )),
        "{err}"
    );
}

#[test]
fn unknown_test_prior_lists_the_known_ones() {
    let (code, err) = compare(&[
        "--checkpoint",
        "x.safetensors",
        "--test-priors",
        "forward50,forward3",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "--test-priors: unknown test prior 'forward3'; known: forward50, forward25, \
             forward10, forward5, forward2, uniform, backward2, backward5, backward10, \
             backward25, backward50, all, none"
        ),
        "{err}"
    );
    let (code, err) = compare(&["--checkpoint", "x.safetensors", "--methods", "ce+em+bbse"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("method 'ce+em+bbse': at most one of la-q, em and bbse"),
        "{err}"
    );
}
