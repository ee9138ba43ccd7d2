//! Data-parallel training on PyTorch's c10d with Gloo, two ranks on 127.0.0.1 (the CPU
//! tests): a step of two ranks equals a one-process step that accumulates the same two halves.
use mislas::distributed::c10d::{Backend, ProcessGroup};
use mislas::distributed::overlap::OverlapStats;
use mislas::distributed::GradientSync;
use mislas::distributed::Replicas;
use mislas::engine::recipe::mixup::MixupCrossEntropy;
use mislas::engine::step::{train_step, train_step_synced, StepOptions, TrainBatch};
use mislas::method::sgd::Sgd;
use mislas::model::{Network, Part};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use tch::{Device, Tensor};

const STEPS: usize = 3;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Eight 1×12×12 images and their labels, the same in every thread (not from torch's global
/// generator, which the threads share).
fn batch() -> (Tensor, Tensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let pixels: Vec<f32> = (0..8 * 144).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::from_slice(&pixels).view([8, 1, 12, 12]);
    (x, Tensor::from_slice(&[0i64, 1, 2, 3, 3, 2, 1, 0]))
}

fn sgd_of(net: &Network) -> Sgd {
    let mut params = net.part_parameters(Part::Backbone);
    params.extend(net.part_parameters(Part::Classifier));
    Sgd::new(vec![params], 0.1, 0.9, 5e-4)
}

fn parameters(net: &Network) -> BTreeMap<String, Tensor> {
    net.vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

/// Copies `state` (from [`state`]) into `net`'s variables.
fn copy_state(net: &Network, state: &BTreeMap<String, Tensor>) {
    tch::no_grad(|| {
        for (k, mut t) in net.vs.variables() {
            t.copy_(&state[&k]);
        }
    });
}

fn state(net: &Network) -> BTreeMap<String, Tensor> {
    net.vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

const TRAIN: StepOptions = StepOptions {
    backbone_train: true,
    accum_steps: 1,
    autocast: false,
};

/// How the ranks of [`rank_run`] average their gradients.
#[derive(Debug, Clone, Copy)]
struct Averaging {
    /// The all-reduce overlaps the backward pass (`ddp_overlap`).
    overlap: bool,
    /// Bucket cap, bytes.
    bucket_bytes: usize,
    /// Micro-batches per step.
    accum_steps: usize,
}

const DEFAULT_AVERAGING: Averaging = Averaging {
    overlap: true,
    bucket_bytes: mislas::distributed::replicas::BUCKET_BYTES,
    accum_steps: 1,
};

/// What one rank ends with.
struct RankResult {
    initial: BTreeMap<String, Tensor>,
    params: BTreeMap<String, Tensor>,
    stats: Option<OverlapStats>,
    /// Parameters the SGD trains (backbone and classifier: not LWS's scale).
    trained: usize,
}

fn join(rank: usize, world: usize, port: u16, timeout: Duration) -> ProcessGroup {
    ProcessGroup::join(
        "127.0.0.1",
        port,
        rank,
        world,
        Backend::Gloo,
        timeout,
        |_| Ok(()),
    )
    .expect("joins the group")
}

/// One rank of `world`: joins, takes rank 0's weights (`start` on rank 0, when given), trains
/// STEPS steps on its share of the batch (positions ≡ rank mod world, as the sampler's split
/// gives), averaging as `how` says.
fn rank_run(
    rank: usize,
    world: usize,
    port: u16,
    how: Averaging,
    start: Option<&BTreeMap<String, Tensor>>,
) -> RankResult {
    let group = join(rank, world, port, Duration::from_secs(60));
    let replicas = Replicas::new(group, Vec::new(), Device::Cpu)
        .with_overlap(how.overlap)
        .with_bucket_bytes(how.bucket_bytes);
    // Different initial weights on each rank: the broadcast must make them rank 0's.
    tch::manual_seed(rank as i64 + 10);
    let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
    if let Some(start) = start {
        copy_state(&net, start);
    }
    replicas.broadcast_state(&net).unwrap();
    let initial = state(&net);
    let mut sgd = sgd_of(&net);
    let (x, y) = batch();
    let mine: Vec<i64> = (rank..8).step_by(world).map(|i| i as i64).collect();
    let mine = Tensor::from_slice(&mine);
    let (x, y) = (x.index_select(0, &mine), y.index_select(0, &mine));
    let method = MixupCrossEntropy { alpha: None };
    let opts = StepOptions {
        accum_steps: how.accum_steps,
        ..TRAIN
    };
    for step in 0..STEPS {
        replicas.broadcast_buffers(&net).unwrap();
        let b = TrainBatch {
            images: &x,
            labels: &y,
            mixup_seed: step as u64,
        };
        let sync: &dyn GradientSync = &replicas;
        let out = train_step_synced(&net, &mut sgd, None, &method, b, opts, Some(sync)).unwrap();
        assert_eq!(out.images, 8, "the figures are the global batch's");
        assert!(out.applied);
    }
    RankResult {
        initial,
        params: parameters(&net),
        stats: replicas.overlap_stats(),
        trained: sgd.parameters().len(),
    }
}

/// Every rank of `world` on a thread of its own (rank 0 on this one, starting from `start`
/// when given: the tests share torch's generator, so a seeded network need not be the same
/// twice).
fn ranks(
    world: usize,
    how: Averaging,
    start: Option<&BTreeMap<String, Tensor>>,
) -> Vec<RankResult> {
    let port = free_port();
    let others: Vec<_> = (1..world)
        .map(|r| std::thread::spawn(move || rank_run(r, world, port, how, None)))
        .collect();
    let mut all = vec![rank_run(0, world, port, how, start)];
    all.extend(others.into_iter().map(|h| h.join().unwrap()));
    all
}

/// One rank of two: joins, takes rank 0's weights, trains STEPS steps on its half of the batch
/// (positions ≡ rank mod 2, as the sampler's split gives), returns (initial state, parameters).
fn rank(rank: usize, port: u16) -> (BTreeMap<String, Tensor>, BTreeMap<String, Tensor>) {
    let r = rank_run(rank, 2, port, DEFAULT_AVERAGING, None);
    (r.initial, r.params)
}

#[test]
fn two_ranks_take_the_step_of_one_process_accumulating_their_halves() {
    // Torch's generator is one for the process: tests drawing weights from it at once would
    // get each other's draws (the BatchNorm test saw its rank 0 weights change).
    let _one = serial();
    let port = free_port();
    let r1 = std::thread::spawn(move || rank(1, port));
    let (initial, rank0) = rank(0, port);
    let (initial1, rank1) = r1.join().unwrap();
    for (k, t) in &initial {
        assert!(
            t.equal(&initial1[k]),
            "{k}: rank 1 did not start from rank 0's weights"
        );
    }

    // One process: the same initial weights, the batch ordered as [rank 0's half, rank 1's
    // half], two micro-batches (each half's BatchNorm statistics, half the weight each).
    let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
    copy_state(&net, &initial);
    let mut sgd = sgd_of(&net);
    let (x, y) = batch();
    let order = Tensor::from_slice(&[0i64, 2, 4, 6, 1, 3, 5, 7]);
    let (x, y) = (x.index_select(0, &order), y.index_select(0, &order));
    let opts = StepOptions {
        accum_steps: 2,
        ..TRAIN
    };
    let method = MixupCrossEntropy { alpha: None };
    for step in 0..STEPS {
        let b = TrainBatch {
            images: &x,
            labels: &y,
            mixup_seed: step as u64,
        };
        assert!(train_step(&net, &mut sgd, None, &method, b, opts).applied);
    }
    let single = parameters(&net);
    let mut moved = 0.0f64;
    for (k, t) in &single {
        let d0 = (t - &rank0[k]).abs().max().double_value(&[]);
        let d1 = (&rank0[k] - &rank1[k]).abs().max().double_value(&[]);
        assert!(d0 < 1e-5, "{k}: 2 ranks and 1 process differ by {d0}");
        assert!(d1 < 1e-6, "{k}: the ranks differ by {d1}");
        moved = moved.max((t - &initial[k]).abs().max().double_value(&[]));
    }
    assert!(moved > 1e-3, "the steps moved the weights ({moved})");
    assert_eq!(single.len(), rank0.len());
}

/// Asserts that every parameter of `a` equals `b`'s bit for bit, and that the steps moved them.
fn assert_bit_identical(a: &RankResult, b: &RankResult, what: &str) {
    assert_eq!(a.params.len(), b.params.len());
    let mut moved = 0.0f64;
    for (k, t) in &a.params {
        let d = (t - &b.params[k]).abs().max().double_value(&[]);
        assert!(t.equal(&b.params[k]), "{what}: {k} differs by {d}");
        moved = moved.max((t - &a.initial[k]).abs().max().double_value(&[]));
    }
    assert!(
        moved > 1e-3,
        "{what}: the steps moved the weights ({moved})"
    );
}

#[test]
fn the_overlapped_all_reduce_gives_the_weights_of_the_one_after_the_backward_pass() {
    // Torch's generator is one for the process: tests drawing weights from it at once would
    // get each other's draws (the BatchNorm test saw its rank 0 weights change).
    let _one = serial();
    let after = Averaging {
        overlap: false,
        ..DEFAULT_AVERAGING
    };
    // Two ranks, the default buckets (overlapped: reverse order, 1 MiB then 25 MiB; after the
    // backward pass: parameter order, 25 MiB): each gradient is rank 0's + rank 1's in either
    // bucket, a sum that does not depend on the order, then halved — bit-identical.
    let overlapped = ranks(2, DEFAULT_AVERAGING, None);
    let plain = ranks(2, after, Some(&overlapped[0].initial));
    assert_bit_identical(&overlapped[0], &plain[0], "2 ranks");
    assert_bit_identical(&overlapped[1], &overlapped[0], "rank 1 against rank 0");
    // ResNet-32's 0.46 M parameters (1.9 MB) make two buckets, and both started from the
    // hooks, inside the backward pass; after the backward pass there are no hooks.
    let stats = overlapped[0].stats.expect("the overlap ran");
    assert_eq!((stats.buckets, stats.launched_in_backward), (2, 2));
    assert!(plain[0].stats.is_none());
    // Two micro-batches a step: the hooks are armed for the last one only (the first
    // backward pass's gradients are not yet the step's).
    let accumulated = |overlap| Averaging {
        overlap,
        accum_steps: 2,
        ..DEFAULT_AVERAGING
    };
    let overlapped = ranks(2, accumulated(true), None);
    let plain = ranks(2, accumulated(false), Some(&overlapped[0].initial));
    assert_bit_identical(&overlapped[0], &plain[0], "2 ranks, 2 micro-batches");
    assert_eq!(overlapped[0].stats.unwrap().launched_in_backward, 2);
}

#[test]
fn four_ranks_with_the_same_buckets_average_bit_identically() {
    // Torch's generator is one for the process: tests drawing weights from it at once would
    // get each other's draws (the BatchNorm test saw its rank 0 weights change).
    let _one = serial();
    // Bucket cap 0: every gradient in a bucket of its own on both paths (the same buckets,
    // started in the opposite order), so each element is summed over the four ranks in the
    // same order by Gloo's ring.
    let each_alone = |overlap| Averaging {
        overlap,
        bucket_bytes: 0,
        accum_steps: 1,
    };
    let overlapped = ranks(4, each_alone(true), None);
    let plain = ranks(4, each_alone(false), Some(&overlapped[0].initial));
    for r in 0..4 {
        assert_bit_identical(&overlapped[r], &plain[r], &format!("rank {r} of 4"));
    }
    let stats = overlapped[0].stats.unwrap();
    assert_eq!(stats.buckets, overlapped[0].trained);
    assert_eq!(stats.launched_in_backward, stats.buckets);
}

#[test]
fn a_rank_lost_during_an_overlapped_backward_pass_is_named() {
    // Torch's generator is one for the process: tests drawing weights from it at once would
    // get each other's draws (the BatchNorm test saw its rank 0 weights change).
    let _one = serial();
    let port = free_port();
    let timeout = Duration::from_secs(5);
    let (left_tx, left_rx) = std::sync::mpsc::channel();
    let rank1 = std::thread::spawn(move || {
        let mut replicas = Replicas::new(join(1, 2, port, timeout), Vec::new(), Device::Cpu);
        let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        replicas.broadcast_state(&net).unwrap();
        // Lost before the step: its connections close.
        replicas.leave();
        left_tx.send(()).unwrap();
    });
    let replicas = Replicas::new(join(0, 2, port, timeout), Vec::new(), Device::Cpu);
    let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
    replicas.broadcast_state(&net).unwrap();
    left_rx.recv().unwrap();
    rank1.join().unwrap();
    let mut sgd = sgd_of(&net);
    let (x, y) = batch();
    let b = TrainBatch {
        images: &x,
        labels: &y,
        mixup_seed: 0,
    };
    let method = MixupCrossEntropy { alpha: None };
    let sync: &dyn GradientSync = &replicas;
    let started = Instant::now();
    let e = train_step_synced(&net, &mut sgd, None, &method, b, TRAIN, Some(sync))
        .expect_err("a lost rank fails the step");
    let text = format!("{e:#}");
    assert!(
        text.starts_with("lost rank 1 of 2 while averaging gradients; rank 0 stops."),
        "{text}"
    );
    assert!(!text.contains("frame #"), "no C++ backtrace: {text}");
    // The buckets had started inside the backward pass: the failure is the overlap's.
    let stats = replicas.overlap_stats().expect("the overlap ran");
    assert_eq!(stats.launched_in_backward, stats.buckets);
    // The all-reduce's timeout and the roll call's wait (each at most 5 s here).
    assert!(started.elapsed() < Duration::from_secs(20));
}

// ---- whole runs: two ranks started by the engine itself (`gpus 2`), Gloo on CPU ----

use mislas::checkpoint;
use mislas::config::Config;
use mislas::engine;
use mislas::events::{Control, Event, Failure};
use mislas::wire::Job;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_mislas");

/// The runs share two cores and the free-port draw: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small CIFAR-10 in the binary release's format (`cifar-10-batches-bin`): 5 × 100 training
/// and 100 test images, 10 per class per file, each class a different mean brightness.
fn tiny_cifar10(root: &Path) {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut file = |name: &str| {
        let mut v = Vec::new();
        for i in 0..100u8 {
            let label = i % 10;
            v.push(label);
            v.extend((0..3072).map(|_| label * 20 + rng.random_range(0..60u8)));
        }
        std::fs::write(dir.join(name), v).unwrap();
    };
    for k in 1..=5 {
        file(&format!("data_batch_{k}.bin"));
    }
    file("test_batch.bin");
}

/// Stage 1 on the tiny CIFAR-10-LT (IF 0.1: 197 images, 7 batches of 32) on two CPU ranks.
fn two_ranks(data: &Path, name: &str, epochs: usize) -> Config {
    let p = Path::new(ROOT).join("presets/cifar10/cifar10_imb001_stage1_mixup.yaml");
    let mut c = Config::from_file(&p).expect("preset loads").config;
    c.name = name.into();
    c.data_path = data.display().to_string();
    c.imb_factor = Some(0.1);
    c.batch_size = 32;
    c.num_epochs = epochs;
    c.warmup_epochs = Some(1);
    c.device = "cpu".into();
    c.workers = 0;
    c.print_freq = 0;
    c.gpus = 2;
    c.dist_timeout = 20.0;
    c
}

fn with_worker_binary() {
    // SAFETY: set before any run starts, to the same value in every test.
    unsafe { std::env::set_var(mislas::distributed::launch::ENV_BIN, BIN) };
}

/// Runs a job to its end, sending Stop after the batch `stop_after` (epoch, batch) is reported.
fn run(cfg: Config, saved: &Path, stop_after: Option<(usize, usize)>) -> (PathBuf, Vec<Event>) {
    with_worker_binary();
    let h = engine::spawn(Job::Single(cfg), saved.to_path_buf());
    let mut dir = None;
    let mut events = Vec::new();
    for e in h.events.iter() {
        match &e {
            Event::StageStarted(s) => dir = Some(s.run_dir.clone()),
            Event::Batch(b) if Some((b.epoch, b.batch)) == stop_after => {
                h.controls.send(Control::Stop).unwrap()
            }
            Event::Failed(Failure { message, .. }) => panic!("engine error: {message}"),
            _ => {}
        }
        events.push(e);
    }
    h.join().unwrap();
    (dir.expect("the stage started"), events)
}

fn current(dir: &Path) -> PathBuf {
    dir.join("ckps/current.safetensors")
}

#[test]
fn two_ranks_stopped_and_resumed_end_with_the_uninterrupted_weights_and_evaluate_as_one() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let saved = tmp.path().join("saved");
    let cfg = two_ranks(tmp.path(), "dp_resume", 2);
    let (full, full_events) = run(cfg.clone(), &saved, None);

    let (stopped, events) = run(cfg.clone(), &saved, Some((1, 2)));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StageFinished(f) if f.stopped)));
    let at = checkpoint::load(&current(&stopped))
        .unwrap()
        .position
        .unwrap();
    assert_eq!(at.epoch, 1);
    assert!((3..7).contains(&at.batch), "stopped at batch {}", at.batch);
    let mut resumed = cfg.clone();
    resumed.resume = current(&stopped).display().to_string();
    let (again, _) = run(resumed, &saved, None);
    assert_eq!(
        again, stopped,
        "the resume continues the stopped run's folder"
    );

    let a = checkpoint::load(&current(&full)).unwrap();
    let b = checkpoint::load(&current(&stopped)).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, t) in &a.tensors {
        assert!(
            t.equal(&b.tensors[k]),
            "{k} differs from the uninterrupted run"
        );
    }
    let (ma, mb) = (
        mislas::run_dir::read_metrics(&full).unwrap(),
        mislas::run_dir::read_metrics(&stopped).unwrap(),
    );
    assert_eq!(ma.len(), 2);
    assert_eq!(ma[1].eval, mb[1].eval, "the same figures after the resume");
    assert_eq!(ma[1].train_loss, mb[1].train_loss);

    // Paused for longer than a collective takes, then resumed: the same run.
    with_worker_binary();
    let h = engine::spawn(Job::Single(cfg.clone()), saved.to_path_buf());
    let (mut paused_dir, mut pauses) = (None, 0);
    for e in h.events.iter() {
        match &e {
            Event::StageStarted(s) => paused_dir = Some(s.run_dir.clone()),
            Event::Batch(b) if (b.epoch, b.batch) == (0, 1) => {
                h.controls.send(Control::Pause).unwrap()
            }
            Event::Paused => {
                pauses += 1;
                std::thread::sleep(Duration::from_secs(2));
                h.controls.send(Control::Resume).unwrap();
            }
            Event::Failed(Failure { message, .. }) => panic!("engine error: {message}"),
            _ => {}
        }
    }
    h.join().unwrap();
    assert_eq!(pauses, 1);
    let c = checkpoint::load(&current(&paused_dir.unwrap())).unwrap();
    for (k, t) in &a.tensors {
        assert!(t.equal(&c.tensors[k]), "{k} differs after a pause");
    }

    // The two ranks' evaluation, gathered, is a one-process evaluation of the checkpoint.
    let mut one = cfg;
    one.gpus = 1;
    one.resume = current(&full).display().to_string();
    let report = mislas::engine::evaluate::evaluate_checkpoint(&one).unwrap();
    // (The epoch's report as the run sent it: metrics.jsonl's JSON may round a last digit.)
    let last = full_events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Epoch(r) => Some(r.eval.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(report, last, "2-rank and 1-process evaluations differ");
    assert_eq!(report.samples, 100);
}

