//! End-to-end runs of the engine on the real Fashion-MNIST-LT (Debian's dataset-fashion-mnist):
//! the loss falls and top-1 beats chance by a wide margin, stage 2 freezes the backbone and learns
//! LWS, the run folder holds what it should, and a stopped run resumes at the batch where it
//! stopped with bit-identical weights; a queued pipeline with two stage 2s trains both from
//! one stage-1 checkpoint (on the tiny CIFAR-10 of the fixtures).
use mislas::checkpoint;
use mislas::config::Config;
use mislas::engine;
use mislas::events::{Control, Event, Failure};
use mislas::model::Part;
use mislas::wire::Job;
use std::path::{Path, PathBuf};

mod fixtures;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The runs initialise their weights from libtorch's process-wide generator (seeded with
/// `seed`), so two runs in parallel threads would interleave their draws; they also share two
/// cores. One at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn preset(name: &str) -> Config {
    let p = Path::new(ROOT).join("presets/fashion_mnist").join(name);
    Config::from_file(&p).expect("preset loads").config
}

fn stage1(epochs: usize) -> Config {
    let mut c = preset("fashion_mnist_imb001_stage1_mixup.yaml");
    c.num_epochs = epochs;
    // Short runs: one warm-up epoch instead of the preset's five.
    c.warmup_epochs = Some(1);
    c.device = "cpu".into();
    c.eval_batch_size = Some(500);
    c
}

/// Runs a job to its end and returns its events; panics on an engine error.
fn run(job: Job, saved: &Path) -> Vec<Event> {
    let h = engine::spawn(job, saved.to_path_buf());
    let events: Vec<Event> = h.events.iter().collect();
    h.join().expect("trainer thread does not panic");
    if let Some(Event::Failed(Failure { message: e, .. })) = events.last() {
        panic!("engine error: {e}");
    }
    events
}

fn epochs(events: &[Event]) -> Vec<&mislas::events::EpochReport> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect()
}

