//! The queue end to end with the real binary on CPU, on a tiny list-file data set the test
//! writes (ImageNet-LT's list names, 12 classes, 32×32 crops): three runs complete in queue
//! order, one at a time; a 2 × 2 sweep queues four runs whose `config.yaml` hold the grid's
//! values; a second scheduler started beside the first is refused and says so. A scheduler
//! killed at each step of a start or an end loses, doubles or orphans no run.
use mislas::config::{Config, DatasetName, Stage};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

/// Training images per class (head first), test images per class.
const COUNTS: [usize; 12] = [12, 9, 7, 6, 5, 4, 4, 3, 3, 2, 2, 2];
const TEST_PER_CLASS: usize = 1;

fn write_jpeg(path: &Path, class: usize, k: usize) {
    let mut img = image::RgbImage::new(40, 40);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let v = ((x * (class as u32 + 1) + y * 3 + k as u32 * 7) % 256) as u8;
        *p = image::Rgb([v, (class * 20) as u8, 255 - v]);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

fn write_tree(root: &Path) {
    let (mut train, mut test) = (String::new(), String::new());
    for (c, &n) in COUNTS.iter().enumerate() {
        for k in 0..n {
            let rel = format!("train/{c}/{k}.jpg");
            write_jpeg(&root.join(&rel), c, k);
            writeln!(train, "{rel} {c}").unwrap();
        }
        for k in 0..TEST_PER_CLASS {
            let rel = format!("val/{c}_{k}.jpg");
            write_jpeg(&root.join(&rel), c, 100 + k);
            writeln!(test, "{rel} {c}").unwrap();
        }
    }
    std::fs::write(root.join("ImageNet_LT_train.txt"), train).unwrap();
    std::fs::write(root.join("ImageNet_LT_test.txt"), test).unwrap();
}

fn tiny_config(data: &Path) -> Config {
    Config {
        name: "tiny".into(),
        dataset: DatasetName::Imagenet,
        data_path: data.display().to_string(),
        num_classes: 12,
        imb_factor: None,
        backbone: "resnet50_fe".into(),
        head_class_idx: [0, 4],
        med_class_idx: [4, 8],
        tail_class_idx: [8, 12],
        mode: Some(Stage::Stage1),
        batch_size: 16,
        lr: 0.01,
        num_epochs: 1,
        cos: true,
        alpha: Some(0.2),
        device: "cpu".into(),
        workers: 1,
        image_size: 32,
        eval_resize: Some(36),
        ..Config::default()
    }
}

fn mislas(project: &Path, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(project)
        .env("MISLAS_DATA_DIR", data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn three_runs_in_order_a_two_by_two_sweep_and_one_scheduler() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, data_dir) = (tmp.path().join("project"), tmp.path().join("data"));
    write_tree(&tmp.path().join("tiny"));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("tiny.yaml"),
        tiny_config(&tmp.path().join("tiny")).to_yaml(),
    )
    .unwrap();
    let q = |args: &[&str]| mislas(&project, &data_dir, args);

    for name in ["first", "second", "third"] {
        let out = ok(&q(&[
            "queue",
            "add",
            "train",
            "--cfg",
            "tiny.yaml",
            "name",
            name,
        ]));
        assert!(out.contains(name), "{out}");
    }
    // A sweep of zero runs is refused, and queues nothing.
    let o = q(&[
        "queue",
        "add",
        "--grid",
        "seed",
        ",",
        "train",
        "--cfg",
        "tiny.yaml",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no values"));
    // A bad key in the command is refused before anything is queued.
    let o = q(&[
        "queue",
        "add",
        "--grid",
        "seed",
        "0,1",
        "train",
        "--cfg",
        "tiny.yaml",
        "lr",
        "x",
    ]);
    assert!(!o.status.success());
    // A header, then the three runs.
    let ls = ok(&q(&["queue", "ls"]));
    assert_eq!(ls.lines().count(), 4, "{ls}");
    assert!(ls.starts_with("  ID  STATE"), "{ls}");

    // The scheduler, and a second one beside it that is refused.
    let mut first = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(&project)
        .env("MISLAS_DATA_DIR", &data_dir)
        .args(["queue", "run"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ok(&q(&["queue", "ls"])).contains("running") {
        assert!(start.elapsed().as_secs() < 60, "the scheduler starts a run");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let second = q(&["queue", "run"]);
    assert_eq!(second.status.code(), Some(1));
    let why = String::from_utf8_lossy(&second.stderr);
    assert!(
        why.contains(&format!("another scheduler (pid {})", first.id())),
        "{why}"
    );
    // The sweep, queued while the first scheduler runs: it takes these too.
    let out = ok(&q(&[
        "queue",
        "add",
        "--grid",
        "seed",
        "3,4",
        "--grid",
        "lr",
        "0.02,0.05",
        "train",
        "--cfg",
        "tiny.yaml",
    ]));
    assert_eq!(out.lines().count(), 4, "{out}");
    let status = first.wait().unwrap();
    assert!(status.success());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut first.stdout.take().unwrap(), &mut log).unwrap();

    // Every run done, started and ended one after another in queue order.
    let ls = ok(&q(&["queue", "ls"]));
    assert_eq!(
        ls.lines().filter(|l| l.contains(" done ")).count(),
        7,
        "{ls}"
    );
    let events: Vec<&str> = log.lines().collect();
    let expected: Vec<String> = (1..=7)
        .flat_map(|id| {
            [
                format!("queue: run {id} ("),
                format!("queue: run {id} on cpu ended"),
            ]
        })
        .collect();
    assert_eq!(events.len(), expected.len(), "{log}");
    for (line, want) in events.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "{line} ≠ {want}…\n{log}");
    }

    // Each run's folder: its name, and for the sweep, the grid's values in its configuration.
    let saved = project.join("saved");
    let mut found = Vec::new();
    for e in std::fs::read_dir(&saved).unwrap() {
        let dir = e.unwrap().path();
        let c = Config::from_file(&dir.join("config.yaml")).unwrap().config;
        assert_eq!(
            mislas::run_dir::read_metrics(&dir).unwrap().len(),
            1,
            "{c:?}"
        );
        found.push((c.name.clone(), c.seed, c.lr));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let want = [
        ("first".to_owned(), 0, 0.01),
        ("second".to_owned(), 0, 0.01),
        ("third".to_owned(), 0, 0.01),
        ("tiny_seed3_lr0.02".to_owned(), 3, 0.02),
        ("tiny_seed3_lr0.05".to_owned(), 3, 0.05),
        ("tiny_seed4_lr0.02".to_owned(), 4, 0.02),
        ("tiny_seed4_lr0.05".to_owned(), 4, 0.05),
    ];
    assert_eq!(found, want);
}

/// Fault drill: the scheduler is killed (aborted) at each step of a start and of an end, and a
/// second scheduler takes over. Whatever the step, each queued run trains exactly once (one run
/// folder each: none lost, none doubled), the second run never starts before the first has
/// ended (one CPU slot), and every row ends `done` or `ended` with its run folder.
#[test]
fn a_scheduler_killed_at_any_step_never_loses_doubles_or_orphans_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(&tmp.path().join("tiny"));
    for step in ["after_take", "after_spawn", "after_running", "before_ended"] {
        let (project, data_dir) = (tmp.path().join(step), tmp.path().join(format!("{step}_q")));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join("tiny.yaml"),
            tiny_config(&tmp.path().join("tiny")).to_yaml(),
        )
        .unwrap();
        let q = |args: &[&str]| mislas(&project, &data_dir, args);
        for name in ["one", "two"] {
            ok(&q(&[
                "queue",
                "add",
                "train",
                "--cfg",
                "tiny.yaml",
                "name",
                name,
            ]));
        }
        let killed = Command::new(env!("CARGO_BIN_EXE_mislas"))
            .current_dir(&project)
            .env("MISLAS_DATA_DIR", &data_dir)
            .env("MISLAS_QUEUE_FAULT", step)
            .args(["queue", "run"])
            .output()
            .unwrap();
        assert!(
            !killed.status.success(),
            "{step}: the drill aborts the scheduler"
        );
        // The second scheduler, started at once (a run it finds may still be training).
        let second = ok(&q(&["queue", "run"]));
        let decided = match step {
            "after_take" => "queue: run 1 never made its run folder: queued again",
            "before_ended" => "queue: run 1 ended while no scheduler watched it",
            _ => "queue: run 1 (one) on cpu, started by an earlier scheduler, adopted",
        };
        assert!(second.starts_with(decided), "{step}: {second}");

        let saved = project.join("saved");
        let mut folders: Vec<(String, std::time::SystemTime, std::time::SystemTime)> =
            std::fs::read_dir(&saved)
                .unwrap()
                .map(|e| {
                    let dir = e.unwrap().path();
                    let c = Config::from_file(&dir.join("config.yaml")).unwrap().config;
                    assert_eq!(
                        mislas::run_dir::read_metrics(&dir).unwrap().len(),
                        1,
                        "{step}: {} trained to its end",
                        dir.display()
                    );
                    let meta =
                        |f: &str| std::fs::metadata(dir.join(f)).unwrap().modified().unwrap();
                    (c.name, meta("config.yaml"), meta("metrics.jsonl"))
                })
                .collect();
        folders.sort_by_key(|f| f.1);
        let names: Vec<&str> = folders.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            ["one", "two"],
            "{step}: one folder per run\n{second}"
        );
        assert!(
            folders[1].1 >= folders[0].2,
            "{step}: the second run started before the first ended\n{second}"
        );
        let ls = ok(&q(&["queue", "ls"]));
        let rows: Vec<&str> = ls.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{ls}");
        for row in rows {
            assert!(
                (row.contains(" done ") || row.contains(" ended ")) && row.contains("saved/"),
                "{step}: {row}\n{ls}\n{second}"
            );
        }
    }
}