/// Starts the mislas binary; its stdout and stderr go to files in `dir`.
fn start_binary(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits (at most 300 s) for the first run folder under `saved` to hold its current checkpoint.
fn first_checkpoint(saved: &Path) -> PathBuf {
    let started = Instant::now();
    loop {
        let found = std::fs::read_dir(saved)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| current(&e.unwrap().path()));
        if let Some(p) = found.filter(|p| p.is_file()) {
            return p;
        }
        assert!(
            started.elapsed().as_secs() < 300,
            "no checkpoint after 300 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of rank 1: the child process rank 0 started.
fn worker_of(rank0: &std::process::Child) -> String {
    let children = Command::new("pgrep")
        .args(["-P", &rank0.id().to_string()])
        .output()
        .unwrap();
    let pids = String::from_utf8(children.stdout).unwrap();
    pids.lines()
        .next()
        .expect("rank 1 runs as a child process")
        .trim()
        .to_owned()
}

fn write_config(cfg: &Config, path: &Path) {
    std::fs::write(path, cfg.to_yaml()).unwrap();
}

#[test]
fn a_killed_rank_ends_every_rank_with_its_name_and_the_checkpoint_resumes() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let saved = tmp.path().join("saved");
    let mut cfg = two_ranks(tmp.path(), "dp_kill", 1000);
    cfg.dist_timeout = 15.0;
    let yaml = tmp.path().join("cfg.yaml");
    write_config(&cfg, &yaml);
    let saved_arg = saved.display().to_string();
    let yaml_arg = yaml.display().to_string();
    let mut rank0 = start_binary(
        tmp.path(),
        &["--saved", &saved_arg, "train", "--cfg", &yaml_arg],
    );
    // Wait for the first checkpoint (end of epoch 0), then a little training of epoch 1.
    let ckpt = first_checkpoint(&saved);
    std::thread::sleep(Duration::from_millis(1500));
    let worker = worker_of(&rank0);
    let killed = Instant::now();
    Command::new("kill").args(["-9", &worker]).status().unwrap();
    let status = rank0.wait().unwrap();
    let waited = killed.elapsed().as_secs_f64();
    let stderr = std::fs::read_to_string(tmp.path().join("stderr.txt")).unwrap();
    assert!(!status.success());
    assert!(
        waited < 15.0 + 20.0,
        "rank 0 ended {waited:.0} s after the kill"
    );
    assert!(stderr.contains("lost rank 1 of 2"), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "one message: {stderr}");
    // The last checkpoint is whole, and a resume on two ranks goes on from it.
    let at = checkpoint::load(&ckpt).unwrap().position.unwrap();
    let mut resumed = cfg;
    resumed.resume = ckpt.display().to_string();
    resumed.num_epochs = at.epoch + 1;
    let (dir, _) = run(resumed, &saved, None);
    assert_eq!(current(&dir), ckpt);
    assert_eq!(
        checkpoint::load(&ckpt).unwrap().position.unwrap().epoch,
        at.epoch + 1
    );
}

/// Rank 0 writes each worker's job file to the temporary folder; the worker removes it once
/// read, so that none is left there when rank 0 dies (kill -9) before it could remove it.
#[test]
fn a_workers_job_file_is_gone_once_the_worker_has_read_it() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let temp = tmp.path().join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    let saved = tmp.path().join("saved");
    let cfg = two_ranks(tmp.path(), "dp_jobfile", 2);
    let yaml = tmp.path().join("cfg.yaml");
    write_config(&cfg, &yaml);
    let job_files = || -> Vec<String> {
        std::fs::read_dir(&temp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("mislas-job-"))
            .collect()
    };
    let mut rank0 = Command::new(BIN)
        .args(["--saved", &saved.display().to_string(), "train", "--cfg"])
        .arg(&yaml)
        .env("TMPDIR", &temp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    // Epoch 0's checkpoint: both ranks train, the worker read its job long ago.
    first_checkpoint(&saved);
    let left = job_files();
    // SAFETY: a signal to the process this test started.
    unsafe { libc::kill(rank0.id() as libc::pid_t, libc::SIGKILL) };
    rank0.wait().unwrap();
    assert!(
        left.is_empty(),
        "job files left while the run trains: {left:?}"
    );
    assert!(
        job_files().is_empty(),
        "after rank 0's kill -9: {:?}",
        job_files()
    );
}

#[test]
fn bad_data_parallel_settings_are_clear_errors_without_a_hang() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    with_worker_binary();
    let fails = |cfg: Config| -> String {
        let h = engine::spawn(Job::Single(cfg), tmp.path().join("saved"));
        let last = h.events.iter().last();
        h.join().unwrap();
        match last {
            Some(Event::Failed(f)) => f.message,
            other => panic!("expected a failure, got {other:?}"),
        }
    };
    // A global batch that does not split over the ranks.
    let mut c = two_ranks(tmp.path(), "dp_bad", 1);
    c.gpus = 3;
    let e = fails(c);
    assert!(e.contains("batch_size 32") && e.contains("3 ranks"), "{e}");
    // More CPU ranks than this machine has cores: refused before any rank starts.
    let mut c = two_ranks(tmp.path(), "dp_cores", 1);
    c.gpus = std::thread::available_parallelism().map_or(1, |n| n.get()) * 2 + 2;
    c.batch_size = c.gpus * 4;
    let e = fails(c);
    assert!(
        e.contains("CPU processes on a machine with") && e.contains("use gpus"),
        "{e}"
    );
    // The rendezvous port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = two_ranks(tmp.path(), "dp_port", 1);
    c.dist_url = format!("tcp://127.0.0.1:{}", taken.local_addr().unwrap().port());
    let started = Instant::now();
    let e = fails(c);
    assert!(e.contains("could not join the rendezvous"), "{e}");
    assert!(e.to_lowercase().contains("address already in use"), "{e}");
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn ranks_started_with_other_settings_say_which_and_end() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let mut cfg = two_ranks(tmp.path(), "dp_mismatch", 1);
    cfg.gpus = 1;
    cfg.dist_timeout = 20.0;
    let (a, b) = (tmp.path().join("a.yaml"), tmp.path().join("b.yaml"));
    write_config(&cfg, &a);
    cfg.lr = 0.2;
    write_config(&cfg, &b);
    let port = free_port().to_string();
    // torchrun's environment: each process is one rank.
    let rank = |r: &str, world: &str, yaml: &Path, out: &str| {
        let dir = tmp.path().join(out);
        std::fs::create_dir_all(&dir).unwrap();
        let saved = tmp.path().join("saved").display().to_string();
        let mut c = Command::new(BIN);
        c.args([
            "--saved",
            &saved,
            "train",
            "--cfg",
            &yaml.display().to_string(),
        ])
        .env("RANK", r)
        .env("WORLD_SIZE", world)
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", &port)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap());
        (c.spawn().unwrap(), dir)
    };
    let started = Instant::now();
    let (mut p0, d0) = rank("0", "2", &a, "r0");
    let (mut p1, d1) = rank("1", "2", &b, "r1");
    assert!(!p0.wait().unwrap().success() && !p1.wait().unwrap().success());
    assert!(
        started.elapsed().as_secs() < 20,
        "no waiting for the timeout"
    );
    for d in [&d0, &d1] {
        let e = std::fs::read_to_string(d.join("stderr.txt")).unwrap();
        assert!(e.contains("lr is 0.1 on rank 0 and 0.2 on rank 1"), "{e}");
    }

    let (mut p0, d0) = rank("0", "2", &a, "w0");
    let (mut p1, d1) = rank("1", "3", &a, "w1");
    assert!(!p1.wait().unwrap().success());
    assert!(!p0.wait().unwrap().success());
    for d in [&d0, &d1] {
        let e = std::fs::read_to_string(d.join("stderr.txt")).unwrap();
        assert!(
            e.contains("rank 0 was started for a world of 2 ranks and rank 1 for 3"),
            "{e}"
        );
    }
    assert!(!tmp.path().join("saved").exists(), "no run folder was made");
}

/// Two tasks as `srun -n 2` starts them (no torchrun environment, SLURM_* set as srun sets
/// them, the port derived from SLURM_JOB_ID): they meet, train together on Gloo and write one
/// run folder.
#[test]
fn two_tasks_started_as_srun_would_rank_from_slurm_and_write_one_run_folder() {
    use mislas::distributed::srun;
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let mut cfg = two_ranks(tmp.path(), "dp_srun", 1);
    cfg.gpus = 1;
    let yaml = tmp.path().join("cfg.yaml");
    write_config(&cfg, &yaml);
    // A job id whose port (15000 + id mod 10000) is free here.
    let job_id = (0..srun::PORT_SPAN)
        .map(|k| 40_000 + (k + std::process::id() as u64) % srun::PORT_SPAN)
        .find(|id| std::net::TcpListener::bind(("127.0.0.1", srun::port_of_job(*id))).is_ok())
        .unwrap();
    let saved = tmp.path().join("saved").display().to_string();
    let tasks: Vec<_> = (0..2)
        .map(|r| {
            let dir = tmp.path().join(format!("task{r}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut c = Command::new(BIN);
            c.args([
                "--saved",
                &saved,
                "train",
                "--cfg",
                &yaml.display().to_string(),
            ])
            .env_remove("RANK")
            .env_remove("WORLD_SIZE")
            .env_remove("MASTER_ADDR")
            .env_remove("MASTER_PORT")
            .env("SLURM_JOB_ID", job_id.to_string())
            .env("SLURM_PROCID", r.to_string())
            .env("SLURM_LOCALID", r.to_string())
            .env("SLURM_NTASKS", "2")
            .env("SLURM_NTASKS_PER_NODE", "2")
            .env("SLURM_JOB_NODELIST", "localhost")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap());
            (c.spawn().unwrap(), dir)
        })
        .collect();
    for (mut p, dir) in tasks {
        let ok = p.wait().unwrap().success();
        let err = std::fs::read_to_string(dir.join("stderr.txt")).unwrap();
        assert!(ok, "{}: {err}", dir.display());
    }
    let folders: Vec<PathBuf> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert_eq!(mislas::run_dir::read_metrics(&folders[0]).unwrap().len(), 1);
    let out = std::fs::read_to_string(tmp.path().join("task0/stdout.txt")).unwrap();
    assert!(out.contains("data parallel over 2 ranks"), "{out}");
}

#[test]
fn a_pipeline_on_two_ranks_runs_stage_2_on_stage_1s_best_checkpoint() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let stage1 = two_ranks(tmp.path(), "dp_pipe1", 1);
    let p = Path::new(ROOT).join("presets/cifar10/cifar10_imb001_stage2_mislas.yaml");
    let mut stage2 = Config::from_file(&p).expect("preset loads").config;
    stage2.data_path = stage1.data_path.clone();
    stage2.name = "dp_pipe2".into();
    stage2.imb_factor = Some(0.1);
    stage2.batch_size = 32;
    stage2.num_epochs = 1;
    // After one stage-1 epoch on 197 images BatchNorm's running statistics are far from the
    // features' (the test NLL is in the thousands) and a frozen eval-mode backbone makes stage 2
    // diverge, on one rank as on two; shift learning normalises with the batch's statistics
    // (and puts the broadcast of BatchNorm buffers into stage 2).
    stage2.shift_bn = true;
    stage2.device = "cpu".into();
    stage2.workers = 0;
    stage2.gpus = 2;
    stage2.dist_timeout = 20.0;
    with_worker_binary();
    let mut rank0_statistics = stage2.clone();
    let stage2 = vec![stage2];
    let h = engine::spawn(Job::Pipeline { stage1, stage2 }, tmp.path().join("saved"));
    let events: Vec<Event> = h.events.iter().collect();
    h.join().unwrap();
    if let Some(Event::Failed(f)) = events.last() {
        panic!("{}", f.message);
    }
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageFinished(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 2, "both stages ran");
    assert!(finished[1].best_checkpoint.is_some());
    // Stage 2 (shift learning, `sync_bn_stats` by default) averages BatchNorm statistics over
    // the ranks; stage 1 keeps DDP's broadcast.
    let averaged: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Log(l) if l.starts_with("=> data parallel over 2 ranks") => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(averaged.len(), 2, "{averaged:?}");
    assert!(!averaged[0].contains("BatchNorm"), "{}", averaged[0]);
    assert!(
        averaged[1].contains("BatchNorm statistics averaged over the ranks"),
        "{}",
        averaged[1]
    );

    // The same stage 2 with rank 0's statistics (DDP's broadcast): the classifier and LWS
    // scales train bit for bit alike (train-mode BatchNorm does not read its running
    // statistics), the running statistics differ.
    rank0_statistics.sync_bn_stats = false;
    rank0_statistics.name = "dp_pipe2_rank0".into();
    rank0_statistics.resume = finished[0]
        .best_checkpoint
        .as_ref()
        .unwrap()
        .display()
        .to_string();
    let (dir, _) = run(rank0_statistics, &tmp.path().join("saved"), None);
    let a = checkpoint::load(&current(&finished[1].run_dir)).unwrap();
    let b = checkpoint::load(&current(&dir)).unwrap();
    let mut differ = 0;
    for (k, t) in &a.tensors {
        if k.contains("running_") {
            differ += usize::from(!t.equal(&b.tensors[k]));
        } else {
            assert!(t.equal(&b.tensors[k]), "{k} differs");
        }
    }
    assert!(differ > 0, "averaged and rank 0's statistics are the same");
}

#[test]
fn a_frozen_rank_ends_the_run_within_its_timeout() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let saved = tmp.path().join("saved");
    let mut cfg = two_ranks(tmp.path(), "dp_frozen", 1000);
    cfg.dist_timeout = 8.0;
    let yaml = tmp.path().join("cfg.yaml");
    write_config(&cfg, &yaml);
    let (saved_arg, yaml_arg) = (saved.display().to_string(), yaml.display().to_string());
    let mut rank0 = start_binary(
        tmp.path(),
        &["--saved", &saved_arg, "train", "--cfg", &yaml_arg],
    );
    first_checkpoint(&saved);
    let worker = worker_of(&rank0);
    let frozen = Instant::now();
    Command::new("kill")
        .args(["-STOP", &worker])
        .status()
        .unwrap();
    let status = rank0.wait().unwrap();
    let waited = frozen.elapsed().as_secs_f64();
    // dist_timeout, the roll call (at most 10 s), the frozen worker's grace (10 s).
    assert!(
        waited < 8.0 + 10.0 + 10.0 + 5.0,
        "rank 0 ended {waited:.0} s after the freeze"
    );
    assert!(!status.success());
    let stderr = std::fs::read_to_string(tmp.path().join("stderr.txt")).unwrap();
    assert!(stderr.contains("lost rank 1 of 2"), "{stderr}");
    assert!(!stderr.contains("frame #"), "no C++ backtrace: {stderr}");
    let gone = Command::new("kill").args(["-0", &worker]).status().unwrap();
    assert!(!gone.success(), "the frozen worker was killed");
}

