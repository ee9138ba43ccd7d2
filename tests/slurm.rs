//! The queue's Slurm backend against a real one-node Slurm (Debian's slurm-wlm and munge,
//! brought up by `scripts/slurm_ci.sh up` once for this binary, serialised across its tests,
//! and brought down after the last test when this binary brought it up). Where Slurm cannot be
//! installed or started (no root, no apt), each test says it is skipped and why, and passes.
//!
//! - A queued sweep of three one-epoch runs submitted as one job array with throttle 1 (never
//!   two tasks running; each run starts after the one before ends), its third task held and
//!   released on its own; each run's `metrics.jsonl` equals the same run started here (timing
//!   fields aside).
//! - Preemption: a job signalled with `scancel --signal=USR1 --batch` inside its first epoch
//!   (attached to from here meanwhile, as the UI attaches) saves a checkpoint, requeues itself,
//!   restarts in the same run folder (restart 1, Slurm's count) and ends with metrics equal to
//!   an uninterrupted run's.
//! - A 2-task `srun` data-parallel run on Gloo (two CPU tasks on the one node, ranked by mislas
//!   itself from `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`, no torchrun variable set; only
//!   the address and port are given) completes and writes one run folder.
//! - Bad input and retries: a partition Slurm does not know fails the run with Slurm's message;
//!   a job that fails on the node shows Slurm's state and exit code; a job killed with -9 after
//!   its first in-epoch checkpoint is submitted again once and ends as the run left
//!   uninterrupted, one killed before any checkpoint is not retried; `queue
//!   hold`/`release`/`rm` act on the Slurm job; no sbatch is said.
//! - Without the cluster (a fake sbatch): an account Slurm refuses, and a two-node run whose
//!   folder is under /tmp (warned about; its sbatch options and srun script).
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Tests in this binary: the last one to end brings the cluster down.
const TESTS: usize = 4;
static ENDED: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());
/// `Ok(brought_up_here)`, or why Slurm is not there.
static CLUSTER: OnceLock<Result<bool, String>> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm_ci.sh")
}

/// The cluster for one test: holds the serialising lock, and counts the test as ended on drop.
struct Cluster {
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if ENDED.fetch_add(1, Ordering::SeqCst) + 1 == TESTS && CLUSTER.get() == Some(&Ok(true)) {
            let _ = Command::new("bash").arg(script()).arg("down").output();
        }
    }
}

/// Brings the cluster up (once); `None` (after printing why) when the test is to be skipped.
fn cluster(test: &str) -> Option<Cluster> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let up = CLUSTER.get_or_init(|| {
        let was_up = Command::new("scontrol")
            .arg("ping")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("UP"));
        if was_up {
            return Ok(false);
        }
        match Command::new("bash").arg(script()).arg("up").output() {
            Ok(o) if o.status.success() => Ok(true),
            Ok(o) => Err(format!(
                "scripts/slurm_ci.sh up failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            )),
            Err(e) => Err(format!("cannot run bash scripts/slurm_ci.sh: {e}")),
        }
    });
    let guard = Cluster { _serial: serial };
    match up {
        Ok(_) => Some(guard),
        Err(why) => {
            eprintln!("skipped {test}: no Slurm on this machine ({why})");
            None
        }
    }
}

fn preset() -> String {
    format!(
        "{}/presets/cifar10/cifar10_imb01_stage1_mixup.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The tiny one-stage run's command line (after `train --cfg PRESET`).
fn tiny_args(name: &str, epochs: &str, batch: &str) -> Vec<String> {
    [
        "name",
        name,
        "data_path",
        "./data",
        "num_epochs",
        epochs,
        "batch_size",
        batch,
        "warmup_epochs",
        "0",
        "device",
        "cpu",
        "workers",
        "0",
        "print_freq",
        "5",
    ]
    .map(String::from)
    .to_vec()
}

fn mislas(root: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(root)
        .env("MISLAS_DATA_DIR", root.join("queue"))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env_remove("SLURM_JOB_ID")
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

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|w| w.to_string()).collect()
}

/// `metrics.jsonl` of a run folder without its timing fields, one JSON value per epoch.
fn figures(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", run.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            for k in ["train_seconds", "eval_seconds", "images_per_sec"] {
                assert!(m.remove(k).is_some(), "{k} missing in {l}");
            }
            v
        })
        .collect()
}

/// Trains `args` here, in a run folder of its own named by `run_dir`; returns the folder.
fn local_run(root: &Path, name: &str, extra: &[String]) -> PathBuf {
    let dir = root.join("local").join(name);
    let mut args = words(&["train", "--cfg", &preset()]);
    args.extend(tiny_args(name, "1", "32"));
    args.extend(extra.iter().cloned());
    args.extend(["run_dir".into(), dir.display().to_string()]);
    ok(&mislas(root, &args));
    dir
}