/// The run's figures without its timing fields (equal between an interrupted run and an
/// uninterrupted one).
fn figures(dir: &Path) -> Vec<mislas::events::EpochReport> {
    let mut m = mislas::run_dir::read_metrics(dir).unwrap();
    for e in &mut m {
        (e.train_seconds, e.eval_seconds, e.images_per_sec) = (0.0, 0.0, 0.0);
    }
    m
}

/// Retries (`max_restarts`): a run killed with -9 right after its first in-epoch checkpoint is
/// started again by the scheduler, resumes from that checkpoint in its own run folder and ends
/// with the figures and weights of the same run left uninterrupted; a run killed before any
/// checkpoint is not retried, and `queue ls` says why each attempt ended.
#[test]
fn a_run_killed_after_its_checkpoint_is_retried_once_one_killed_before_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, data_dir) = (tmp.path().join("project"), tmp.path().join("data"));
    write_tree(&tmp.path().join("tiny"));
    std::fs::create_dir_all(&project).unwrap();
    let cfg = Config {
        num_epochs: 2,
        // 6 ms: a checkpoint at every batch after the first.
        checkpoint_every: 0.0001,
        ..tiny_config(&tmp.path().join("tiny"))
    };
    std::fs::write(project.join("tiny.yaml"), cfg.to_yaml()).unwrap();
    let q = |args: &[&str]| mislas(&project, &data_dir, args);
    for name in ["killed", "whole", "early"] {
        ok(&q(&[
            "queue",
            "add",
            "train",
            "--cfg",
            "tiny.yaml",
            "name",
            name,
        ]));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(&project)
        .env("MISLAS_DATA_DIR", &data_dir)
        .env(
            "MISLAS_RUN_FAULT",
            "kill_after_checkpoint@killed,kill_before_checkpoint@early",
        )
        .args(["queue", "run"])
        .output()
        .unwrap();
    let log = ok(&out);
    assert!(
        log.contains("queue: run 1 killed (signal 9, SIGKILL): restart 1 of 2, from "),
        "{log}"
    );
    assert!(
        log.contains("queue: run 3 failed: killed (signal 9, SIGKILL): before its first checkpoint: not retried"),
        "{log}"
    );
    let jobs = mislas::queue::Queue::open(&data_dir)
        .unwrap()
        .list()
        .unwrap();
    let summary: Vec<(&str, u32, usize)> = jobs
        .iter()
        .map(|j| (j.state.as_str(), j.restarts, j.ends.len()))
        .collect();
    assert_eq!(summary, [("done", 1, 2), ("done", 0, 1), ("failed", 0, 1)]);
    let (killed, whole) = (
        jobs[0].run_dir.clone().unwrap(),
        jobs[1].run_dir.clone().unwrap(),
    );
    // The restart resumed the run's own folder, from its checkpoint of epoch 0.
    assert_eq!(
        jobs[0].resume.as_deref(),
        Some(killed.join("ckps/current.safetensors").as_path())
    );
    let saved: Vec<_> = std::fs::read_dir(project.join("saved")).unwrap().collect();
    assert_eq!(saved.len(), 3, "one folder per run, none for the restart");
    assert_eq!(figures(&killed).len(), 2);
    assert_eq!(figures(&killed), figures(&whole));
    let (a, b) = (
        mislas::checkpoint::load(&killed.join("ckps/current.safetensors")).unwrap(),
        mislas::checkpoint::load(&whole.join("ckps/current.safetensors")).unwrap(),
    );
    for (k, t) in &a.tensors {
        assert!(t.equal(&b.tensors[k]), "{k} differs after the restart");
    }
    // `queue ls`: the restart count and why each attempt ended.
    let ls = ok(&q(&["queue", "ls"]));
    assert!(ls.contains("killed (1 restart)"), "{ls}");
    assert!(
        ls.contains("attempt 1: killed (signal 9, SIGKILL): restart 1 of 2")
            && ls.contains("attempt 2: finished")
            && ls.contains(
                "attempt 1: killed (signal 9, SIGKILL): before its first checkpoint: not retried"
            ),
        "{ls}"
    );
}