fn losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Batch(b) => Some(b.loss),
            _ => None,
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn stage_dirs(events: &[Event]) -> Vec<PathBuf> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StageStarted(s) => Some(s.run_dir.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn two_stages_learn_on_fashion_mnist_lt() {
    let _one_at_a_time = serial();
    let saved = tempfile::tempdir().unwrap();
    let s1 = stage1(2);
    let mut s2 = preset("fashion_mnist_imb001_stage2_mislas.yaml");
    s2.num_epochs = 1;
    s2.device = "cpu".into();
    s2.eval_batch_size = Some(500);
    let events = run(
        Job::Pipeline {
            stage1: s1,
            stage2: vec![s2],
        },
        saved.path(),
    );
    assert!(matches!(events.last(), Some(Event::Finished)));
    let dirs = stage_dirs(&events);
    assert_eq!(dirs.len(), 2);

    // Stage 1: 2 epochs of ceil(14,886 / 128) = 117 batches (IF 0.01 keeps
    // int(6000·0.01^(c/9)) = 6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60 = 14,886 images);
    // stage 2: ceil(14,886 / 128) + 1 = 118 batches.
    let all = losses(&events);
    assert_eq!(all.len(), 2 * 117 + 118);
    let l = &all[..234];
    let (first, last) = (mean(&l[..20]), mean(&l[l.len() - 20..]));
    assert!(
        last < 0.7 * first,
        "stage-1 loss fell only from {first:.3} to {last:.3}"
    );
    let reports = epochs(&events);
    assert_eq!(reports.len(), 3);
    let s1_top1 = reports[1].eval.top1;
    eprintln!(
        "stage-1 loss {first:.3} → {last:.3}; top-1 {:.2}% → {s1_top1:.2}%; stage-2 top-1 {:.2}%",
        reports[0].eval.top1, reports[2].eval.top1
    );
    assert!(
        s1_top1 > 40.0,
        "stage-1 top-1 {s1_top1:.2}% is not far above chance (10%)"
    );
    assert_eq!(reports[0].eval.samples, 10_000);
    assert_eq!(reports[1].eval.per_class.len(), 10);

    // Stage 2 starts from stage 1's best checkpoint, keeps the backbone's weights, shifts the
    // BatchNorm statistics and learns LWS.
    let best1 = checkpoint::load(&dirs[0].join("ckps/model_best.safetensors")).unwrap();
    let cur2 = checkpoint::load(&dirs[1].join("ckps/current.safetensors")).unwrap();
    let w = "model.layer2.0.conv1.weight";
    assert!(
        best1.tensors[w].equal(&cur2.tensors[w]),
        "stage 2 changed {w}"
    );
    let g = "model.layer3.4.bn2.weight";
    assert!(
        best1.tensors[g].equal(&cur2.tensors[g]),
        "stage 2 changed BatchNorm γ"
    );
    let rm = "model.layer3.4.bn2.running_mean";
    assert!(
        !best1.tensors[rm].equal(&cur2.tensors[rm]),
        "shift learning did not move {rm}"
    );
    let lws = &cur2.tensors["lws_model.learned_norm"];
    assert_eq!(lws.size(), vec![1, 10]);
    let moved = (lws - 1.0).abs().max().double_value(&[]);
    assert!(
        moved > 1e-4,
        "LWS scales did not move from ones (max |s − 1| = {moved})"
    );
    // Stage 2's two groups at its first epoch: η(0) = 0.1·½(1 + cos 0) = 0.1; the classifier at
    // η·lr_factor = 0.05, LWS at η.
    let stage2_lr = events.iter().find_map(|e| match e {
        Event::EpochStarted { stage, lr, .. } if *stage == mislas::config::Stage::Stage2 => {
            Some(lr.clone())
        }
        _ => None,
    });
    assert_eq!(stage2_lr, Some(vec![0.05, 0.1]));
    let s2 = reports[2];
    assert!(s2.eval.top1 > 40.0, "stage-2 top-1 {:.2}%", s2.eval.top1);

    // The run folders.
    for d in &dirs {
        for f in [
            "config.yaml",
            "metrics.jsonl",
            "train_subset.json",
            "train_subset_indices.txt",
            "ckps/current.safetensors",
            "ckps/model_best.safetensors",
        ] {
            assert!(d.join(f).is_file(), "{} is missing", d.join(f).display());
        }
        let name = Config::from_file(&d.join("config.yaml"))
            .unwrap()
            .config
            .name;
        let log = std::fs::read_to_string(d.join("logs").join(format!("{name}.txt"))).unwrap();
        assert!(
            log.contains("* Acc@1 ") && log.contains("* ECE ") && log.contains("Best Prec@1: ")
        );
    }
    let m = mislas::run_dir::read_metrics(&dirs[0]).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].eval.bins.len(), 15);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[0].join("train_subset.json")).unwrap())
            .unwrap();
    assert_eq!(record["num_images"], 14_886);
    let indices = std::fs::read_to_string(dirs[0].join("train_subset_indices.txt")).unwrap();
    assert_eq!(
        record["sha256"].as_str().unwrap(),
        mislas::data::subset_sha256(
            &indices
                .lines()
                .map(|l| l.parse().unwrap())
                .collect::<Vec<usize>>()
        )
    );
}

