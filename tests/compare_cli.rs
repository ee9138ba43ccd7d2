//! `mislas compare`'s command line: bad methods and trained checkpoints are refused in words
//! before anything is loaded; on a real (tiny) run the backbone passes show their progress,
//! and Ctrl-C cancels cleanly.
use std::process::Command;

mod fixtures;
use fixtures::{tiny_cifar10, train_tiny_stage1, train_tiny_stage1_as};

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

/// On a one-epoch tiny CIFAR-10-LT stage 1 (one image per batch, so that the pass has 100
/// steps): Ctrl-C during the backbone pass ends `compare` with status 130, a word, and
/// nothing written (no cache, no table); then a full comparison prints the pass's progress
/// with images done, rate and ETA, for the test set and (NCM) the training set.
#[test]
fn the_backbone_pass_shows_progress_and_ctrl_c_cancels_it() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tiny_cifar10(&root.join("data"));
    train_tiny_stage1(root);
    let run = std::fs::read_dir(root.join("saved"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();
    let ck = run.join("ckps/current.safetensors");
    let args = |cmd: &mut Command| {
        cmd.current_dir(root)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .args(["compare", "--checkpoint", ck.to_str().unwrap()])
            .args(["eval_batch_size", "1", "workers", "0", "device", "cpu"])
            .args(["--methods", "ce,ce+ncm", "--draws", "50"]);
    };

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mislas"));
    args(&mut cmd);
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no progress line: {seen}"
        );
        seen.push_str(&line);
        if line.contains("backbone on the test set: ") {
            break;
        }
    }
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    std::io::Read::read_to_string(&mut err, &mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("compare: cancelled"), "{seen}");
    assert!(!seen.contains("panicked"), "{seen}");
    let cached = std::fs::read_dir(run.join("cache")).map_or(0, |d| d.count());
    assert_eq!(cached, 0, "a cancelled pass writes no cache");
    assert!(!run.join("compare").exists(), "nor a table");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mislas"));
    args(&mut cmd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for source in ["test set: 100/100", "training set: 199/199"] {
        let line = err
            .lines()
            .find(|l| l.contains(source))
            .unwrap_or_else(|| panic!("{source}: {err}"));
        assert!(
            line.contains("images (100 %) · ") && line.contains(" img/s · ETA 0:00"),
            "{line}"
        );
    }
}

