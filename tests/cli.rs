//! The command line as a user meets it: `mislas config` prints the resolved configuration or the
//! error, and bad input ends with one clear message naming the file and what was expected, and a
//! non-zero exit.
use std::path::Path;
use std::process::{Command, Output};

mod fixtures;

fn mislas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("mislas runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const STAGE1: &str = "presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml";

#[test]
fn config_prints_the_resolved_configuration() {
    let o = mislas(&["config", "--cfg", STAGE1, "lr", "0.05", "num_epochs", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let yaml = String::from_utf8_lossy(&o.stdout);
    assert!(yaml.contains("lr: 0.05"), "{yaml}");
    assert!(yaml.contains("num_epochs: 3"), "{yaml}");
    assert!(yaml.contains("dataset: fashion_mnist"), "{yaml}");
}

#[test]
fn config_reports_ignored_distributed_keys() {
    let o = mislas(&[
        "config",
        "--cfg",
        "presets/cifar10/cifar10_imb001_stage1_mixup.yaml",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ignored keys of distributed PyTorch: "));
    // The backend follows the device; dist_url, world_size, rank are used (src/dist).
    assert!(stderr(&o).contains("dist_backend"));
    assert!(!stderr(&o).contains("dist_url"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("dist_url: tcp://224.66.41.62:23456"));
}

#[test]
fn config_errors_name_the_key_and_file() {
    let o = mislas(&["config", "--cfg", STAGE1, "learning_rate", "0.1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown key 'learning_rate'"),
        "{}",
        stderr(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nbatch_size: lots\n").unwrap();
    let o = mislas(&["config", "--cfg", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("bad.yaml: batch_size: expected a whole number ≥ 1, got 'lots'"),
        "{e}"
    );

    let o = mislas(&["config", "--cfg", STAGE1, "lr", "-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("lr: must be > 0"), "{}", stderr(&o));

    let o = mislas(&["config", "--cfg", "presets/nope.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("presets/nope.yaml"), "{}", stderr(&o));
}

#[test]
fn train_on_a_missing_data_folder_fails_clearly() {
    let saved = tempfile::tempdir().unwrap();
    let o = mislas(&[
        "--saved",
        saved.path().to_str().unwrap(),
        "train",
        "--cfg",
        STAGE1,
        "data_path",
        "/nonexistent/fmnist",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/fmnist"), "{}", stderr(&o));
    // The failed-run line is a log line: on stdout too (issue 18), the message on stderr.
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("=> failed ("));
    assert!(
        line.is_some_and(|l| l.contains("/nonexistent/fmnist")),
        "{out}"
    );
    // Nothing is created for a run that could not start.
    assert_eq!(std::fs::read_dir(saved.path()).unwrap().count(), 0);
}

#[test]
fn large_scale_presets_name_the_missing_list_file() {
    let o = mislas(&[
        "train",
        "--cfg",
        "presets/imagenet/imagenet_resnet50_stage1_mixup.yaml",
        "device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("Path/to/Data/ImageNet/ImageNet_LT_train.txt") && e.contains("train_list"),
        "{e}"
    );
}

#[test]
fn amp_without_cuda_is_refused_before_anything_is_written() {
    if tch::Cuda::is_available() {
        return; // device auto is CUDA here, where amp runs
    }
    let saved = tempfile::tempdir().unwrap();
    let o = mislas(&[
        "--saved",
        saved.path().to_str().unwrap(),
        "train",
        "--cfg",
        STAGE1,
        "device",
        "auto",
        "amp",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("amp") && e.contains("CUDA"), "{e}");
    assert_eq!(std::fs::read_dir(saved.path()).unwrap().count(), 0);
    // A pipeline whose stage 2 asks for amp stops before stage 1 trains.
    let o = mislas(&[
        "--saved",
        saved.path().to_str().unwrap(),
        "pipeline",
        "device",
        "auto",
        "stage2.amp",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("amp") && e.contains("stage2"), "{e}");
    assert_eq!(std::fs::read_dir(saved.path()).unwrap().count(), 0);
    // With device cpu the configuration itself says so.
    let o = mislas(&["config", "--cfg", STAGE1, "device", "cpu", "amp", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("amp: mixed precision needs a CUDA device"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stage2_checkpoint_of_another_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("model_best.pth.tar");
    std::fs::write(&ck, b"PK\x03\x04 but not really a zip").unwrap();
    let o = mislas(&[
        "train",
        "--cfg",
        "presets/fashion_mnist/fashion_mnist_imb001_stage2_mislas.yaml",
        "resume",
        ck.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("model_best.pth.tar"), "{}", stderr(&o));
}

#[test]
fn config_prints_each_key_with_its_help_and_loads_back() {
    let o = mislas(&["config", "--cfg", STAGE1]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("batch_size: 128 ") && l.ends_with("# Training batch size")),
        "{text}"
    );
    assert!(
        text.contains("# (stage 2 only) MiSLAS LAS: label smoothing"),
        "{text}"
    );
    // The output is a configuration file itself.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("printed.yaml");
    std::fs::write(&path, &text).unwrap();
    let o = mislas(&["config", "--cfg", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);
}

#[test]
fn config_errors_say_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let o = mislas(&["config", "--cfg", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("empty.yaml: the file is empty: expected a yacs YAML configuration"),
        "{e}"
    );
    assert!(!e.contains("name: must not be empty"), "{e}");

    let o = mislas(&["config", "--cfg", STAGE1, "batch_size", "abc"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("command line: batch_size: expected a whole number ≥ 1, got 'abc'"),
        "{e}"
    );
}

#[test]
fn config_refuses_a_batch_larger_than_the_training_set() {
    let o = mislas(&["config", "--cfg", STAGE1, "batch_size", "1000000000"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(
            "batch_size: batch_size 1000000000 is larger than the training set (14886 images \
             of Fashion-MNIST-LT at imbalance factor 0.01)"
        ),
        "{e}"
    );
}

#[test]
fn config_checks_the_device_against_this_machine() {
    let gpus = if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap()
    } else {
        0
    };
    if gpus < 8 {
        let o = mislas(&["config", "--cfg", STAGE1, "device", "cuda:7"]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(e.contains("device: 'cuda:7'"), "{e}");
    }
    if gpus == 0 {
        let o = mislas(&["config", "--cfg", STAGE1, "device", "auto", "amp", "true"]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("amp: mixed precision needs a CUDA device"),
            "{e}"
        );
    }
}

#[test]
fn train_refuses_a_batch_larger_than_the_training_set_and_writes_nothing() {
    let saved = tempfile::tempdir().unwrap();
    let o = mislas(&[
        "train",
        "--saved",
        saved.path().to_str().unwrap(),
        "--cfg",
        STAGE1,
        "batch_size",
        "1000000000",
        "device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("batch_size 1000000000 is larger than the training set (14886 images"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "{err}");
    assert_eq!(std::fs::read_dir(saved.path()).unwrap().count(), 0);
}

/// Options and `KEY VALUE` overrides in any order, for every subcommand that takes overrides:
/// an option after an override is read as the option, never as a key (the README's own
/// `compare --checkpoint … device cpu --trained … --methods …`).
#[test]
fn options_after_overrides_are_options() {
    let o = mislas(&["config", "lr", "0.05", "--cfg", STAGE1, "num_epochs", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let yaml = String::from_utf8_lossy(&o.stdout);
    assert!(
        yaml.contains("lr: 0.05") && yaml.contains("num_epochs: 3"),
        "{yaml}"
    );

    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("s1_202601010000");
    std::fs::create_dir_all(run.join("ckps")).unwrap();
    let preset =
        std::fs::read_to_string(format!("{}/{STAGE1}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    std::fs::write(run.join("config.yaml"), preset).unwrap();
    let ck = run.join("ckps/current.safetensors");
    std::fs::write(&ck, b"not read: the checks come first").unwrap();
    let missing = root.path().join("crt.safetensors");
    let trained = format!("crt={}", missing.display());
    let o = mislas(&[
        "compare",
        "--checkpoint",
        ck.to_str().unwrap(),
        "device",
        "cpu",
        "--trained",
        &trained,
        "--methods",
        "ce,crt",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("no checkpoint at {}", missing.display())),
        "--trained after an override is the option: {e}"
    );

    // The other subcommands that take overrides: each gets past the command line (and stops
    // on the missing data or checkpoint it was given).
    let none = "/nonexistent/mislas-data";
    for args in [
        vec!["train", "data_path", none, "--cfg", STAGE1, "device", "cpu"],
        vec![
            "eval",
            "data_path",
            none,
            "--cfg",
            STAGE1,
            "resume",
            "/nonexistent/c.pth",
        ],
        vec![
            "bench",
            "data_path",
            none,
            "--batches",
            "1",
            "--cfg",
            STAGE1,
        ],
        vec![
            "pipeline",
            "data_path",
            none,
            "--stage1",
            STAGE1,
            "device",
            "cpu",
        ],
    ] {
        let saved = tempfile::tempdir().unwrap();
        let mut all = vec!["--saved", saved.path().to_str().unwrap()];
        all.extend(&args);
        let o = mislas(&all);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            !e.contains("unknown key '--") && !e.contains("unexpected argument"),
            "{args:?}: {e}"
        );
        assert!(e.contains("/nonexistent/"), "{args:?}: {e}");
    }
}

/// Outside the clone (another folder, as after `cargo install --path .`), the release presets
/// come with the binary: `mislas presets` lists them and says where it looks, and a
/// `presets/…` path names the built-in preset.
#[test]
fn presets_are_found_outside_the_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let (cwd, data, config) = (
        tmp.path().join("elsewhere"),
        tmp.path().join("data"),
        tmp.path().join("config"),
    );
    std::fs::create_dir_all(&cwd).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mislas"))
            .current_dir(&cwd)
            .env("MISLAS_DATA_DIR", &data)
            .env("XDG_CONFIG_HOME", &config)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["presets"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let release = data.join("presets");
    assert!(
        out.starts_with(&format!(
            "looks in {} (release, built in) · {} (yours)",
            release.display(),
            config.join("mislas/presets").display()
        )),
        "{out}"
    );
    let files = std::fs::read_dir(format!(
        "{}/presets/fashion_mnist",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .count();
    let listed = out
        .lines()
        .filter(|l| l.starts_with("built-in") && l.contains("fashion_mnist_"))
        .count();
    assert_eq!(listed, files, "{out}");
    assert!(
        release
            .join("fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml")
            .is_file(),
        "installed in the per-user data folder"
    );
    let o = run(&["config", "--cfg", STAGE1]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("dataset: fashion_mnist"));
}

/// SIGUSR1 (Slurm's warning before a time limit or a preemption) mid-epoch: the run saves its
/// checkpoint at the next batch and exits with 75, "requeue me"; outside Slurm it says so.
#[test]
fn sigusr1_saves_a_checkpoint_and_exits_to_be_requeued() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let preset = format!(
        "{}/presets/cifar10/cifar10_imb01_stage1_mixup.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(root)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env_remove("SLURM_JOB_ID")
        .args([
            "train",
            "--cfg",
            &preset,
            "name",
            "preempt",
            "data_path",
            "./data",
        ])
        // Three epochs, so that the signal lands inside the run however loaded the machine.
        .args(["num_epochs", "3", "batch_size", "2", "warmup_epochs", "0"])
        .args(["device", "cpu", "workers", "0", "print_freq", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = out.lines();
    // The first training line: the run is inside its epoch.
    for line in lines.by_ref() {
        if line.unwrap().starts_with("Epoch: [0][") {
            break;
        }
    }
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGUSR1) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(
        err.contains("exit status 75 asks to be started again"),
        "{err}"
    );
    assert!(
        rest.iter().any(|l| l.starts_with("=> stopped ")),
        "{rest:?}"
    );
    let run = std::fs::read_dir(root.join("saved"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("config.yaml").is_file())
        .unwrap();
    let ck = mislas::checkpoint::load(&run.join("ckps/current.safetensors")).unwrap();
    let pos = ck.position.unwrap();
    assert!(pos.epoch < 3, "saved at epoch {}", pos.epoch);
    assert_eq!(
        mislas::run_dir::read_metrics(&run).unwrap().len(),
        pos.epoch
    );
}

/// The README's paragraph on how a run fails names every kind of failure as the run says it.
#[test]
fn the_readme_names_every_failure_kind() {
    use mislas::events::FailureKind as K;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let para = readme
        .split("**How a run fails.**")
        .nth(1)
        .and_then(|r| r.split("\n\n").next())
        .expect("the README has its paragraph on failures")
        .replace('\n', " ");
    for k in [
        K::Config,
        K::Data,
        K::Checkpoint,
        K::NonFinite,
        K::OutOfMemory,
        K::Io,
        K::LostRank,
        K::Internal,
        K::Killed,
    ] {
        assert!(para.contains(&k.to_string()), "{k} is missing: {para}");
    }
}

/// The tiny pipeline on [`fixtures::tiny_cifar10`] in `root`, each stage in a fixed folder
/// (`run_dir`): `s1`/`s2` under `root/<tag>`.
fn fixed_folder_pipeline(root: &Path, tag: &str) -> Command {
    let preset = |f: &str| format!("{}/presets/cifar10/{f}", env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_mislas"));
    c.current_dir(root)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env_remove("SLURM_JOB_ID")
        .env_remove("SLURM_RESTART_COUNT")
        .args(["pipeline", "--stage1"])
        .arg(preset("cifar10_imb01_stage1_mixup.yaml"))
        .arg("--stage2")
        .arg(preset("cifar10_imb01_stage2_mislas.yaml"))
        .args(["data_path", "./data", "num_epochs", "1", "device", "cpu"])
        .args([
            "workers",
            "0",
            "print_freq",
            "5",
            "stage1.warmup_epochs",
            "0",
        ])
        .args([
            "stage1.batch_size",
            "32",
            "stage2.batch_size",
            "4",
            "lr",
            "0.01",
        ])
        .args(["stage1.run_dir", &format!("{tag}/s1")])
        .args(["stage2.run_dir", &format!("{tag}/s2")]);
    c
}

/// A pipeline preempted (SIGUSR1) inside stage 2 and started again with the same command line
/// continues by itself: stage 1 (finished) hands on its best checkpoint without training, stage 2
/// continues in its folder from the batch where it stopped; each stage counts one restart, and
/// stage 2's metrics equal an uninterrupted pipeline's. A stage pointed at a folder holding
/// another stage's checkpoint is refused, naming the folder.
#[test]
fn a_pipeline_in_fixed_folders_is_continued_by_the_same_command() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let mut child = fixed_folder_pipeline(root, "pre")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut in_stage2 = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        in_stage2 |= line.starts_with("=> stage2 of ");
        if in_stage2 && line.starts_with("Epoch: [0][") {
            break;
        }
    }
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGUSR1) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(75), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with("=> stopped at epoch 0 batch")),
        "{rest:?}"
    );
    let stopped = mislas::checkpoint::load(&root.join("pre/s2/ckps/current.safetensors"))
        .unwrap()
        .position
        .unwrap();

    let again = fixed_folder_pipeline(root, "pre").output().unwrap();
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{out}\n{}", stderr(&again));
    assert_eq!(
        out.matches("=> restart 1 of this run in this folder")
            .count(),
        2,
        "{out}"
    );
    // Stage 1 trains nothing; stage 2 starts at the batch where it stopped (its first log line
    // is the first multiple of print_freq 5 from there).
    let first = out.find("Epoch: [").unwrap();
    assert!(out.find("=> stage2 of ").unwrap() < first, "{out}");
    let b: usize = out[first..]["Epoch: [0][".len()..]
        .split('/')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (stopped.batch..stopped.batch + 5).contains(&b),
        "stopped at batch {}, restarted with batch {b}",
        stopped.batch
    );
    for s in ["s1", "s2"] {
        let r = mislas::run_dir::read_restarts(&root.join("pre").join(s)).unwrap();
        assert_eq!((r.count, r.starts, r.source.as_str()), (1, 2, "run folder"));
    }
    assert_eq!(std::fs::read_dir(root.join("pre")).unwrap().count(), 2);

    let whole = fixed_folder_pipeline(root, "whole").output().unwrap();
    assert!(whole.status.success(), "{}", stderr(&whole));
    let figures = |dir: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(root.join(dir).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["train_seconds", "eval_seconds", "images_per_sec"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    for s in ["s1", "s2"] {
        let (a, b) = (figures(&format!("pre/{s}")), figures(&format!("whole/{s}")));
        assert_eq!(a.len(), 1);
        assert_eq!(
            a, b,
            "{s}: the continued pipeline differs from the uninterrupted one"
        );
    }

    // Stage 2 pointed at stage 1's folder would overwrite it: refused.
    let o = fixed_folder_pipeline(root, "whole")
        .args(["stage2.run_dir", "whole/s1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("run_dir whole/s1") && e.contains("another"),
        "{e}"
    );
}

/// `checkpoint_every` 0 or negative (or not a number) is refused by name, with what is expected.
#[test]
fn checkpoint_every_must_be_a_positive_number_of_minutes() {
    for v in ["0", "-5"] {
        let o = mislas(&["config", "--cfg", STAGE1, "checkpoint_every", v]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains(&format!(
                "checkpoint_every: must be a positive number of minutes (e.g. 10), is {v}"
            )),
            "{e}"
        );
    }
    let o = mislas(&["config", "--cfg", STAGE1, "checkpoint_every", "often"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("checkpoint_every"), "{}", stderr(&o));
}

/// Issue 20's sweep as one `queue add`: a grid over the stage-1 loss (values that bring their
/// other keys: LDAM with DRW and the normed classifier) and the seed, each point a pipeline
/// with two stage 2s (MiSLAS, cRT). Every point is checked before any is queued, stage 1
/// included: LDAM without `classifier normed` queues nothing.
#[test]
fn a_sweep_of_stage1_losses_queues_one_pipeline_per_point() {
    let data = tempfile::tempdir().unwrap();
    let queue = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mislas"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MISLAS_DATA_DIR", data.path())
            .args(["--saved", &data.path().join("saved").display().to_string()])
            .args(args)
            .output()
            .expect("mislas runs")
    };
    let pipeline = [
        "pipeline",
        "--stage2",
        "presets/fashion_mnist/fashion_mnist_imb001_stage2_mislas.yaml",
        "--stage2",
        "presets/fashion_mnist/fashion_mnist_imb001_stage2_crt.yaml",
        "stage1.num_epochs",
        "2",
        "device",
        "cpu",
    ];
    let add = |losses: &str| {
        let mut args = vec!["queue", "add", "--grid", "seed", "0,1", "--grid"];
        args.extend(["stage1.loss", losses]);
        args.extend(pipeline);
        queue(&args)
    };
    let o = add("ce,ldam+stage1.reweight=drw+stage1.drw_epoch=1+classifier=normed");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let names: Vec<&str> = out.lines().collect();
    let base = "fashion_mnist_imb001_stage1_mixup";
    assert_eq!(
        names,
        [
            format!("queued 1: {base}_seed0_stage1.lossce"),
            format!(
                "queued 2: {base}_seed0_stage1.lossldam_stage1.reweightdrw_stage1.drw_epoch1_\
                 classifiernormed"
            ),
            format!("queued 3: {base}_seed1_stage1.lossce"),
            format!(
                "queued 4: {base}_seed1_stage1.lossldam_stage1.reweightdrw_stage1.drw_epoch1_\
                 classifiernormed"
            ),
        ]
    );
    // LDAM on the linear classifier: refused, naming the stage-1 file and the key; the queue
    // keeps its four runs.
    let o = add("ce,ldam");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("fashion_mnist_imb001_stage1_mixup.yaml: loss:") && e.contains("normed"),
        "{e}"
    );
    let ls = queue(&["queue", "ls"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), 5);
}

/// `scripts/sweep_table.py` on run folders written by hand: mean ± sample std (ddof 1) over
/// seeds at each run's last epoch, stage-2 runs grouped by the stage-1 run their `resume`
/// names, an unfinished run left out, and the differences larger than the spread.
#[test]
fn the_sweep_table_script_groups_and_averages_run_folders() {
    use mislas::config::{ClassifierRecipe, Config, Stage, StageOneLossName};
    let saved = tempfile::tempdir().unwrap();
    // (folder, config, [(top-1, ECE, NLL, many)] per epoch, epochs of the stage)
    let run = |dir: &str, c: &Config, evals: &[(f64, f64, f64, f64)], total: usize| {
        let d = saved.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.yaml"), c.to_yaml()).unwrap();
        let lines: Vec<String> = evals
            .iter()
            .enumerate()
            .map(|(e, (t, ece, nll, many))| {
                serde_json::json!({"epoch": e, "num_epochs": total, "train_seconds": 60.0,
                    "eval_seconds": 30.0, "eval": {"top1": t, "ece": ece, "nll": nll,
                    "many_shot": many, "medium_shot": t, "few_shot": null}})
                .to_string()
            })
            .collect();
        std::fs::write(d.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
    };
    let s1 = |loss, seed| Config {
        mode: Some(Stage::Stage1),
        loss,
        seed,
        num_epochs: 2,
        ..Config::default()
    };
    let s2 = |parent: &str, seed| Config {
        mode: Some(Stage::Stage2),
        recipe: ClassifierRecipe::Crt,
        seed,
        num_epochs: 1,
        resume: saved
            .path()
            .join(parent)
            .join("ckps/model_best.safetensors")
            .display()
            .to_string(),
        ..Config::default()
    };
    use StageOneLossName::{BalancedSoftmax as Bs, Ce};
    // CE: last-epoch top-1 60, 62, 64 (mean 62, std 2); its cRT runs 70, 71, 72 (std 1).
    for (k, top1) in [60.0, 62.0, 64.0].into_iter().enumerate() {
        let seed = k as u64;
        let dir = format!("ce{k}");
        run(
            &dir,
            &s1(Ce, seed),
            &[(10.0, 9.0, 9.0, 9.0), (top1, 5.0, 1.0, 50.0)],
            2,
        );
        run(
            &format!("ce{k}_crt"),
            &s2(&dir, seed),
            &[(70.0 + k as f64, 3.0, 0.9, 66.0)],
            1,
        );
    }
    // Balanced Softmax: 70, 71, 72 in stage 1 (well above CE's 62 ± 2); cRT 70.5, 71, 71.5.
    for (k, top1) in [70.0, 71.0, 72.0].into_iter().enumerate() {
        let seed = k as u64;
        let dir = format!("bs{k}");
        run(
            &dir,
            &s1(Bs, seed),
            &[(20.0, 9.0, 9.0, 9.0), (top1, 5.0, 1.0, 50.0)],
            2,
        );
        let t = 70.5 + 0.5 * k as f64;
        run(
            &format!("bs{k}_crt"),
            &s2(&dir, seed),
            &[(t, 3.0, 0.9, 66.0)],
            1,
        );
    }
    // An unfinished stage-1 run (1 of 2 epochs) of a fourth CE seed: left out.
    run("ce3", &s1(Ce, 3), &[(99.0, 1.0, 0.1, 99.0)], 2);
    // When each run went (config.yaml written, last metrics line written), in seconds: the CE
    // runs in a first sitting (a 30 s pause between two runs counts in), the Balanced Softmax
    // ones in a second sitting 2.6 hours later: 450 + 400 s going, 10,400 s from first to last.
    let spans = [
        ("ce0", 0, 100),
        ("ce0_crt", 100, 150),
        ("ce1", 120, 200),
        ("ce1_crt", 230, 300),
        ("ce2", 300, 400),
        ("ce2_crt", 400, 450),
        ("bs0", 10_000, 10_100),
        ("bs0_crt", 10_100, 10_150),
        ("bs1", 10_150, 10_200),
        ("bs1_crt", 10_200, 10_260),
        ("bs2", 10_260, 10_300),
        ("bs2_crt", 10_300, 10_400),
    ];
    let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (dir, created, ended) in spans {
        for (file, at) in [("config.yaml", created), ("metrics.jsonl", ended)] {
            let f = std::fs::File::options()
                .write(true)
                .open(saved.path().join(dir).join(file))
                .unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(at))
                .unwrap();
        }
    }
    let json = saved.path().join("table.json");
    let o = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["scripts/sweep_table.py"])
        .arg(saved.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let fig = |row: &str, key: &str| -> Vec<f64> {
        let f = &v["table"][row][key];
        vec![
            f[0].as_f64().unwrap(),
            f[1].as_f64().unwrap(),
            f[2].as_f64().unwrap(),
        ]
    };
    let close = |got: Vec<f64>, want: [f64; 3]| {
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-12),
            "{got:?} vs {want:?}"
        );
    };
    close(fig("CE | stage 1", "top1"), [62.0, 2.0, 3.0]);
    close(fig("CE | cRT", "top1"), [71.0, 1.0, 3.0]);
    close(fig("Balanced Softmax | stage 1", "top1"), [71.0, 1.0, 3.0]);
    close(fig("Balanced Softmax | cRT", "top1"), [71.0, 0.5, 3.0]);
    close(fig("CE | stage 1", "many_shot"), [50.0, 0.0, 3.0]);
    assert!(v["table"]["CE | stage 1"]["few_shot"].is_null());
    assert_eq!(v["seeds"]["CE | stage 1"], serde_json::json!([0, 1, 2]));
    // Stage 1: 71 − 62 = 9 > 2 + 1; cRT: 71 − 71 = 0, not larger than the spread.
    let diffs: Vec<&str> = v["larger_than_spread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(
        diffs,
        ["stage 1, Balanced Softmax: top-1 +9.00 (71.00 ± 1.00 vs 62.00 ± 2.00)"]
    );
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("| CE | stage 1 | 0,1,2 | 62.00 ± 2.00 | 50.00 ± 0.00 | 62.00 ± 2.00 |"),
        "{md}"
    );
    assert!(md.contains("few % (no class in that group)"), "{md}");
    let t = &v["timing"];
    assert_eq!(
        (
            t["runs"].as_u64(),
            t["sittings"].as_u64(),
            t["going_seconds"].as_f64(),
            t["wall_seconds"].as_f64()
        ),
        (Some(12), Some(2), Some(850.0), Some(10_400.0)),
        "{t}"
    );
    assert!(
        md.contains("12 finished runs; wall time 14.2 min in 2 sittings (the pauses between sittings left out; 173.3 min from the first run folder to the last metrics line); train + evaluation 27.0 min summed over runs"),
        "{md}"
    );
}