/// Polls `f` every 100 ms until it gives `Some`, for at most `secs` seconds.
fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lines of `squeue` for job array `array` whose tasks are running.
fn running_tasks(array: &str) -> usize {
    Command::new("squeue")
        .args(["-h", "-r", "-j", array, "-t", "RUNNING", "-o", "%i"])
        .output()
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
}

/// When run folder `run` started (its `config.yaml` written) and ended (its event file's last
/// write).
fn span(run: &Path) -> (std::time::SystemTime, std::time::SystemTime) {
    let m = |f: &str| {
        std::fs::metadata(run.join(f))
            .and_then(|m| m.modified())
            .unwrap()
    };
    (m("config.yaml"), m("events.jsonl"))
}

#[test]
fn a_queued_sweep_runs_as_a_throttled_job_array_with_the_figures_of_local_runs() {
    let Some(_c) = cluster("a_queued_sweep_runs_as_a_throttled_job_array…") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let mut add = words(&["queue", "add", "--grid", "seed", "0,1,2", "train", "--cfg"]);
    add.push(preset());
    add.extend(tiny_args("sw", "1", "32"));
    ok(&mislas(root, &add));
    let out = ok(&mislas(
        root,
        &words(&[
            "queue",
            "run",
            "--slurm",
            "--detach",
            "--array-throttle",
            "1",
        ]),
    ));
    assert_eq!(out.matches("submitted as Slurm job").count(), 3, "{out}");
    let array = out
        .split("submitted as Slurm job ")
        .nth(1)
        .and_then(|t| t.split('_').next())
        .unwrap()
        .to_owned();
    for i in 0..3 {
        assert!(out.contains(&format!("Slurm job {array}_{i};")), "{out}");
    }
    // Hold the third run's task: it pends, held, while the others run one at a time.
    ok(&mislas(root, &words(&["queue", "hold", "3"])));
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(
        ls.contains(&format!("Slurm job {array}_2: PENDING, JobHeld")),
        "{ls}"
    );
    // The same runs here, meanwhile.
    let local = std::thread::spawn({
        let root = root.to_path_buf();
        move || -> Vec<PathBuf> {
            (0..3)
                .map(|seed| {
                    let n = seed.to_string();
                    local_run(&root, &format!("sw_seed{seed}"), &words(&["seed", &n]))
                })
                .collect()
        }
    });
    let mut most_running = 0;
    poll(240, "runs 1 and 2 to end", || {
        most_running = most_running.max(running_tasks(&array));
        let ls = ok(&mislas(root, &words(&["queue", "ls"])));
        (ls.matches("  done ").count() == 2).then_some(())
    });
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(
        ls.contains(&format!("Slurm job {array}_2: PENDING, JobHeld")),
        "{ls}"
    );
    ok(&mislas(root, &words(&["queue", "release", "3"])));
    let ls = poll(240, "run 3 to end", || {
        most_running = most_running.max(running_tasks(&array));
        let ls = ok(&mislas(root, &words(&["queue", "ls"])));
        (ls.matches("  done ").count() == 3).then_some(ls)
    });
    assert_eq!(most_running, 1, "throttle 1: at most one task running");
    for i in 0..3 {
        assert!(
            ls.contains(&format!("Slurm job {array}_{i}: COMPLETED")),
            "{ls}"
        );
    }
    let runs: Vec<PathBuf> = (0..3)
        .map(|i| root.join(format!("saved/sw_seed{i}_q{}", i + 1)))
        .collect();
    // One at a time: each run started after the one before it ended.
    for w in runs.windows(2) {
        let (a, b) = (span(&w[0]), span(&w[1]));
        assert!(
            b.0 >= a.1,
            "{} started before {} ended",
            w[1].display(),
            w[0].display()
        );
    }
    for (i, (run, here)) in runs.iter().zip(local.join().unwrap()).enumerate() {
        let (a, b) = (figures(run), figures(&here));
        assert_eq!(a.len(), 1, "{}", run.display());
        assert_eq!(a, b, "seed {i}: Slurm's run and the local run differ");
        let log = std::fs::read_to_string(root.join(format!("queue/logs/{}.log", i + 1))).unwrap();
        assert!(log.contains("=> stage1 of 'sw_seed"), "{log}");
    }
}