#[test]
fn stopped_run_resumes_at_its_batch_with_identical_weights() {
    let _one_at_a_time = serial();
    let saved = tempfile::tempdir().unwrap();
    let mut cfg = stage1(1);
    cfg.name = "resume_check".into();
    // Uninterrupted reference run.
    let events = run(Job::Single(cfg.clone()), saved.path());
    let full_dir = stage_dirs(&events)[0].clone();

    // Same run, stopped after batch 30 (the trainer may be a batch further when the stop
    // arrives: it never waits for its front ends).
    let h = engine::spawn(Job::Single(cfg.clone()), saved.path().to_path_buf());
    let mut stopped_dir = None;
    for e in h.events.iter() {
        match e {
            Event::StageStarted(s) => stopped_dir = Some(s.run_dir.clone()),
            Event::Batch(b) if b.batch == 30 => h.controls.send(Control::Stop).unwrap(),
            Event::StageFinished(f) => assert!(f.stopped),
            Event::Failed(Failure { message: e, .. }) => panic!("{e}"),
            _ => {}
        }
    }
    let stopped_dir = stopped_dir.unwrap();
    let current = stopped_dir.join("ckps/current.safetensors");
    let pos = checkpoint::load(&current).unwrap().position.unwrap();
    assert_eq!(pos.epoch, 0);
    assert!(
        pos.batch > 30 && pos.batch < 117,
        "stopped at batch {}",
        pos.batch
    );

    // Resume: the run continues in the same folder at the batch where it stopped.
    let mut resumed = cfg.clone();
    resumed.resume = current.display().to_string();
    let events = run(Job::Single(resumed), saved.path());
    assert_eq!(stage_dirs(&events)[0], stopped_dir);
    let first_batch = events.iter().find_map(|e| match e {
        Event::Batch(b) => Some(b.batch),
        _ => None,
    });
    assert_eq!(first_batch, Some(pos.batch));

    let a = checkpoint::load(&full_dir.join("ckps/current.safetensors")).unwrap();
    let b = checkpoint::load(&current).unwrap();
    for (k, t) in &a.tensors {
        assert!(
            t.equal(&b.tensors[k]),
            "{k} differs between the full and the resumed run"
        );
    }
    let net_parts = [Part::Backbone, Part::Classifier];
    assert!(net_parts
        .iter()
        .all(|p| a.tensors.keys().any(|k| k.starts_with(p.prefix()))));
    assert_eq!(
        mislas::run_dir::read_metrics(&stopped_dir).unwrap().len(),
        1,
        "one evaluated epoch in the resumed run's metrics.jsonl"
    );

    // A run's best checkpoint is not its latest: it starts a new run from those weights instead
    // of rewinding (and overwriting) the finished run.
    let mut from_best = cfg;
    from_best.resume = full_dir
        .join("ckps/model_best.safetensors")
        .display()
        .to_string();
    let h = engine::spawn(Job::Single(from_best), saved.path().to_path_buf());
    let mut started = None;
    for e in h.events.iter() {
        match e {
            Event::StageStarted(s) => started = Some((s.run_dir.clone(), s.start_epoch)),
            Event::Batch(_) => h.controls.send(Control::Stop).unwrap(),
            Event::Failed(Failure { message: e, .. }) => panic!("{e}"),
            _ => {}
        }
    }
    let (dir, start_epoch) = started.unwrap();
    assert_ne!(dir, full_dir);
    assert_eq!(start_epoch, 0);
    assert_eq!(mislas::run_dir::read_metrics(&full_dir).unwrap().len(), 1);
}