/// `hooks.yaml` in `data_dir` (the per-user folder of `MISLAS_DATA_DIR`) whose `on_run_end`
/// writes its `MISLAS_` variables to `data_dir/hook-<run name>.env`, then exits with `status`.
fn hook_writing_its_environment(data_dir: &Path, status: i32) {
    std::fs::create_dir_all(data_dir).unwrap();
    let cmd = format!(
        "env | grep ^MISLAS_ | sort > \"$MISLAS_DATA_DIR/hook-$MISLAS_RUN_NAME.env\"; exit {status}"
    );
    std::fs::write(
        data_dir.join("hooks.yaml"),
        format!("on_run_end: '{cmd}'\n"),
    )
    .unwrap();
}

/// The variables a hook wrote ([`hook_writing_its_environment`]).
fn hook_environment(data_dir: &Path, name: &str) -> std::collections::BTreeMap<String, String> {
    let path = data_dir.join(format!("hook-{name}.env"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the hook wrote no {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The last epoch's top-1 of a run folder, as the hook's `MISLAS_TOP1` writes it.
fn last_top1(dir: &Path) -> String {
    let m = mislas::run_dir::read_metrics(dir).unwrap();
    format!("{:.2}", m.last().unwrap().eval.top1)
}

/// The scheduler runs the per-user hook once for each run that ended: a finished one with its
/// folder and top-1, a failed one with its message; the hook fails (exit 3), which is printed
/// and changes no run's state.
#[test]
fn queued_runs_that_end_run_the_hook_and_a_failing_hook_fails_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, data_dir) = (tmp.path().join("project"), tmp.path().join("data"));
    write_tree(&tmp.path().join("tiny"));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("tiny.yaml"),
        tiny_config(&tmp.path().join("tiny")).to_yaml(),
    )
    .unwrap();
    hook_writing_its_environment(&data_dir, 3);
    let q = |args: &[&str]| mislas(&project, &data_dir, args);
    let add = |name: &str, more: &[&str]| {
        let args = [
            &["queue", "add", "train", "--cfg", "tiny.yaml", "name", name],
            more,
        ]
        .concat();
        ok(&q(&args));
    };
    add("hooked", &[]);
    add("no_data", &["data_path", "./nowhere"]);
    let out = q(&["queue", "run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("on_run_end hook of") && stderr.contains("exit status: 3"),
        "{stderr}"
    );

    let finished = hook_environment(&data_dir, "hooked");
    assert_eq!(finished["MISLAS_RUN_STATE"], "finished");
    let dir = Path::new(&finished["MISLAS_RUN_DIR"]);
    assert!(dir.join("config.yaml").is_file(), "{finished:?}");
    assert_eq!(finished["MISLAS_TOP1"], last_top1(dir));
    assert_eq!(finished["MISLAS_RUN_MESSAGE"], "");
    let failed = hook_environment(&data_dir, "no_data");
    assert_eq!(failed["MISLAS_RUN_STATE"], "failed");
    assert_eq!(failed["MISLAS_TOP1"], "");
    assert!(!failed["MISLAS_RUN_MESSAGE"].is_empty(), "{failed:?}");

    let ls = ok(&q(&["queue", "ls"]));
    let row = |name: &str| ls.lines().find(|l| l.contains(name)).unwrap().to_owned();
    assert!(row("hooked").contains(" done "), "{ls}");
    assert!(row("no_data").contains(" failed "), "{ls}");
}

/// The state letter of process `pid` (`Z` for a zombie), `None` once it is gone (reaped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state …: comm may hold spaces, so read after its last ')'.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// A run launched as the terminal UI launches one (detached, `live::launch`): once it ends its
/// process is reaped while the launcher still follows it (no `<defunct>` child), and the run
/// itself ran the per-user hook with its name, state, folder and top-1.
#[test]
fn a_launched_run_is_reaped_when_it_ends_and_runs_the_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, data_dir) = (tmp.path().join("project"), tmp.path().join("data"));
    write_tree(&tmp.path().join("tiny"));
    std::fs::create_dir_all(&project).unwrap();
    hook_writing_its_environment(&data_dir, 0);
    // SAFETY: read by the launched processes only; the other tests set theirs per command.
    unsafe {
        std::env::set_var(
            mislas::distributed::launch::ENV_BIN,
            env!("CARGO_BIN_EXE_mislas"),
        );
        std::env::set_var("MISLAS_DATA_DIR", &data_dir);
    }
    let mut cfg = tiny_config(&tmp.path().join("tiny"));
    cfg.name = "detached".into();
    let job = mislas::wire::Job::Single(cfg);
    let remote = mislas::live::launch(&job, &project.join("saved"), &project).unwrap();
    let mut run_dir = None;
    let started = std::time::Instant::now();
    loop {
        let e = remote
            .events
            .recv_timeout(std::time::Duration::from_secs(600))
            .expect("the run ends within 10 minutes");
        match e {
            mislas::events::Event::StageStarted(s) => run_dir = Some(s.run_dir),
            mislas::events::Event::StageFinished(_) => break,
            mislas::events::Event::Failed(f) => panic!("{}", f.message),
            _ => {}
        }
    }
    // The launcher still follows the run (`remote` lives): its process, once ended, is reaped
    // (gone from /proc), not left a zombie.
    let dir = run_dir.unwrap();
    let pid = mislas::live::read_info(&dir).unwrap().pid;
    let ended = std::time::Instant::now();
    while let Some(state) = process_state(pid) {
        assert!(
            ended.elapsed().as_secs() < 30,
            "the run's process {pid} is still '{state}' 30 s after its last event ({:.0} s in all)",
            started.elapsed().as_secs_f64()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let env = hook_environment(&data_dir, "detached");
    assert_eq!(env["MISLAS_RUN_STATE"], "finished");
    assert_eq!(Path::new(&env["MISLAS_RUN_DIR"]), dir);
    assert_eq!(env["MISLAS_TOP1"], last_top1(&dir));
    drop(remote);
}
