//! End to end: drives the real `mislas` binary in tmux (`send-keys`, `capture-pane`).
//!
//! At 80×24, the smallest terminal the UI draws in: every screen's footer keeps `? help` and
//! `q quit`. Opens the Fashion-MNIST-LT stage-1 preset, lowers the epochs to 2, launches, waits for a real
//! epoch's top-1 and ECE on the dashboard, quits during the second epoch (choosing "stop it"), and checks
//! that the run stopped after its checkpoint, the terminal is restored (no alternate screen,
//! canonical mode back), and the run's files are in `saved/`.
//!
//! Needs tmux and Fashion-MNIST at `/usr/share/datasets/fashion-mnist` (the presets' data path);
//! without them it says so and passes. On two CPU cores it takes a few minutes.
use mislas::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod tmux;
use tmux::{copy_dir, set_field, shows_figure, Tmux, DATA, SESSION};

/// The screen's last non-empty line.
fn footer(screen: &str) -> &str {
    screen.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

/// The footer ends with `? help  q quit` (the other keys are in the `?` overlay).
fn assert_footer(screen: &str) {
    let f = footer(screen);
    assert!(
        f.trim_end().ends_with("? help  q quit"),
        "footer {f:?}:\n{screen}"
    );
}

/// The folders in `saved`, but the UI's `.launch` (its runs' configurations and output).
fn run_dirs(saved: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(saved)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn tui_launches_a_run_shows_an_epoch_and_quits_cleanly() {
    let have_tmux = Command::new("tmux").arg("-V").output().is_ok();
    let have_data = Path::new(DATA).join("train-images-idx3-ubyte.gz").is_file()
        || Path::new(DATA).join("train-images-idx3-ubyte").is_file();
    if !have_tmux || !have_data {
        eprintln!("skipped: needs tmux and Fashion-MNIST at {DATA}");
        return;
    }
    let project = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("presets"),
        &project.path().join("presets"),
    );
    let config_home = project.path().join("config");
    let bin = env!("CARGO_BIN_EXE_mislas");
    let t = Tmux {
        socket: format!("mislas-e2e-{}", std::process::id()),
    };
    t.run(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "80",
        "-y",
        "24",
        "-c",
        &project.path().display().to_string(),
        "env",
        "-u",
        "NO_COLOR",
        "TERM=xterm-256color",
        "bash",
        "--norc",
        "--noprofile",
    ]);
    t.text(&format!(
        "XDG_CONFIG_HOME='{}' '{bin}'; echo mislas-exit=$?",
        config_home.display()
    ));
    t.keys(&["Enter"]);

    // Presets: grouped by data set; the first one whose data is found is selected.
    let s = t.wait_for("the presets screen", Duration::from_secs(30), |s| {
        s.contains("Presets") && s.contains("Fashion-MNIST-LT")
    });
    assert!(s.contains("✓ found"), "{s}");
    // (At 80×24 the temporary folder's long preset path pushes the "Data found" line out.)
    assert_footer(&s);
    assert_eq!(
        t.display("#{alternate_on}"),
        "1",
        "the UI is on the alternate screen"
    );

    // Filter to the stage-1 preset and open it.
    t.keys(&["/"]);
    t.text("fashion_mnist_imb001_stage1");
    t.keys(&["Enter"]);
    let s = t.wait_for("the filtered preset", Duration::from_secs(10), |s| {
        s.contains("fashion_mnist_imb001_stage1_mixup") && s.contains("✓ found")
    });
    assert!(!s.contains("fashion_mnist_imb01_stage1_mixup"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("the form", Duration::from_secs(10), |s| {
        s.contains("Hyperparameters") && s.contains("stage2 · fashion_mnist_imb")
    });

    // Two epochs: the quit comes during the second.
    set_field(&t, "num_epochs", "2");
    let s = t.wait_for("the edited epochs", Duration::from_secs(10), |s| {
        s.lines()
            .any(|l| l.contains("num_epochs") && l.contains("2 *"))
    });
    assert!(!s.contains("✗"), "no validation issue: {s}");
    assert_footer(&s);
    assert!(footer(&s).contains("r run"), "{s}");

    // Launch this stage and watch a real epoch land on the dashboard.
    t.keys(&["r"]);
    t.wait_for("training batches", Duration::from_secs(180), |s| {
        s.contains("Batch ") && s.contains("img/s")
    });
    let s = t.wait_for(
        "the first epoch's top-1 and ECE",
        Duration::from_secs(600),
        |s| shows_figure(s, "Top-1 ") && shows_figure(s, "ECE "),
    );
    assert!(s.contains("Reliability"), "{s}");
    assert!(s.contains("Epoch ["), "{s}");
    assert_footer(&s);

    // Quit during the run: confirm, the run stops after its checkpoint, then the UI exits.
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", Duration::from_secs(10), |s| {
        s.contains("leave it running") && s.contains("stop it (checkpoint)")
    });
    t.keys(&["s"]);
    let s = t.wait_for("mislas to exit", Duration::from_secs(300), |s| {
        // The status line, not the typed command (which holds `mislas-exit=$?`, unwrapped or
        // wrapped depending on the binary's path length).
        s.lines()
            .any(|l| l.starts_with("mislas-exit=") && !l.contains('$'))
    });
    assert!(s.contains("mislas-exit=0"), "{s}");
    assert!(s.contains("stopped after saving its checkpoint"), "{s}");

    // The terminal is restored: main screen, canonical mode, echo.
    assert_eq!(t.display("#{alternate_on}"), "0");
    t.text(
        "echo \"modes: $(stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' ')\"",
    );
    t.keys(&["Enter"]);
    let s = t.wait_for("stty", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.starts_with("modes:"))
    });
    let modes = s.lines().find(|l| l.starts_with("modes:")).unwrap().trim();
    assert_eq!(modes, "modes: icanon echo", "terminal modes restored: {s}");

    // The run's files: configuration, one epoch of metrics, and the stop's checkpoint.
    let runs = run_dirs(&project.path().join("saved"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    let name = run.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("fashion_mnist_imb001_stage1_mixup_"),
        "{name}"
    );
    assert!(run.join("config.yaml").is_file());
    let saved_cfg = Config::from_file(&run.join("config.yaml")).unwrap().config;
    assert_eq!(saved_cfg.num_epochs, 2);
    let metrics = mislas::run_dir::read_metrics(run).unwrap();
    assert_eq!(metrics.len(), 1, "one evaluated epoch before the stop");
    assert!(metrics[0].eval.top1 > 0.0);
    let ckpts: Vec<String> = run_dirs(&run.join("ckps"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        ckpts.iter().any(|c| c.starts_with("current")),
        "the stop's checkpoint: {ckpts:?}"
    );
}

/// A run folder `saved/<name>` of the Fashion-MNIST-LT stage-1 preset with `seed`, no evaluated
/// epoch, and a current checkpoint (a run stopped before its first evaluation).
fn stopped_run(project: &Path, name: &str, seed: u64) -> PathBuf {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml");
    let mut c = Config::from_file(&preset).unwrap().config;
    c.seed = seed;
    let dir = project.join("saved").join(name);
    std::fs::create_dir_all(dir.join("ckps")).unwrap();
    std::fs::write(dir.join("config.yaml"), c.to_yaml()).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), "").unwrap();
    std::fs::write(dir.join("ckps/current.safetensors"), "").unwrap();
    // Written long ago: nothing is writing it now.
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seed);
    std::fs::File::options()
        .write(true)
        .open(dir.join("metrics.jsonl"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    dir
}

/// The runs screen's actions on run folders made for the test, at 80×24 (no training, so
/// seconds): the queue view shows a run queued from another terminal without a key pressed;
/// `e` opens a run's configuration as a new run; `d`, `y` archives a run to `saved/.archive/`;
/// at 120×40 the help's descriptions read whole.
#[test]
fn tui_runs_screen_reruns_archives_and_follows_the_queue() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: needs tmux");
        return;
    }
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("presets"),
        &root.join("presets"),
    );
    let a = stopped_run(root, "fm_a_202612060101", 5);
    stopped_run(root, "fm_b_202612060102", 6);
    let data_dir = root.join("user-data");
    let bin = env!("CARGO_BIN_EXE_mislas");
    let t = Tmux {
        socket: format!("mislas-runs-{}", std::process::id()),
    };
    t.run(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "80",
        "-y",
        "24",
        "-c",
        &root.display().to_string(),
        "env",
        "-u",
        "NO_COLOR",
        "TERM=xterm-256color",
        "bash",
        "--norc",
        "--noprofile",
    ]);
    // The queue in a folder of the test's own.
    t.text(&format!(
        "MISLAS_DATA_DIR='{}' XDG_CONFIG_HOME='{}' '{bin}'; echo mislas-exit=$?",
        data_dir.display(),
        root.join("config").display()
    ));
    t.keys(&["Enter"]);
    t.wait_for("the presets screen", Duration::from_secs(30), |s| {
        s.contains("Presets")
    });
    t.keys(&["4"]);
    t.wait_for("the runs", Duration::from_secs(20), |s| {
        s.contains("fm_a_202612060101") && s.contains("fm_b_202612060102")
    });

    // The queue view: empty, then a run queued from elsewhere shows up by itself.
    t.keys(&["Q"]);
    t.wait_for("the empty queue", Duration::from_secs(20), |s| {
        s.contains("The queue is empty")
    });
    let preset = root.join("presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml");
    let out = Command::new(bin)
        .current_dir(root)
        .env("MISLAS_DATA_DIR", &data_dir)
        .args(["queue", "add", "train", "--cfg"])
        .arg(&preset)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = t.wait_for(
        "the queued run, no key pressed",
        Duration::from_secs(10),
        |s| s.contains("queued") && !s.contains("The queue is empty"),
    );
    assert_footer(&s);

    // Only fm_a (seed 5): e opens its configuration as a new run.
    t.keys(&["Escape", "/"]);
    t.text("seed=5");
    t.keys(&["Enter"]);
    t.wait_for("the filtered list", Duration::from_secs(10), |s| {
        s.contains("fm_a_202612060101") && !s.contains("fm_b_202612060102")
    });
    t.keys(&["e"]);
    let s = t.wait_for("the re-run's form", Duration::from_secs(10), |s| {
        s.contains("re-run of fm_a_202612060101")
    });
    assert!(
        s.contains("new run fashion_mnist_imb001_stage1_mixup_rerun: change a key"),
        "{s}"
    );

    // d asks; y archives it, whole.
    t.keys(&["4", "d"]);
    t.wait_for("the question", Duration::from_secs(10), |s| {
        s.contains("Archive fm_a_202612060101?") && s.contains("delete for good")
    });
    t.keys(&["y"]);
    t.wait_for(
        "the archived run gone from the list",
        Duration::from_secs(20),
        |s| {
            s.contains("No run of the 1 in saved/ matches")
                && s.contains("archived fm_a_202612060101 to saved/.archive/fm_a_202612060101")
        },
    );
    let archived = root.join("saved/.archive/fm_a_202612060101");
    assert!(!a.exists() && archived.join("ckps/current.safetensors").is_file());

    // At 120×40 the help's descriptions are whole (wrapped, not cut at the column's edge).
    t.run(&["resize-window", "-t", SESSION, "-x", "120", "-y", "40"]);
    t.keys(&["Escape", "?"]);
    let s = t.wait_for("the help", Duration::from_secs(10), |s| {
        s.contains("Keys ·")
    });
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let columns: String = [1usize, 60]
        .iter()
        .map(|&from| {
            s.lines()
                .map(|l| l.chars().skip(from).take(59).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" ");
    for whole in [
        "re-run with a change: the run's config.yaml as a new run in the form (new name, not resumed)",
        "group runs that differ only in seed: mean ± std over seeds; Enter lists a group's runs",
    ] {
        assert!(words(&columns).contains(whole), "{whole}:\n{s}");
    }
    t.keys(&["Escape", "q"]);
    let s = t.wait_for("mislas to exit", Duration::from_secs(20), |s| {
        s.lines()
            .any(|l| l.starts_with("mislas-exit=") && !l.contains('$'))
    });
    assert!(s.contains("mislas-exit=0"), "{s}");
}
