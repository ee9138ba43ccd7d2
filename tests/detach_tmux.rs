//! End to end, in tmux at 80×24: a run outlives the terminal that launched it.
//!
//! 1. A headless `mislas train` (the reference: same preset, same seed, 2 epochs) runs beside.
//! 2. The UI launches the Fashion-MNIST-LT stage-1 preset at 2 epochs; once batches show, the
//!    tmux session is killed (as a dropped SSH connection does).
//! 3. The reference is killed with -9 once its first epoch's checkpoint is written.
//! 4. `mislas` in a new session lists the live run; `a` attaches: the live screen replays the
//!    run and moves; `s` stops it. Its checkpoint is written and its `metrics.jsonl` equals the
//!    reference's first epoch (timings aside): detaching changed nothing of the training.
//! 5. The killed reference shows as dead; `R` resumes it from the UI, and it trains on.
//!
//! Needs tmux and Fashion-MNIST at `/usr/share/datasets/fashion-mnist`; without them it says
//! so and passes. On two CPU cores it takes about ten minutes.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod tmux;
use tmux::{copy_dir, set_field, shows_figure, Tmux, DATA};

const PRESET: &str = "presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml";

/// Kills (-9), when the test ends, every run process still alive in `saved`, so that a failed
/// test leaves no training behind.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for dir in run_dirs(&self.0) {
            if mislas::live::is_alive(&dir) == Some(true) {
                if let Ok(info) = mislas::live::read_info(&dir) {
                    let _ = Command::new("kill")
                        .args(["-9", &info.pid.to_string()])
                        .status();
                }
            }
        }
    }
}

fn run_dirs(saved: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(saved)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.retain(|p| p.join("config.yaml").is_file());
    dirs
}

fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the UI's run processes printed (`saved/.launch/*/output.log`).
fn launch_output(saved: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(saved.join(".launch"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let log = std::fs::read_to_string(e.path().join("output.log")).unwrap_or_default();
        out.push_str(&format!("{}:\n{log}\n", e.path().display()));
    }
    out
}

/// An epoch's metrics line without its timings (which differ between any two runs).
fn figures(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["train_seconds", "eval_seconds", "images_per_sec"] {
                assert!(o.remove(k).is_some(), "{k} in {l}");
            }
            v
        })
        .collect()
}