#[test]
fn unknown_test_prior_lists_the_known_ones() {
    let (code, err) = compare(&[
        "--checkpoint",
        "x.safetensors",
        "--test-priors",
        "forward50,forward7",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "--test-priors: unknown test prior 'forward7'; known: forward50, forward25, \
             forward10, forward5, forward2, uniform, backward2, backward5, backward10, \
             backward25, backward50, forward3, backward3, all, none"
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

/// `--base`: another stage-1 checkpoint must be a stage-1 run of the same data (its loss and
/// backbone may differ), and base names are unique words; each refusal names the flag, the
/// file and what was expected, before any network runs.
#[test]
fn stage1_bases_of_other_data_or_stage_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let s1 = fake_run(root.path(), "s1", "stage1", "");
    let bs = fake_run(root.path(), "bs", "stage1", "loss: balanced_softmax\n");
    let crt = fake_run(root.path(), "crt", "stage2", "");
    let other = fake_run(root.path(), "bs_if10", "stage1", "");
    let f = root.path().join("bs_if10/config.yaml");
    let t = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, t.replace("imb_factor: 0.01", "imb_factor: 0.1")).unwrap();
    let cases: [(Vec<String>, String); 5] = [
        (
            vec!["--base".into(), format!("bs={other}")],
            format!(
                "--base bs={other}: trained on fashion_mnist, IF 0.1, 10 classes, not on the \
                 --checkpoint's fashion_mnist, IF 0.01, 10 classes"
            ),
        ),
        (
            vec!["--base".into(), format!("c={crt}")],
            format!("--base c={crt}: a stage-2 checkpoint; a --base is another stage-1 backbone"),
        ),
        (
            vec!["--base".into(), format!("ce={bs}")],
            format!("--base ce={bs}: the name 'ce' is taken by --checkpoint"),
        ),
        (
            vec![
                "--base".into(),
                format!("bs={bs}"),
                "--trained".into(),
                format!("bs={crt}"),
            ],
            format!("--trained bs={crt}: the name 'bs' is taken by another --base or --trained"),
        ),
        (
            vec!["--base".into(), "bs".into()],
            "--base 'bs': expected NAME=PATH".into(),
        ),
    ];
    for (extra, want) in &cases {
        let mut args = vec!["--checkpoint", s1.as_str(), "--methods", "ce"];
        args.extend(extra.iter().map(String::as_str));
        let (code, err) = compare(&args);
        assert_eq!(code, 1, "{extra:?}: {err}");
        assert!(err.contains(want.as_str()), "{extra:?}: {err}");
    }
    let (code, err) = compare(&["--checkpoint", &s1, "--methods", "ce,bs+ts"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "method 'bs' needs the checkpoint of 'bs': add --trained bs=PATH (a \
             classifier stage) or --base bs=PATH (another stage-1 backbone)"
        ),
        "{err}"
    );
}

/// Issue 20: one `compare` over backbones of two stage-1 losses (tiny one-epoch CIFAR-10-LT
/// runs with cross-entropy and Balanced Softmax): rows labelled from the catalogue, every
/// method fitted and scored on the same halves, with intervals, and the base listed.
#[test]
fn backbones_of_two_stage1_losses_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tiny_cifar10(&root.join("data"));
    train_tiny_stage1_as(root, "tiny_ce", &[]);
    train_tiny_stage1_as(root, "tiny_bs", &["loss", "balanced_softmax"]);
    let ck = |name: &str| {
        let run = std::fs::read_dir(root.join("saved"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
            .unwrap();
        run.join("ckps/current.safetensors").display().to_string()
    };
    let (ce, bs) = (ck("tiny_ce"), ck("tiny_bs"));
    let out_dir = root.join("cmp");
    let out = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(root)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args([
            "compare",
            "--checkpoint",
            &ce,
            "--base",
            &format!("bs={bs}"),
        ])
        .args(["--methods", "ce,ce+ts,bs,bs+ts,bs+la", "--draws", "50"])
        .args(["--test-priors", "forward2,uniform,forward50"])
        .args(["--out", out_dir.to_str().unwrap()])
        .args(["workers", "0", "device", "cpu"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("comparison.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CE (stage 1)",
            "CE (stage 1) + TS",
            "Balanced Softmax",
            "Balanced Softmax + TS",
            "Balanced Softmax + LA"
        ]
    );
    assert_eq!(json["bases"][0][0], "bs");
    assert_eq!(json["bases"][0][1], "Balanced Softmax");
    // The same 50 scored images (half B) for every row, each with a top-1 interval around it.
    for r in json["rows"].as_array().unwrap() {
        let all = &r["figures"][0];
        assert_eq!(all["samples"], 50, "{}", r["name"]);
        let (lo, hi) = (
            r["intervals"][0]["top1"]["lo"].as_f64().unwrap(),
            r["intervals"][0]["top1"]["hi"].as_f64().unwrap(),
        );
        let t = all["top1"].as_f64().unwrap();
        assert!(
            lo <= t && t <= hi && lo < hi,
            "{}: {t} [{lo}, {hi}]",
            r["name"]
        );
    }
    let md = std::fs::read_to_string(out_dir.join("results.md")).unwrap();
    assert!(
        md.contains("Stage-1 base `bs` (Balanced Softmax): "),
        "{md}"
    );
    // Shifted priors: forward2 is scored (5 per class in half B: 5, 4, …, 2 images); forward50
    // leaves the rarest class none and uniform is the 50 images; both said.
    let tp = std::fs::read_to_string(out_dir.join("test_priors.md")).unwrap();
    assert!(
        tp.contains("### forward2 (") && tp.contains("Balanced Softmax + TS"),
        "{tp}"
    );
    assert!(
        err.contains("=> warning: forward50: the rarest class would get 0"),
        "{err}"
    );
}
