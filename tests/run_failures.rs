//! How a run ends when it does not simply finish, on the real Fashion-MNIST-LT: a stop during
//! the evaluation, a checkpoint that cannot be written. What the user had is kept, and every
//! message says what happened in words.
use mislas::checkpoint;
use mislas::config::Config;
use mislas::engine;
use mislas::events::{Control, Event, FailureKind};
use mislas::wire::Job;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs share libtorch's generator and two cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn stage1(name: &str) -> Config {
    let p = Path::new(ROOT).join("presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml");
    let mut c = Config::from_file(&p).expect("preset loads").config;
    c.name = name.into();
    c.num_epochs = 1;
    c.warmup_epochs = Some(1);
    c.device = "cpu".into();
    c.eval_batch_size = Some(500);
    c
}

fn log_text(run_dir: &Path, cfg: &Config) -> String {
    std::fs::read_to_string(run_dir.join(&cfg.log_dir).join(format!("{}.txt", cfg.name)))
        .expect("the run has a log")
}

/// Follows a run, sending Stop at the first evaluation progress that is not the last.
fn run_stopping_in_evaluation(cfg: &Config, saved: &Path) -> (Vec<Event>, PathBuf) {
    let h = engine::spawn(Job::Single(cfg.clone()), saved.to_path_buf());
    let mut events = Vec::new();
    for e in h.events.iter() {
        if let Event::EvalProgress(p) = &e {
            if p.images_done < p.images_total {
                h.controls.send(Control::Stop).unwrap();
            }
        }
        events.push(e);
    }
    h.join().expect("trainer thread does not panic");
    let dir = events
        .iter()
        .find_map(|e| match e {
            Event::StageStarted(s) => Some(s.run_dir.clone()),
            _ => None,
        })
        .expect("the stage started");
    (events, dir)
}

#[test]
fn a_stop_during_evaluation_keeps_the_trained_epoch_and_reports_no_figures() {
    let _one = serial();
    let saved = tempfile::tempdir().unwrap();
    let cfg = stage1("eval_stop");
    let (events, dir) = run_stopping_in_evaluation(&cfg, saved.path());

    // The evaluation showed its progress over the 10,000 test images, then stopped early.
    let progress: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::EvalProgress(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty());
    assert!(progress.iter().all(|p| p.images_total == 10_000));
    assert!(progress.iter().all(|p| p.images_done < 10_000));
    assert!(!events.iter().any(|e| matches!(e, Event::Epoch(_))));
    // Stopped before any evaluation: no made-up best figures.
    let finished = events
        .iter()
        .find_map(|e| match e {
            Event::StageFinished(f) => Some(f.clone()),
            _ => None,
        })
        .expect("the stage ended");
    assert!(finished.stopped);
    assert_eq!(finished.best, None);
    assert_eq!(finished.best_checkpoint, None);
    assert!(matches!(events.last(), Some(Event::Finished)));

    // The epoch's training is saved: the checkpoint stands after its last batch.
    let current = dir.join("ckps/current.safetensors");
    let pos = checkpoint::load(&current).unwrap().position.unwrap();
    assert_eq!((pos.epoch, pos.batch), (0, 117));
    assert!(
        log_text(&dir, &cfg).contains("=> stopped before the evaluation of epoch 0; resume with"),
        "{}",
        log_text(&dir, &cfg)
    );

    // Resuming only evaluates.
    let mut resumed = cfg.clone();
    resumed.resume = current.display().to_string();
    let h = engine::spawn(Job::Single(resumed), saved.path().to_path_buf());
    let events: Vec<Event> = h.events.iter().collect();
    h.join().unwrap();
    assert!(matches!(events.last(), Some(Event::Finished)), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Batch(_))));
    let epochs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 1);
    assert_eq!(epochs[0].epoch, 0);
    assert_eq!(epochs[0].eval.samples, 10_000);
    let best = events.iter().find_map(|e| match e {
        Event::StageFinished(f) => f.best,
        _ => None,
    });
    assert_eq!(best.map(|b| b.top1), Some(epochs[0].eval.top1));
}

#[test]
fn a_failed_checkpoint_write_keeps_the_epochs_figures_and_says_why() {
    let _one = serial();
    let saved = tempfile::tempdir().unwrap();
    let cfg = stage1("ckpt_fail");
    let h = engine::spawn(Job::Single(cfg.clone()), saved.path().to_path_buf());
    let mut events = Vec::new();
    let mut dir = None;
    for e in h.events.iter() {
        if let Event::StageStarted(s) = &e {
            // A folder where the checkpoint's temporary file goes: the write fails even for
            // root, with the operating system's reason.
            std::fs::create_dir_all(s.run_dir.join("ckps/.current.safetensors.tmp")).unwrap();
            dir = Some(s.run_dir.clone());
        }
        events.push(e);
    }
    h.join().unwrap();
    let dir = dir.expect("the stage started");
    let Some(Event::Failed(f)) = events.last() else {
        panic!("the run must fail: {:?}", events.last());
    };
    assert_eq!(f.kind, FailureKind::Io);
    let file = dir.join("ckps/current.safetensors");
    assert_eq!(
        f.message,
        format!(
            "cannot write checkpoint {}: Is a directory (os error 21)",
            file.display()
        )
    );
    assert!(!f.message.contains("Os {"), "{}", f.message);
    // The epoch had been evaluated: its figures are on record, in the events and the file.
    let epoch = events
        .iter()
        .find_map(|e| match e {
            Event::Epoch(r) => Some(r.clone()),
            _ => None,
        })
        .expect("the epoch was evaluated");
    let recorded = mislas::run_dir::read_metrics(&dir).unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].eval.top1, epoch.eval.top1);
    // The log's last line says why the run ended, in plain words.
    let log = log_text(&dir, &cfg);
    let last = log.lines().last().unwrap();
    assert!(
        last.ends_with(&format!(
            "=> failed (write error): cannot write checkpoint {}: Is a directory (os error 21)",
            file.display()
        )),
        "{last}"
    );
}
