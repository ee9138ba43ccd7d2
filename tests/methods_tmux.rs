//! End to end, in tmux at 80×24: the Methods view of a finished stage-1 run.
//!
//! A one-epoch stage 1 on a tiny CIFAR-10-LT (197 training and 100 test images) is trained
//! headless; in the UI, `4`, `m` opens its Methods view with CE and CE + TS checked. With its
//! data folder gone, Enter says why the comparison failed, in words; with it back, Enter shows
//! the table with 95 % intervals, the protocol, the output folder and the reliability diagram,
//! and `compare`'s files are written. Esc goes back to the runs.
//!
//! Several backbones: with a second tiny stage 1 trained with Balanced Softmax, Space on it in
//! the view adds it as a backbone, and Enter compares CE and CE + TS on both in one table.
//!
//! Needs tmux; without it, it says so and passes. About 20 s each on two CPU cores.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod fixtures;
mod tmux;
use fixtures::{tiny_cifar10, train_tiny_stage1, train_tiny_stage1_as};
use tmux::{copy_dir, Tmux};

const WAIT: Duration = Duration::from_secs(90);

/// Whether a line shows `name` followed by a figure and its interval: `10.00 [2.00,18.00]`.
fn row_with_interval(screen: &str, name: &str) -> bool {
    screen.lines().any(|l| {
        let Some(rest) = l.split_once(name).map(|(_, r)| r.trim_start()) else {
            return false;
        };
        let fig = rest.split_whitespace().next().unwrap_or("");
        let ci = rest[fig.len()..].trim_start();
        fig.parse::<f64>().is_ok() && ci.starts_with('[') && ci.contains(',') && ci.contains(']')
    })
}