/// Copies a run folder (files and sub-folders) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// `checkpoint_every`: a checkpoint written inside the epoch is one a run killed right after it
/// (here: a copy of its folder made while it is paused) resumes from, at that batch, to the
/// same weights as the uninterrupted run.
#[test]
fn an_in_epoch_checkpoint_resumes_at_its_batch_with_identical_weights() {
    let _one_at_a_time = serial();
    let saved = tempfile::tempdir().unwrap();
    let killed = tempfile::tempdir().unwrap();
    let mut cfg = stage1(1);
    cfg.name = "in_epoch".into();
    // Every 0.3 s: several checkpoints in the epoch's ~117 batches.
    cfg.checkpoint_every = 0.005;
    let h = engine::spawn(Job::Single(cfg.clone()), saved.path().to_path_buf());
    let (mut dir, mut copy) = (None, None);
    for e in h.events.iter() {
        match e {
            Event::StageStarted(s) => dir = Some(s.run_dir.clone()),
            Event::Checkpoint { best: false, .. } if copy.is_none() => {
                // The trainer pauses at its next batch; the copy is what a kill -9 leaves.
                h.controls.send(Control::Pause).unwrap();
            }
            Event::Paused if copy.is_none() => {
                let d: &PathBuf = dir.as_ref().unwrap();
                let to = killed.path().join(d.file_name().unwrap());
                copy_dir(d, &to);
                copy = Some(to);
                h.controls.send(Control::Resume).unwrap();
            }
            Event::Failed(Failure { message: e, .. }) => panic!("{e}"),
            _ => {}
        }
    }
    let (dir, copy) = (
        dir.unwrap(),
        copy.expect("an in-epoch checkpoint was written"),
    );
    let current = copy.join("ckps/current.safetensors");
    let pos = checkpoint::load(&current).unwrap().position.unwrap();
    assert_eq!(pos.epoch, 0);
    assert!(
        pos.batch > 0 && pos.batch < 117,
        "checkpoint at batch {}",
        pos.batch
    );

    let mut resumed = cfg.clone();
    resumed.resume = current.display().to_string();
    let events = run(Job::Single(resumed), killed.path());
    assert_eq!(stage_dirs(&events)[0], copy);
    let first_batch = events.iter().find_map(|e| match e {
        Event::Batch(b) => Some(b.batch),
        _ => None,
    });
    assert_eq!(first_batch, Some(pos.batch));
    let a = checkpoint::load(&dir.join("ckps/current.safetensors")).unwrap();
    let b = checkpoint::load(&current).unwrap();
    for (k, t) in &a.tensors {
        assert!(t.equal(&b.tensors[k]), "{k} differs after the restart");
    }
    let (ma, mb) = (
        mislas::run_dir::read_metrics(&dir).unwrap(),
        mislas::run_dir::read_metrics(&copy).unwrap(),
    );
    assert_eq!(ma.len(), 1);
    assert_eq!(mb.len(), 1);
}