#[test]
fn two_machines_with_a_node_rank_each_train_together() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    tiny_cifar10(tmp.path());
    let mut cfg = two_ranks(tmp.path(), "dp_nodes", 1);
    cfg.gpus = 1;
    cfg.world_size = 2;
    cfg.dist_url = format!("tcp://127.0.0.1:{}", free_port());
    let mut nodes = Vec::new();
    for node in 0..2 {
        cfg.rank = node;
        let dir = tmp.path().join(format!("node{node}"));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("cfg.yaml");
        write_config(&cfg, &yaml);
        let saved = dir.join("saved").display().to_string();
        let yaml = yaml.display().to_string();
        nodes.push((
            start_binary(&dir, &["--saved", &saved, "train", "--cfg", &yaml]),
            dir,
        ));
    }
    for (mut p, dir) in nodes {
        let ok = p.wait().unwrap().success();
        let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap();
        assert!(ok, "{}: {stderr}", dir.display());
    }
    // Only node rank 0 (global rank 0) wrote a run folder.
    assert!(tmp.path().join("node0/saved").is_dir());
    assert!(!tmp.path().join("node1/saved").exists());
}

// ---- stage 2 on two ranks: BatchNorm statistics averaged over the ranks (`sync_bn_stats`) ----

/// What a stage-2 rank ends with: its state before the first step (rank 0's), its BatchNorm
/// buffers and its trained parameters.
type Stage2Rank = (
    BTreeMap<String, Tensor>,
    BTreeMap<String, Tensor>,
    BTreeMap<String, Tensor>,
);