#[test]
fn a_job_signalled_mid_epoch_requeues_and_ends_as_an_uninterrupted_run() {
    let Some(_c) = cluster("a_job_signalled_mid_epoch_requeues…") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let mut add = words(&["queue", "add", "train", "--cfg"]);
    add.push(preset());
    // Batch size 4: about 50 batches per epoch, for the signal to land inside the first.
    add.extend(tiny_args("pre", "2", "4"));
    ok(&mislas(root, &add));
    // The uninterrupted run, here, meanwhile.
    let whole = std::thread::spawn({
        let root = root.to_path_buf();
        move || {
            let mut args = words(&["train", "--cfg", &preset()]);
            args.extend(tiny_args("pre", "2", "4"));
            args.extend(words(&["run_dir", "whole"]));
            ok(&mislas(&root, &args));
        }
    });
    let child = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(root)
        .env("MISLAS_DATA_DIR", root.join("queue"))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["queue", "run", "--slurm"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = root.join("queue/logs/1.log");
    // The job trains inside its first epoch: its first training line.
    poll(120, "the first training line of the job", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("Epoch: [0][").then_some(())
    });
    let job = std::fs::read_to_string(root.join("queue/logs/1.sbatch")).unwrap();
    assert!(job.contains("exec "), "{job}");
    // The UI attaches to it as to any run: its process is slurmd's, not a child of this one.
    let run = root.join("saved/pre_q1");
    assert_eq!(mislas::live::is_alive(&run), Some(true));
    assert_eq!(mislas::live::remote_node(&run), None, "the same node");
    let node = std::fs::read_to_string(run.join(mislas::live::NODE)).unwrap();
    let node_job = node.lines().nth(1).unwrap_or_default().to_owned();
    assert!(!node_job.is_empty(), "its Slurm job in {node}");
    let attached = mislas::live::attach(&run).unwrap();
    let first = attached
        .events
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    assert!(
        !matches!(first, mislas::events::Event::Failed(_)),
        "{first:?}"
    );
    let id = poll(30, "the job id in queue ls", || {
        let ls = ok(&mislas(root, &words(&["queue", "ls"])));
        ls.split("Slurm job ")
            .nth(1)
            .and_then(|t| t.split(':').next())
            .map(str::to_owned)
    });
    assert_eq!(node_job, id, "live.node names the job");
    let sig = Command::new("scancel")
        .args(["--signal=USR1", "--batch", &id])
        .output()
        .unwrap();
    assert!(
        sig.status.success(),
        "{}",
        String::from_utf8_lossy(&sig.stderr)
    );
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&log).unwrap();
    // Stopped inside an epoch, at a batch boundary.
    assert!(text.contains("=> stopped at epoch "), "{text}");
    assert!(
        text.contains(&format!("=> preempted: requeueing Slurm job {id}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "=> restart 1 of this run (Slurm job {id}, SLURM_RESTART_COUNT"
        )),
        "{text}"
    );
    let restarts = mislas::run_dir::read_restarts(&run).unwrap();
    assert_eq!((restarts.count, restarts.starts), (1, 2));
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(ls.contains(&format!("Slurm job {id}: COMPLETED")), "{ls}");
    // One folder only, and the figures of the run trained without a break.
    let folders = std::fs::read_dir(root.join("saved")).unwrap().count();
    assert_eq!(folders, 1);
    let pos = mislas::checkpoint::load(&run.join("ckps/current.safetensors"))
        .unwrap()
        .position
        .unwrap();
    assert_eq!((pos.epoch, pos.batch), (2, 0));
    whole.join().unwrap();
    let (a, b) = (figures(&run), figures(&root.join("whole")));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "the requeued run and the uninterrupted run differ");
}