#[test]
fn methods_view_runs_ce_and_ts_and_shows_the_table_with_intervals() {
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
    tiny_cifar10(&root.join("data"));
    train_tiny_stage1(root);

    let t = Tmux {
        socket: format!("mislas-methods-{}", std::process::id()),
    };
    t.start_mislas(root, env!("CARGO_BIN_EXE_mislas"), &root.join("config"));
    t.wait_for("the presets screen", WAIT, |s| s.contains("Presets"));
    t.keys(&["4"]);
    t.wait_for("the run", WAIT, |s| s.contains("tiny_s1_"));
    t.keys(&["m"]);
    let s = t.wait_for("the Methods view", WAIT, |s| {
        s.contains("Methods · tiny_s1_")
    });
    for text in [
        "[x] CE + TS",
        "[ ] CE + τ-norm",
        "cRT",
        "MiSLAS w/o LAS",
        "+ trains",
    ] {
        assert!(s.contains(text), "{text}:\n{s}");
    }

    // Without its data set, the comparison fails in words and nothing else happens.
    std::fs::rename(root.join("data"), root.join("data.away")).unwrap();
    t.keys(&["Enter"]);
    let s = t.wait_for("the failure", WAIT, |s| s.contains("comparison failed"));
    assert!(s.contains("Methods · tiny_s1_"), "{s}");
    std::fs::rename(root.join("data.away"), root.join("data")).unwrap();

    // With it, CE and CE + TS: the table with intervals, protocol, folder and diagram.
    t.keys(&["Enter"]);
    let s = t.wait_for("the results", WAIT, |s| s.contains("Top-1 % [95% CI]"));
    assert!(row_with_interval(&s, "● CE "), "{s}");
    assert!(row_with_interval(&s, "● CE+TS "), "{s}");
    for text in [
        "ECE % [95% CI]",
        "fitted on test half A",
        "scored on test half B",
        "written to",
        "Reliability",
        "T=",
    ] {
        assert!(s.contains(text), "{text}:\n{s}");
    }
    let run = std::fs::read_dir(root.join("saved"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("config.yaml").is_file())
        .unwrap();
    // One folder per comparison under <run>/compare/.
    let folders: Vec<_> = std::fs::read_dir(run.join("compare"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let folder = &folders[0];
    let csv = std::fs::read_to_string(folder.join("results.csv")).unwrap();
    assert!(csv.contains("CE (stage 1) + TS"), "{csv}");

    // Tab: the checklist; Esc: the runs; q quits.
    t.keys(&["Tab"]);
    t.wait_for("the checklist", WAIT, |s| {
        s.contains("Tab shows the last results")
    });
    t.keys(&["Escape"]);
    t.wait_for("the runs", WAIT, |s| s.contains("Runs in saved/"));
    // Opened again, the view has the last comparison (read from its comparison.json).
    t.keys(&["m"]);
    t.wait_for("the Methods view again", WAIT, |s| {
        s.contains("Methods · tiny_s1_")
    });
    t.keys(&["Tab"]);
    let s = t.wait_for("the stored results", WAIT, |s| {
        s.contains("Top-1 % [95% CI]")
    });
    assert!(row_with_interval(&s, "● CE+TS "), "{s}");
    t.keys(&["Escape"]);
    t.wait_for("the runs", WAIT, |s| s.contains("Runs in saved/"));
    // A screen of its own: 5 shows it again, with its results; 4 the runs.
    t.keys(&["5"]);
    let s = t.wait_for("the Methods screen", WAIT, |s| {
        s.contains("Methods · tiny_s1_")
    });
    assert!(s.lines().next().unwrap().contains("5 Methods"), "{s}");
    assert!(row_with_interval(&s, "● CE+TS "), "{s}");
    t.keys(&["4"]);
    t.wait_for("the runs", WAIT, |s| s.contains("Runs in saved/"));
    t.keys(&["q"]);
    t.wait_for("mislas to end", WAIT, |s| s.contains("mislas-exit=0"));
}

/// Two tiny stage-1 runs, CE and Balanced Softmax: `m` on the one listed first offers the
/// other under the methods; Space adds it; Enter compares CE and CE + TS on both backbones in
/// one table (rows with intervals, named by each backbone's loss), says which run each
/// backbone is, and `compare` writes both backbones' rows.
#[test]
fn methods_view_compares_two_backbones_side_by_side() {
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
    tiny_cifar10(&root.join("data"));
    train_tiny_stage1_as(root, "tiny_ce", &[]);
    train_tiny_stage1_as(root, "tiny_bs", &["loss", "balanced_softmax"]);

    let t = Tmux {
        socket: format!("mislas-backbones-{}", std::process::id()),
    };
    t.start_mislas(root, env!("CARGO_BIN_EXE_mislas"), &root.join("config"));
    t.run(&[
        "resize-window",
        "-t",
        tmux::SESSION,
        "-x",
        "120",
        "-y",
        "32",
    ]);
    t.wait_for("the presets screen", WAIT, |s| s.contains("Presets"));
    t.keys(&["4"]);
    t.wait_for("both runs", WAIT, |s| {
        s.contains("tiny_ce_") && s.contains("tiny_bs_")
    });
    t.keys(&["m"]);
    let s = t.wait_for("the Methods view", WAIT, |s| s.contains("Methods · tiny_"));
    assert!(s.contains("Backbones beside it (Space adds)"), "{s}");
    let other = if s.contains("Methods · tiny_ce_") {
        "Balanced Softmax"
    } else {
        "CE (stage 1)"
    };
    assert!(s.contains(&format!("[ ] {other}")), "{s}");
    t.keys(&["G", "Space"]);
    let s = t.wait_for("the backbone added", WAIT, |s| s.contains("+ 1 backbone"));
    assert!(s.contains(&format!("[x] {other}")), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("the results", WAIT, |s| s.contains("Top-1 % [95% CI]"));
    for row in [
        "● CE (stage 1) ",
        "● Balanced Softmax ",
        "● CE (stage 1) + TS ",
        "● Balanced Softmax + TS ",
    ] {
        assert!(row_with_interval(&s, row), "{row}:\n{s}");
    }
    assert!(s.contains("backbones: ce = tiny_"), "{s}");
    let compared = std::fs::read_dir(root.join("saved"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("compare"))
        .find(|p| p.is_dir())
        .unwrap();
    let folder = std::fs::read_dir(&compared)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let csv = std::fs::read_to_string(folder.path().join("results.csv")).unwrap();
    for label in ["CE (stage 1) + TS", "Balanced Softmax + TS"] {
        assert!(csv.contains(label), "{label}: {csv}");
    }
    t.keys(&["Escape"]);
    t.wait_for("the runs", WAIT, |s| s.contains("Runs in saved/"));
    t.keys(&["q"]);
    t.wait_for("mislas to end", WAIT, |s| s.contains("mislas-exit=0"));
}