#[test]
fn stage2_without_checkpoint_is_a_clear_error() {
    let saved = tempfile::tempdir().unwrap();
    let mut s2 = preset("fashion_mnist_imb001_stage2_mislas.yaml");
    s2.device = "cpu".into();
    let h = engine::spawn(Job::Single(s2.clone()), saved.path().to_path_buf());
    let last = h.events.iter().last();
    match last {
        Some(Event::Failed(Failure { message: e, .. })) => {
            assert!(e.contains("stage-1 checkpoint"), "{e}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    s2.resume = saved.path().join("nope.safetensors").display().to_string();
    let h = engine::spawn(Job::Single(s2), saved.path().to_path_buf());
    match h.events.iter().last() {
        Some(Event::Failed(Failure { message: e, .. })) => {
            assert!(e.contains("nope.safetensors"), "{e}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let _one_at_a_time = serial();
    let saved = tempfile::tempdir().unwrap();
    let cfg = stage1(1);
    // A run stopped after its first batches leaves a good checkpoint.
    let h = engine::spawn(Job::Single(cfg.clone()), saved.path().to_path_buf());
    let mut dir = None;
    for e in h.events.iter() {
        match e {
            Event::StageStarted(s) => dir = Some(s.run_dir.clone()),
            Event::Batch(b) if b.batch == 1 => h.controls.send(Control::Stop).unwrap(),
            Event::Failed(Failure { message: e, .. }) => panic!("{e}"),
            _ => {}
        }
    }
    let current = dir.unwrap().join("ckps/current.safetensors");
    let good = std::fs::read(&current).unwrap();

    // Resuming with another batch size would not continue the run: refused, nothing written.
    let mut other_batch = cfg.clone();
    other_batch.resume = current.display().to_string();
    other_batch.batch_size = 64;
    let h = engine::spawn(Job::Single(other_batch), saved.path().to_path_buf());
    match h.events.iter().last() {
        Some(Event::Failed(Failure { message: e, .. })) => assert!(
            e.contains("batch_size 128") && e.contains("current.safetensors"),
            "{e}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&current).unwrap(), good);

    // Resumed with an absurd learning rate, the weights blow up within a few batches.
    let mut bad = cfg;
    bad.resume = current.display().to_string();
    bad.lr = 1e30;
    let h = engine::spawn(Job::Single(bad), saved.path().to_path_buf());
    let last = h.events.iter().last();
    match last {
        Some(Event::Failed(Failure { message: e, .. })) => {
            assert!(e.contains("non-finite training loss"), "{e}");
            assert!(e.contains("the last good checkpoint"), "{e}");
            assert!(e.contains("current.safetensors"), "{e}");
        }
        other => panic!("expected a non-finite-loss error, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&current).unwrap(),
        good,
        "the good checkpoint changed"
    );
}

/// Decoupling's classifier stages on a stage-1 checkpoint (Kang et al., ICLR 2020): cRT draws
/// the classifier anew and trains it alone, LWS trains only the scales; both keep the backbone,
/// BatchNorm statistics included (no shift learning in their presets), and both beat the
/// stage-1 classifier they start from.
#[test]
fn crt_and_lws_train_only_what_decoupling_trains() {
    let _one_at_a_time = serial();
    let saved = tempfile::tempdir().unwrap();
    let events = run(Job::Single(stage1(1)), saved.path());
    let best = stage_dirs(&events)[0].join("ckps/model_best.safetensors");
    let stage1 = checkpoint::load(&best).unwrap();
    let stage1_top1 = epochs(&events)[0].eval.top1;
    for method in ["crt", "lws"] {
        let mut c = preset(&format!("fashion_mnist_imb001_stage2_{method}.yaml"));
        c.num_epochs = 1;
        c.device = "cpu".into();
        c.eval_batch_size = Some(500);
        c.resume = best.display().to_string();
        let events = run(Job::Single(c), saved.path());
        let lr = events.iter().find_map(|e| match e {
            Event::EpochStarted { lr, .. } => Some(lr.clone()),
            _ => None,
        });
        assert_eq!(lr, Some(vec![0.1]), "{method}: one group at lr 0.1");
        let says = format!("=> recipe {method}: ");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Log(l) if l.starts_with(&says))),
            "{method}: the log says what the recipe trains"
        );
        let top1 = epochs(&events)[0].eval.top1;
        eprintln!("{method}: top-1 {stage1_top1:.2}% (stage 1) → {top1:.2}%");
        // After one stage-1 epoch the head classes dominate (≈ 31 %); re-balancing the
        // classifier on the class-aware stream gains much more than 5 points (here 56 % / 40 %).
        assert!(
            top1 > stage1_top1 + 5.0,
            "{method}: top-1 {stage1_top1:.2}% → {top1:.2}%"
        );
        let cur =
            checkpoint::load(&stage_dirs(&events)[0].join("ckps/current.safetensors")).unwrap();
        let same = |k: &str| stage1.tensors[k].equal(&cur.tensors[k]);
        for k in [
            "model.layer2.0.conv1.weight",
            "model.layer3.4.bn2.weight",
            "model.layer3.4.bn2.running_mean",
        ] {
            assert!(same(k), "{method} changed {k}");
        }
        let lws = &cur.tensors["lws_model.learned_norm"];
        let moved = (lws - 1.0).abs().max().double_value(&[]);
        match method {
            "crt" => {
                assert!(!same("classifier.fc.weight") && !same("classifier.fc.bias"));
                assert_eq!(moved, 0.0, "cRT moved the LWS scales");
            }
            _ => {
                assert!(same("classifier.fc.weight") && same("classifier.fc.bias"));
                assert!(moved > 1e-4, "LWS scales stayed at one");
            }
        }
    }
}

/// The run folder under `saved` whose name is `name` and a `_YYYYMMDDHHMM` stamp.
fn run_folder(saved: &Path, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            f.strip_prefix(name)
                .and_then(|t| t.strip_prefix('_'))
                .is_some_and(|stamp| stamp.len() == 12 && stamp.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].clone()
}

/// `mislas pipeline --stage2 A --stage2 B`, queued and run by the scheduler as issue 20's sweep
/// ran: one stage 1, then MiSLAS and cRT each from its best checkpoint in a run folder of its
/// own, named apart by their recipe (`tiny_mislas`, `tiny_crt`: `name tiny` names every stage).
/// Both stage-2 runs resume the same file, and keep its backbone: every `model.*` tensor
/// (weights and BatchNorm statistics: the CIFAR presets have no shift learning) equals stage
/// 1's; cRT re-draws the classifier, MiSLAS keeps training it with LWS scales; each wrote its
/// evaluation of the 100 test images.
#[test]
fn a_queued_pipeline_trains_two_stage2_runs_from_one_stage1_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fixtures::tiny_cifar10(&root.join("data"));
    let preset = |f: &str| format!("{ROOT}/presets/cifar10/{f}");
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_mislas"))
            .current_dir(root)
            .env("MISLAS_DATA_DIR", root.join("queue"))
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .args(["--saved", "saved"])
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let (s1, mislas2, crt2) = (
        preset("cifar10_imb01_stage1_mixup.yaml"),
        preset("cifar10_imb01_stage2_mislas.yaml"),
        preset("cifar10_imb01_stage2_crt.yaml"),
    );
    let queued = cli(&[
        "queue",
        "add",
        "pipeline",
        "--stage1",
        &s1,
        "--stage2",
        &mislas2,
        "--stage2",
        &crt2,
        "name",
        "tiny",
        "data_path",
        "./data",
        "num_epochs",
        "1",
        "batch_size",
        "32",
        "stage1.warmup_epochs",
        "0",
        // At the presets' lr 0.1 this tiny run stops on a non-finite loss.
        "lr",
        "0.01",
        "workers",
        "0",
        "print_freq",
        "0",
        "device",
        "cpu",
    ]);
    assert_eq!(queued.trim(), "queued 1: tiny");
    let ran = cli(&["queue", "run"]);
    assert!(
        ran.contains("queue: run 1 on cpu ended (exit status: 0)"),
        "{ran}"
    );
    let saved = root.join("saved");
    let dirs = [
        run_folder(&saved, "tiny"),
        run_folder(&saved, "tiny_mislas"),
        run_folder(&saved, "tiny_crt"),
    ];
    assert_eq!(std::fs::read_dir(&saved).unwrap().count(), 3);
    let ls = cli(&["queue", "ls"]);
    assert!(
        ls.contains(&format!("done     cpu     tiny  {}", dirs[0].display())),
        "{ls}"
    );

    let best = dirs[0].join("ckps/model_best.safetensors");
    let stage1 = checkpoint::load(&best).unwrap();
    let backbone: Vec<&String> = stage1
        .tensors
        .keys()
        .filter(|k| k.starts_with("model."))
        .collect();
    assert!(backbone.len() > 100, "{} backbone tensors", backbone.len());
    for (dir, recipe) in [(&dirs[1], "mislas"), (&dirs[2], "crt")] {
        let c = Config::from_file(&dir.join("config.yaml")).unwrap().config;
        assert_eq!(
            std::fs::canonicalize(&c.resume).unwrap(),
            std::fs::canonicalize(&best).unwrap(),
            "{recipe} resumes stage 1's best checkpoint"
        );
        let name = format!("tiny_{recipe}");
        assert_eq!((c.name.as_str(), c.recipe.name()), (name.as_str(), recipe));
        let cur = checkpoint::load(&dir.join("ckps/current.safetensors")).unwrap();
        for k in &backbone {
            assert!(
                stage1.tensors[*k].equal(&cur.tensors[*k]),
                "{recipe} changed {k}"
            );
        }
        let same_fc =
            stage1.tensors["classifier.fc.weight"].equal(&cur.tensors["classifier.fc.weight"]);
        assert!(!same_fc, "{recipe} did not train the classifier");
        let moved = (&cur.tensors["lws_model.learned_norm"] - 1.0)
            .abs()
            .max()
            .double_value(&[]);
        match recipe {
            "mislas" => assert!(moved > 0.0, "MiSLAS left the LWS scales at one"),
            _ => assert_eq!(moved, 0.0, "cRT moved the LWS scales"),
        }
        let m = mislas::run_dir::read_metrics(dir).unwrap();
        assert_eq!(m.len(), 1, "{recipe}: one epoch, one metrics line");
        let e = &m[0].eval;
        assert_eq!((e.samples, e.per_class.len()), (100, 10), "{recipe}");
        assert!(
            (0.0..=100.0).contains(&e.top1) && e.nll.is_finite() && e.nll > 0.0,
            "{recipe}: {e:?}"
        );
    }
}