/// One rank of stage 2 with shift learning, as the trainer runs it with `sync_bn_stats`: the
/// backbone frozen in train mode (BatchNorm follows the batches, no buffer broadcast), the
/// classifier trained STEPS steps on this rank's half of the batch with averaged gradients;
/// then, with `average`, the running statistics averaged over the ranks.
fn stage2_rank(rank: usize, port: u16, average: bool) -> Stage2Rank {
    let group = ProcessGroup::join(
        "127.0.0.1",
        port,
        rank,
        2,
        Backend::Gloo,
        Duration::from_secs(60),
        |_| Ok(()),
    )
    .expect("joins the group");
    let replicas = Replicas::new(group, Vec::new(), Device::Cpu);
    // Torch's generator is the threads' one: seeded and drawn under a lock, rank 0's weights
    // are the same in every call.
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let net = {
        let _drawing = INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(rank as i64 + 20);
        Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap()
    };
    net.freeze_backbone();
    replicas.broadcast_state(&net).unwrap();
    let initial = state(&net);
    let mut sgd = Sgd::new(vec![net.part_parameters(Part::Classifier)], 0.1, 0.9, 5e-4);
    let (x, y) = batch();
    let mine = Tensor::from_slice(&[0i64, 2, 4, 6]) + rank as i64;
    let (x, y) = (x.index_select(0, &mine), y.index_select(0, &mine));
    let method = MixupCrossEntropy { alpha: None };
    for step in 0..STEPS {
        let b = TrainBatch {
            images: &x,
            labels: &y,
            mixup_seed: step as u64,
        };
        let sync: &dyn GradientSync = &replicas;
        let out = train_step_synced(&net, &mut sgd, None, &method, b, TRAIN, Some(sync)).unwrap();
        assert!(out.applied);
    }
    if average {
        replicas.average_batchnorm_statistics(&net).unwrap();
    }
    let buffers = state(&net)
        .into_iter()
        .filter(|(k, _)| k.contains("running_") || k.contains("num_batches_tracked"))
        .collect();
    (initial, buffers, parameters(&net))
}