#[test]
fn a_run_outlives_its_terminal_is_attached_stopped_and_a_killed_one_resumes() {
    let have_tmux = Command::new("tmux").arg("-V").output().is_ok();
    let have_data = Path::new(DATA).join("train-images-idx3-ubyte.gz").is_file()
        || Path::new(DATA).join("train-images-idx3-ubyte").is_file();
    if !have_tmux || !have_data {
        eprintln!("skipped: needs tmux and Fashion-MNIST at {DATA}");
        return;
    }
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("presets"),
        &root.join("presets"),
    );
    let saved = root.join("saved");
    let _reaper = Reaper(saved.clone());
    let config_home = root.join("config");
    let bin = env!("CARGO_BIN_EXE_mislas");

    // 1. The reference, headless.
    let mut reference = Command::new(bin)
        .current_dir(root)
        .args(["train", "--cfg", PRESET, "num_epochs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the reference's run folder",
        Duration::from_secs(120),
        || run_dirs(&saved).len() == 1,
    );
    let reference_dir = run_dirs(&saved)[0].clone();

    // 2. The UI launches the same preset, then its terminal goes away.
    let t = Tmux {
        socket: format!("mislas-detach-{}", std::process::id()),
    };
    t.start_mislas(root, bin, &config_home);
    // The reference is live: the UI opens on the runs screen, offering to attach.
    t.wait_for("the live reference listed", Duration::from_secs(30), |s| {
        s.contains("1 live run")
    });
    t.keys(&["1"]);
    t.wait_for("the presets screen", Duration::from_secs(30), |s| {
        s.contains("Presets") && s.contains("Fashion-MNIST-LT")
    });
    t.keys(&["/"]);
    t.text("fashion_mnist_imb001_stage1");
    t.keys(&["Enter"]);
    t.wait_for("the filtered preset", Duration::from_secs(10), |s| {
        s.contains("fashion_mnist_imb001_stage1_mixup") && s.contains("✓ found")
    });
    t.keys(&["Enter"]);
    t.wait_for("the form", Duration::from_secs(10), |s| {
        s.contains("Hyperparameters")
    });
    set_field(&t, "num_epochs", "2");
    t.wait_for("the edited epochs", Duration::from_secs(10), |s| {
        s.lines()
            .any(|l| l.contains("num_epochs") && l.contains("2 *"))
    });
    t.keys(&["r"]);
    t.wait_for("training batches", Duration::from_secs(240), |s| {
        s.contains("Batch ") && s.contains("img/s")
    });
    t.run(&["kill-session", "-t", tmux::SESSION]);
    let ui_dir = run_dirs(&saved)
        .into_iter()
        .find(|d| *d != reference_dir)
        .expect("the UI's run folder");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        mislas::live::is_alive(&ui_dir),
        Some(true),
        "the run outlived its terminal"
    );

    // 3. The reference is killed with -9 after its first epoch's checkpoint.
    let ref_ckpt = reference_dir.join("ckps/current.safetensors");
    wait_until(
        "the reference's first epoch",
        Duration::from_secs(900),
        || ref_ckpt.is_file(),
    );
    std::thread::sleep(Duration::from_secs(1));
    reference.kill().unwrap();
    reference.wait().unwrap();
    assert_eq!(mislas::live::is_alive(&reference_dir), Some(false));
    let reference_epochs = figures(&reference_dir);
    assert_eq!(reference_epochs.len(), 1);

    // 4. A new terminal: the live run is listed; attach, see it move, stop it.
    t.start_mislas(root, bin, &config_home);
    t.wait_for("the live run listed", Duration::from_secs(30), |s| {
        s.contains("1 live run")
    });
    t.keys(&["a"]);
    let first = t.wait_for("the attached run screen", Duration::from_secs(60), |s| {
        s.contains("Batch ") && s.contains("img/s")
    });
    t.wait_for("the screen to move", Duration::from_secs(120), |s| {
        s.contains("Batch ") && s != first
    });
    t.wait_for(
        "the first epoch's top-1 and ECE",
        Duration::from_secs(900),
        |s| shows_figure(s, "Top-1 ") && shows_figure(s, "ECE "),
    );
    t.keys(&["s"]);
    t.wait_for("the stop confirmation", Duration::from_secs(10), |s| {
        s.contains("Stop the run?")
    });
    t.keys(&["y"]);
    let ckpt = ui_dir.join("ckps/current.safetensors");
    wait_until("the attached run to stop", Duration::from_secs(300), || {
        mislas::live::is_alive(&ui_dir) == Some(false)
    });
    assert!(ckpt.is_file(), "the stop's checkpoint");
    let log =
        std::fs::read_to_string(ui_dir.join("logs/fashion_mnist_imb001_stage1_mixup.txt")).unwrap();
    assert!(log.contains("=> stopped "), "{log}");
    assert_eq!(
        figures(&ui_dir),
        reference_epochs,
        "the detached run's metrics equal the uninterrupted reference's"
    );

    // 5. The killed reference shows as dead and resumes from the UI. The list is newest first
    // by the time of each run's last epoch, which of the two runs ended its first epoch last
    // depends on the machine's load: look at both from the top.
    t.keys(&["4", "Home"]);
    let mut dead_found = false;
    for _ in 0..2 {
        t.keys(&["Enter"]);
        let s = t.wait_for("a run's detail", Duration::from_secs(10), |s| {
            s.contains("stage1 ·")
        });
        if s.contains("dead: its process was killed") {
            dead_found = true;
            break;
        }
        t.keys(&["Escape", "Down"]);
    }
    assert!(dead_found, "the killed run shows as dead: {}", t.screen());
    t.keys(&["R"]);
    t.wait_for("the resume form", Duration::from_secs(10), |s| {
        s.contains("resume") && s.contains("Hyperparameters")
    });
    t.keys(&["r"]);
    let start = Instant::now();
    while mislas::live::is_alive(&reference_dir) != Some(true) {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the resumed run's process did not start; screen:\n{}\nlaunch output:\n{}",
            t.screen(),
            launch_output(&saved)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    t.wait_for("the resumed run training", Duration::from_secs(240), |s| {
        s.contains("Epoch [1]")
    });
    let log =
        std::fs::read_to_string(reference_dir.join("logs/fashion_mnist_imb001_stage1_mixup.txt"))
            .unwrap();
    assert!(
        log.contains("loaded"),
        "the resumed session loads the checkpoint: {log}"
    );
    // Leave it: the reaper ends it with the test.
    t.keys(&["q", "l"]);
}
