//! End-to-end runs of the list-file data sets on CPU, on an image tree the test writes in the
//! reference's layout: 12 classes with long-tailed counts, 64×64 JPEGs, `ImageNet_LT_train.txt`
//! / `ImageNet_LT_test.txt` (and Places-LT's names) under `data_path`, labels in the lists
//! deliberately not in count order so that the re-indexing matters.
use mislas::checkpoint;
use mislas::config::{BadImagePolicy, Config, DatasetName, Stage};
use mislas::engine;
use mislas::events::{Event, Failure};
use mislas::model::{Network, Part};
use mislas::wire::Job;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Training images per count rank (head first): 96 in all.
const COUNTS: [usize; 12] = [24, 16, 12, 9, 7, 6, 5, 4, 4, 3, 3, 3];
/// Test images per class.
const TEST_PER_CLASS: usize = 2;

/// The class id written in the lists for the class of count rank `r`: a permutation, so that
/// the most frequent class is not class 0.
fn written_id(r: usize) -> usize {
    (r * 5 + 3) % 12
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 64×64 JPEG whose colour and stripe frequency depend on the class, with per-image noise.
fn write_jpeg(path: &Path, class: usize, k: usize) {
    let mut img = image::RgbImage::new(64, 64);
    let (r, g, b) = (
        (class * 20) as u32,
        (255 - class * 20) as u32,
        ((class * 53) % 256) as u32,
    );
    for (x, y, p) in img.enumerate_pixels_mut() {
        let stripe = if ((x + y * (class as u32 % 3)) / (2 + class as u32)).is_multiple_of(2) {
            40
        } else {
            0
        };
        let noise = (x * 7 + y * 13 + k as u32 * 31) % 17;
        *p = image::Rgb([
            ((r + stripe + noise) % 256) as u8,
            ((g + noise) % 256) as u8,
            ((b + stripe) % 256) as u8,
        ]);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// Writes the tree and the two lists under `root` with the given list names; returns the path
/// of a training image that the list names but that is not a JPEG (when `corrupt`).
fn write_tree(root: &Path, train_name: &str, test_name: &str, corrupt: bool) -> Option<PathBuf> {
    let mut train = String::new();
    let mut test = String::new();
    for (rank, &n) in COUNTS.iter().enumerate() {
        let id = written_id(rank);
        for k in 0..n {
            let rel = format!("train/n{id:04}/img_{k}.jpg");
            write_jpeg(&root.join(&rel), rank, k);
            writeln!(train, "{rel} {id}").unwrap();
        }
        for k in 0..TEST_PER_CLASS {
            let rel = format!("val/n{id:04}_{k}.jpg");
            write_jpeg(&root.join(&rel), rank, 100 + k);
            writeln!(test, "{rel} {id}").unwrap();
        }
    }
    let bad = corrupt.then(|| {
        let rel = "train/broken.jpg";
        std::fs::write(root.join(rel), b"\xff\xd8\xff\xe0 not really a JPEG").unwrap();
        // Class of rank 11 (3 images) so that the counts change visibly: it becomes 4.
        writeln!(train, "{rel} {}", written_id(11)).unwrap();
        root.join(rel)
    });
    std::fs::write(root.join(train_name), train).unwrap();
    std::fs::write(root.join(test_name), test).unwrap();
    bad
}

fn config(dataset: DatasetName, root: &Path, stage: Stage) -> Config {
    let mut c = Config {
        name: format!("{dataset}_tiny_{stage}"),
        dataset,
        data_path: root.display().to_string(),
        num_classes: 12,
        imb_factor: None,
        backbone: "resnet50_fe".into(),
        head_class_idx: [0, 4],
        med_class_idx: [4, 8],
        tail_class_idx: [8, 12],
        mode: Some(stage),
        batch_size: 16,
        // The presets' lr 0.1 is for batch 256; scaled linearly to batch 16 (Goyal et al.,
        // 2017), as lr 0.1 at batch 16 makes a fresh ResNet-50 diverge in its first steps.
        lr: 0.1 * 16.0 / 256.0,
        num_epochs: 1,
        cos: true,
        alpha: Some(0.2),
        weight_decay: 5e-4,
        device: "cpu".into(),
        workers: 2,
        print_freq: 1,
        image_size: 32,
        eval_resize: Some(36),
        deterministic: false,
        ..Config::default()
    };
    if stage == Stage::Stage2 {
        c.mixup = false;
        c.alpha = None;
        c.smooth_head = Some(0.3);
        c.smooth_tail = Some(0.0);
        c.shift_bn = true;
        c.lr_factor = Some(0.05);
    }
    c
}

/// Every event of `job`, until the trainer thread ends (with success or an error).
fn events_of(job: Job, saved: &Path) -> Vec<Event> {
    let h = engine::spawn(job, saved.to_path_buf());
    let events: Vec<Event> = h.events.iter().collect();
    h.join().expect("trainer thread does not panic");
    events
}

/// Every event of `job`, which must not end in an error.
fn run(job: Job, saved: &Path) -> Vec<Event> {
    let events = events_of(job, saved);
    if let Some(Event::Failed(Failure { message: e, .. })) = events.last() {
        panic!("engine error: {e}");
    }
    events
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
fn imagenet_layout_resnet50_two_stages_on_cpu() {
    let _one = serial();
    let data = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let bad = write_tree(
        data.path(),
        "ImageNet_LT_train.txt",
        "ImageNet_LT_test.txt",
        true,
    )
    .unwrap();
    let mut s1 = config(DatasetName::Imagenet, data.path(), Stage::Stage1);
    s1.on_bad_image = BadImagePolicy::Skip;
    // Channels-last and gradient accumulation (batch 16 as 2 micro-batches of 8) run through
    // both stages; their numerics are checked against the plain step in the engine's unit tests.
    s1.channels_last = true;
    s1.accum_steps = 2;
    let mut s2 = config(DatasetName::Imagenet, data.path(), Stage::Stage2);
    s2.on_bad_image = BadImagePolicy::Skip;
    s2.channels_last = true;
    s2.accum_steps = 2;
    let events = run(
        Job::Pipeline {
            stage1: s1,
            stage2: vec![s2],
        },
        saved.path(),
    );
    assert!(matches!(events.last(), Some(Event::Finished)));
    let computation =
        "=> channels-last, gradient accumulation over 2 micro-batches of each batch of 16";
    let said = events
        .iter()
        .filter(|e| matches!(e, Event::Log(l) if l == computation))
        .count();
    assert_eq!(said, 2, "each stage logs how it computes");

    // Classes re-indexed by descending training count, whatever their written ids: the list's
    // counts by rank, the broken image still counted in its class (the class of rank 11, 3 + 1
    // = 4 lines) since the lists are read before any image is decoded.
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageStarted(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2);
    assert_eq!(
        started[0].class_counts,
        [24, 16, 12, 9, 7, 6, 5, 4, 4, 4, 3, 3]
    );
    // Stage 1: ⌈97/16⌉ = 7 batches; stage 2: ⌈97/16⌉ + 1 = 8.
    assert_eq!(started[0].batches_per_epoch, 7);
    assert_eq!(started[1].batches_per_epoch, 8);

    // The broken image is reported by path and skipped, in both stages (stage 2's class-aware
    // sampler visits it too).
    let bad_text = bad.display().to_string();
    let skips = events
        .iter()
        .filter(|e| {
            e.log_lines()
                .iter()
                .any(|l| l.contains(&bad_text) && l.ends_with("skipped"))
        })
        .count();
    assert!(skips >= 1, "no log line names {bad_text}");

    let reports: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(r) => Some(r.as_ref().clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert!(
            r.train_loss.is_finite() && r.train_loss > 0.0,
            "{}",
            r.train_loss
        );
        eprintln!(
            "{:?} epoch {}: loss {} top1 {} nll {} ece {}",
            r.stage, r.epoch, r.train_loss, r.eval.top1, r.eval.nll, r.eval.ece
        );
        assert!(r.eval.nll.is_finite() && r.eval.ece.is_finite());
        assert!((0.0..=100.0).contains(&r.eval.top1));
        assert_eq!(r.eval.samples, 12 * TEST_PER_CLASS);
        assert_eq!(r.eval.per_class.len(), 12);
    }

    // The run folders: stage 1 then stage 2, checkpoints and logs.
    let dirs = stage_dirs(&events);
    for d in &dirs {
        for f in [
            "config.yaml",
            "metrics.jsonl",
            "train_subset.json",
            "ckps/current.safetensors",
            "ckps/model_best.safetensors",
        ] {
            assert!(d.join(f).is_file(), "{} has no {f}", d.display());
        }
    }
    // Stage 2 kept stage 1's backbone weights and learnt LWS.
    let best1 = checkpoint::load(&dirs[0].join("ckps/model_best.safetensors")).unwrap();
    let cur2 = checkpoint::load(&dirs[1].join("ckps/current.safetensors")).unwrap();
    let w = "model.layer4.2.conv3.weight";
    assert!(best1.tensors[w].equal(&cur2.tensors[w]));
    let rm = "model.layer4.2.bn3.running_mean";
    assert!(
        !best1.tensors[rm].equal(&cur2.tensors[rm]),
        "shift learning"
    );
    assert_eq!(cur2.tensors["lws_model.learned_norm"].size(), [1, 12]);
}

#[test]
fn corrupt_image_fails_the_run_by_default() {
    let _one = serial();
    let data = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let bad = write_tree(
        data.path(),
        "ImageNet_LT_train.txt",
        "ImageNet_LT_test.txt",
        true,
    )
    .unwrap();
    let cfg = config(DatasetName::Imagenet, data.path(), Stage::Stage1);
    assert_eq!(cfg.on_bad_image, BadImagePolicy::Fail);
    let events = events_of(Job::Single(cfg), saved.path());
    let current = match events.last() {
        Some(Event::Failed(Failure { message: e, .. })) => {
            assert!(
                e.contains(&bad.display().to_string()) && e.contains("on_bad_image"),
                "{e}"
            );
            // The run was saved at the failing batch and says how to resume it.
            let current = e.rsplit("resume with: resume ").next().unwrap().trim();
            PathBuf::from(current)
        }
        other => panic!("expected an error naming the image, got {other:?}"),
    };
    assert!(current.is_file(), "{}", current.display());
    let first_dir = stage_dirs(&events)[0].clone();

    // Once the file is fixed, the run resumes in its own folder at that batch and finishes.
    write_jpeg(&bad, 11, 99);
    let mut cfg = config(DatasetName::Imagenet, data.path(), Stage::Stage1);
    cfg.resume = current.display().to_string();
    cfg.workers = 1;
    let events = run(Job::Single(cfg), saved.path());
    assert!(matches!(events.last(), Some(Event::Finished)));
    // A setting that differs from the run's config.yaml is logged.
    assert!(events.iter().any(|e| e
        .log_lines()
        .iter()
        .any(|l| l == "=> resumed with changed settings: workers 2 → 1")));
    assert_eq!(stage_dirs(&events), vec![first_dir]);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Log(l) if l.contains("resuming at epoch 0 batch"))));
}

#[test]
fn missing_images_are_found_before_training() {
    let _one = serial();
    let data = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    write_tree(
        data.path(),
        "ImageNet_LT_train.txt",
        "ImageNet_LT_test.txt",
        false,
    );
    let gone = data.path().join(format!("val/n{:04}_1.jpg", written_id(2)));
    std::fs::remove_file(&gone).unwrap();
    let cfg = config(DatasetName::Imagenet, data.path(), Stage::Stage1);
    let events = events_of(Job::Single(cfg), saved.path());
    assert!(
        !events.iter().any(|e| matches!(e, Event::Batch(_))),
        "no training before the check"
    );
    match events.last() {
        Some(Event::Failed(Failure { message: e, .. })) => assert!(
            e.contains("ImageNet_LT_test.txt")
                && e.contains("1 of its 24 images are missing")
                && e.contains(&gone.display().to_string()),
            "{e}"
        ),
        other => panic!("expected an error naming the missing image, got {other:?}"),
    }
    // Nothing was created for a run that could not start.
    assert_eq!(std::fs::read_dir(saved.path()).unwrap().count(), 0);
}

#[test]
fn places_layout_trains_the_block_on_a_frozen_pretrained_backbone() {
    let _one = serial();
    let data = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    write_tree(
        data.path(),
        "Places_LT_train.txt",
        "Places_LT_test.txt",
        false,
    );
    // "Pretrained" weights: a ResNet-50 of another seed, saved under torchvision's names.
    tch::manual_seed(77);
    let donor = Network::new("resnet50_fe", 3, 1000, tch::Device::Cpu).unwrap();
    let weights = data.path().join("resnet50_imagenet.safetensors");
    let named: Vec<(String, tch::Tensor)> = donor
        .part_variables(Part::Backbone)
        .into_iter()
        .map(|(k, t)| (k.strip_prefix("model.").unwrap().to_owned(), t))
        .collect();
    tch::Tensor::write_safetensors(&named, &weights).unwrap();

    // Missing weights: a clear error.
    let mut s1 = config(DatasetName::Places, data.path(), Stage::Stage1);
    s1.pretrained_weights = data.path().join("nope.pth").display().to_string();
    let events = events_of(Job::Single(s1.clone()), saved.path());
    match events.last() {
        Some(Event::Failed(Failure { message: e, .. })) => {
            assert!(e.contains("nope.pth") && e.contains("resnet152"), "{e}")
        }
        other => panic!("expected a missing-weights error, got {other:?}"),
    }

    s1.pretrained_weights = weights.display().to_string();
    let s2 = config(DatasetName::Places, data.path(), Stage::Stage2);
    let events = run(
        Job::Pipeline {
            stage1: s1,
            stage2: vec![s2],
        },
        saved.path(),
    );
    let dirs = stage_dirs(&events);
    assert_eq!(dirs.len(), 2);
    let ck1 = checkpoint::load(&dirs[0].join("ckps/current.safetensors")).unwrap();
    let ck2 = checkpoint::load(&dirs[1].join("ckps/current.safetensors")).unwrap();
    let donor_vars = donor.vs.variables();
    // Stage 1: the backbone is the pretrained one, weights and BatchNorm statistics untouched
    // (frozen, eval mode); the block exists and was trained.
    for k in [
        "model.conv1.weight",
        "model.layer3.5.bn2.running_mean",
        "model.layer4.0.downsample.0.weight",
    ] {
        assert!(ck1.tensors[k].equal(&donor_vars[k]), "stage 1 changed {k}");
    }
    tch::manual_seed(0);
    let fresh = Network::build("resnet50_fe", 3, 12, true, tch::Device::Cpu).unwrap();
    let b = "block.conv2.weight";
    assert!(
        !ck1.tensors[b].equal(&fresh.vs.variables()[b]),
        "the block did not train"
    );
    assert!(ck1.tensors.contains_key("block.bn3.running_var"));
    // Stage 2 (shift_bn): the block's weights stay, its BatchNorm statistics move, the
    // backbone's do not.
    assert!(ck1.tensors[b].equal(&ck2.tensors[b]));
    let rm = "block.bn2.running_mean";
    assert!(
        !ck1.tensors[rm].equal(&ck2.tensors[rm]),
        "block shift learning"
    );
    let brm = "model.layer4.2.bn3.running_mean";
    assert!(ck1.tensors[brm].equal(&ck2.tensors[brm]));
}