fn stage2_two_ranks(average: bool) -> (Stage2Rank, Stage2Rank) {
    let port = free_port();
    let r1 = std::thread::spawn(move || stage2_rank(1, port, average));
    let r0 = stage2_rank(0, port, average);
    (r0, r1.join().unwrap())
}

fn largest_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// The stem's BatchNorm statistics after STEPS updates, by PyTorch's formula from the
/// convolution (weights `conv`) of each half of the batch: with momentum 0.1 from (0, 1),
/// r = 0.9^S·r0 + (1 − 0.9^S)·s, s the mean over the halves of each half's batch mean (the
/// whole batch's mean, checked here) and of each half's unbiased variance. Returns the
/// averaged running mean and variance, and rank 0's running mean alone.
fn stem_statistics(conv: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (x, _) = batch();
    let half = |h: i64| {
        let z = x
            .index_select(0, &(Tensor::from_slice(&[0i64, 2, 4, 6]) + h))
            .conv2d(conv, None::<Tensor>, [1], [1], [1], 1)
            .to_kind(tch::Kind::Double);
        let dims = [0i64, 2, 3];
        (
            z.mean_dim(dims.as_slice(), false, tch::Kind::Double),
            z.var_dim(dims.as_slice(), true, false),
        )
    };
    let ((m0, v0), (m1, v1)) = (half(0), half(1));
    let keep = 0.9f64.powi(STEPS as i32);
    let mean = (&m0 + &m1) * (0.5 * (1.0 - keep));
    let var = (&v0 + &v1) * (0.5 * (1.0 - keep)) + keep;
    let whole = x
        .conv2d(conv, None::<Tensor>, [1], [1], [1], 1)
        .to_kind(tch::Kind::Double)
        .mean_dim([0i64, 2, 3].as_slice(), false, tch::Kind::Double);
    assert!(largest_difference(&mean, &(whole * (1.0 - keep))) < 1e-9);
    (mean, var, m0 * (1.0 - keep))
}