#[test]
fn slurm_refusals_and_failures_are_shown_in_its_words() {
    let Some(_c) = cluster("slurm_refusals_and_failures_are_shown…") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let add = |extra: &[&str]| {
        let mut a = words(&["queue", "add", "train", "--cfg"]);
        a.push(preset());
        a.extend(tiny_args("bad", "1", "32"));
        a.extend(words(extra));
        ok(&mislas(root, &a));
    };
    // A partition Slurm does not know: the run fails with Slurm's message.
    add(&[]);
    let o = mislas(
        root,
        &words(&["queue", "run", "--slurm", "--partition", "nosuchpart"]),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid partition"), "{err}");
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(
        ls.contains("failed") && ls.contains("invalid partition"),
        "{ls}"
    );
    // Three runs that fail on the node, in one submission: one without data (Slurm's FAILED,
    // exit code 1:0), one killed with -9 after its first in-epoch checkpoint (FAILED, 0:9:
    // submitted again, once, and it ends as the same run left uninterrupted), one killed
    // before any checkpoint (not retried).
    add(&["data_path", "./nowhere"]);
    // The per-user hook runs once for each of them, when its queue state is final (not after
    // the killed run's first attempt): each call appends its state to a file of the run's name.
    let hooks = root.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::write(
        root.join("queue/hooks.yaml"),
        format!(
            "on_run_end: 'echo \"$MISLAS_RUN_STATE $MISLAS_BEST_TOP1\" >> {}/$MISLAS_RUN_NAME'\n",
            hooks.display()
        ),
    )
    .unwrap();
    let every = ["checkpoint_every", "0.0001"];
    add(&[&["name", "killed"][..], &every].concat());
    add(&[&["name", "early"][..], &every].concat());
    let whole = std::thread::spawn({
        let root = root.to_path_buf();
        move || local_run(&root, "killed", &words(&every))
    });
    let o = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(root)
        .env("MISLAS_DATA_DIR", root.join("queue"))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env(
            "MISLAS_RUN_FAULT",
            "kill_after_checkpoint@killed,kill_before_checkpoint@early",
        )
        .args(["queue", "run", "--slurm"])
        .output()
        .unwrap();
    let out = ok(&o);
    assert!(
        out.contains("queue: run 3 killed (signal 9, SIGKILL): restart 1 of 2, from ")
            && out.contains(": submitted again as Slurm job "),
        "{out}"
    );
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(
        ls.contains(": FAILED") && ls.contains("exit code 1:0"),
        "{ls}"
    );
    let jobs = mislas::queue::Queue::open(&root.join("queue"))
        .unwrap()
        .list()
        .unwrap();
    let summary: Vec<(&str, u32, usize)> = jobs[1..]
        .iter()
        .map(|j| (j.state.as_str(), j.restarts, j.ends.len()))
        .collect();
    assert_eq!(
        summary,
        [("failed", 0, 1), ("done", 1, 2), ("failed", 0, 1)]
    );
    assert!(ls.contains("killed (1 restart)"), "{ls}");
    assert!(
        ls.contains("attempt 1: killed (signal 9, SIGKILL): restart 1 of 2")
            && ls.contains("attempt 2: finished")
            && ls.contains(
                "attempt 1: killed (signal 9, SIGKILL): before its first checkpoint: not retried"
            ),
        "{ls}"
    );
    let killed = root.join("saved/killed_q3");
    let log = std::fs::read_to_string(root.join("queue/logs/3.log")).unwrap();
    assert!(
        log.contains("=> fault drill: kill -9 at kill_after_checkpoint"),
        "{log}"
    );
    assert_eq!(figures(&killed), figures(&whole.join().unwrap()));
    let hooked = |name: &str| std::fs::read_to_string(hooks.join(name)).unwrap_or_default();
    assert_eq!(hooked("bad"), "failed \n");
    assert_eq!(hooked("early"), "failed \n");
    let best = figures(&killed)
        .iter()
        .filter_map(|m| m["eval"]["top1"].as_f64())
        .fold(f64::MIN, f64::max);
    assert_eq!(hooked("killed"), format!("finished {best:.2}\n"));
    // Hold, release and rm act on the Slurm job: a held job pends with Slurm's reason.
    add(&["num_epochs", "50"]);
    ok(&mislas(
        root,
        &words(&["queue", "run", "--slurm", "--detach", "--sbatch=--hold"]),
    ));
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(ls.contains("PENDING, JobHeldUser"), "{ls}");
    ok(&mislas(root, &words(&["queue", "release", "5"])));
    poll(60, "the released job to run", || {
        let ls = ok(&mislas(root, &words(&["queue", "ls"])));
        ls.contains(": RUNNING").then_some(())
    });
    ok(&mislas(root, &words(&["queue", "rm", "5"])));
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(!ls.contains("   5  "), "{ls}");
    // No sbatch on the PATH: said before anything is taken.
    add(&[]);
    let o = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(root)
        .env("MISLAS_DATA_DIR", root.join("queue"))
        .env("PATH", "/nonexistent")
        .args(["queue", "run", "--slurm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("`sbatch` is not on the PATH"),
        "{err}"
    );
    let ls = ok(&mislas(root, &words(&["queue", "ls"])));
    assert!(ls.contains("queued"), "{ls}");
}

#[test]
fn a_two_task_srun_trains_one_data_parallel_run() {
    let Some(_c) = cluster("a_two_task_srun_trains_one_data_parallel_run") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let mut train = vec![
        env!("CARGO_BIN_EXE_mislas").to_owned(),
        "train".into(),
        "--cfg".into(),
        preset(),
    ];
    train.extend(tiny_args("dp", "1", "32"));
    train.extend(words(&["run_dir", "dp"]));
    let port = 29_000 + std::process::id() % 1000;
    let script = format!(
        "#!/bin/bash\n#SBATCH -n 2\n#SBATCH -o {out}\ncd {root}\n\
         srun -n 2 bash -c 'MASTER_ADDR=127.0.0.1 MASTER_PORT={port} OMP_WAIT_POLICY=PASSIVE \
         exec {train}'\n",
        out = root.join("dp.out").display(),
        root = root.display(),
        train = train.join(" ")
    );
    std::fs::write(root.join("dp.sh"), script).unwrap();
    let sub = Command::new("sbatch")
        .args(["--parsable"])
        .arg(root.join("dp.sh"))
        .output()
        .unwrap();
    let id = ok(&sub).trim().to_owned();
    let state = poll(240, "the srun job to end", || {
        let s = mislas::queue::slurm::query_status(&id).ok()?;
        s.is_final().then_some(s)
    });
    let out = std::fs::read_to_string(root.join("dp.out")).unwrap_or_default();
    assert_eq!(state.state, "COMPLETED", "{out}");
    assert!(out.contains("data parallel over 2 ranks"), "{out}");
    let folders: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("config.yaml").is_file())
        .collect();
    assert_eq!(folders.len(), 1, "one run folder for both ranks");
    assert_eq!(figures(&root.join("dp")).len(), 1);
    assert!(
        !root.join("saved").exists(),
        "no second run folder under saved/"
    );
}

/// A fake `sbatch` first on the PATH: `--version` answers; a submission is recorded in
/// `sbatch.args` and refused with Slurm's words for an account Slurm does not know (Slurm
/// checks accounts only with accounting on, `AccountingStorageEnforce=associations`, which
/// the one-node cluster of these tests does not run), else given job id 42.
fn fake_sbatch(dir: &Path) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let f = bin.join("sbatch");
    std::fs::write(
        &f,
        format!(
            "#!/bin/bash\n[ \"$1\" = --version ] && {{ echo 'slurm 22.05.8'; exit 0; }}\n\
             printf '%s\\n' \"$@\" >> {log}\n\
             case \" $* \" in *' --account=nosuch '*)\n\
             echo 'sbatch: error: Batch job submission failed: Invalid account or \
             account/partition combination specified' >&2; exit 1;; esac\necho 42\n",
            log = dir.join("sbatch.args").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn an_unknown_account_and_a_multi_node_run_outside_a_shared_folder_are_said_in_words() {
    // No cluster: a fake sbatch (`fake_sbatch`), so this runs everywhere.
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let root = tmp.path();
    let bin = fake_sbatch(root);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mislas"))
            .current_dir(root)
            .env("MISLAS_DATA_DIR", root.join("queue"))
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap()
    };
    let mut add = words(&["queue", "add", "train", "--cfg"]);
    add.push(preset());
    add.extend(tiny_args("acct", "1", "32"));
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    ok(&run(&add));
    let o = run(&["queue", "run", "--slurm", "--detach", "--account", "nosuch"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("queue: run 1 not submitted: Slurm refused `sbatch --parsable")
            && err.contains(
                ": Batch job submission failed: Invalid account or account/partition \
                 combination specified"
            ),
        "{err}"
    );
    let ls = ok(&run(&["queue", "ls"]));
    assert!(
        ls.contains("   1  failed") && ls.contains("Slurm: REFUSED, Slurm refused"),
        "{ls}"
    );
    // Two nodes of 4 GPUs, run folder under /tmp: warned before it is submitted; the job
    // starts 8 ranks with srun.
    ok(&run(&add));
    let o = run(&[
        "queue", "run", "--slurm", "--detach", "--nodes", "2", "--gpus", "4",
    ]);
    let (out, err) = (ok(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(
        out.contains("run 2 (acct) submitted as Slurm job 42"),
        "{out}"
    );
    assert!(
        err.contains("queue: run 2 (acct): warning: the run spans 2 nodes, but its run folder")
            && err.contains("is under /tmp, which is local to each node"),
        "{err}"
    );
    let args = std::fs::read_to_string(root.join("sbatch.args")).unwrap();
    for want in [
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--account=nosuch",
    ] {
        assert!(args.contains(want), "{want} not in {args}");
    }
    let script = std::fs::read_to_string(root.join("queue/logs/2.sbatch")).unwrap();
    assert!(
        script.contains("\nexec srun --kill-on-bad-exit=1 ")
            && script.contains(&format!("run_dir {}/saved/acct_q2", root.display())),
        "{script}"
    );
}