#[test]
fn stage_2_on_two_ranks_averages_batchnorm_statistics_and_keeps_the_weights_equal() {
    let _one = serial();
    let ((initial, kept0, w_kept0), (_, kept1, _)) = stage2_two_ranks(false);
    let ((_, avg0, w0), (_, avg1, w1)) = stage2_two_ranks(true);

    // Averaged: every rank holds the mean over the ranks of what each rank had (the buffers
    // without averaging; the training does not read them, so both runs train alike).
    let mut apart = 0.0f64;
    for (k, a) in &avg0 {
        assert!(a.equal(&avg1[k]), "{k}: the ranks' statistics differ");
        if k.ends_with("num_batches_tracked") {
            assert_eq!(a.int64_value(&[]), STEPS as i64, "{k}");
            assert!(a.equal(&kept0[k]) && a.equal(&kept1[k]), "{k} was averaged");
            continue;
        }
        let mean = (&kept0[k] + &kept1[k]) / 2.0;
        let d = largest_difference(a, &mean);
        assert!(d < 1e-6, "{k}: {d} from the mean over the ranks");
        apart = apart.max(largest_difference(&kept0[k], &kept1[k]));
    }
    assert!(apart > 1e-3, "the ranks' own statistics differ ({apart})");

    let (mean, var, mean0) = stem_statistics(&initial["model.conv1.weight"]);
    let d = largest_difference(&avg0["model.bn1.running_mean"], &mean);
    assert!(d < 1e-5, "stem running_mean {d} from the whole batch's");
    let d = largest_difference(&avg0["model.bn1.running_var"], &var);
    assert!(
        d < 1e-4,
        "stem running_var {d} from the mean of the halves'"
    );
    let d = largest_difference(&kept0["model.bn1.running_mean"], &mean0);
    assert!(d < 1e-5, "rank 0 alone: {d} from its half's mean");

    // The stage's weights are equal on the ranks, and averaging changed none of them.
    for (k, t) in &w0 {
        assert!(t.equal(&w1[k]), "{k}: the ranks' weights differ");
        assert!(t.equal(&w_kept0[k]), "{k}: averaging changed the training");
    }
    assert!(!w0.is_empty());
}
