//! Starting the other ranks of this machine: the reference's `torch.multiprocessing.spawn` of
//! one process per device, here as processes of this same binary (`mislas rank-worker`) with a
//! `torchrun`-style environment, then joining the process group.
use super::c10d::{Backend, ProcessGroup};
use super::machine::machine_cuda_devices;
use super::{Replicas, Topology};
use super::{ENV_LOCAL_RANK, ENV_MASTER_ADDR, ENV_MASTER_PORT, ENV_RANK, ENV_WORLD_SIZE};
use crate::events::{Failure, FailureKind};
use crate::wire::{Classify, Job};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand a local rank runs: `mislas --saved DIR rank-worker --job FILE`.
pub const WORKER_COMMAND: &str = "rank-worker";

/// The binary that runs the other local ranks, when it is not this process's own (a program
/// that embeds the engine, or a test).
pub const ENV_BIN: &str = "MISLAS_BIN";

/// A local rank this process started.
#[derive(Debug)]
pub struct Worker {
    rank: usize,
    child: Child,
    /// Its standard error (what it says when it fails); removed when it succeeds.
    pub log: PathBuf,
    /// The job file it was started with; removed when it ends.
    job: PathBuf,
}

impl Worker {
    /// Waits for the process, at most `grace` (then it is killed); `Some` text when it failed
    /// or had to be killed (its exit and last log lines).
    pub fn wait(&mut self, grace: Duration) -> Option<String> {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < grace => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) | Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let _ = std::fs::remove_file(&self.job);
                    return Some(format!(
                        "rank {} had not ended {:.0} s after this rank, and was killed; its \
                         output is in {}",
                        self.rank,
                        grace.as_secs_f64(),
                        self.log.display()
                    ));
                }
            }
        };
        let _ = std::fs::remove_file(&self.job);
        // 130: the terminal's SIGINT reached the worker too, and the run stopped as agreed.
        if status.success() || status.code() == Some(130) {
            let _ = std::fs::remove_file(&self.log);
            return None;
        }
        Some(self.ended(status))
    }

    /// `Some` text when the process has already ended (before it should have).
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        Some(format!(
            "rank {} exited early: {}",
            self.rank,
            self.ended(status)
        ))
    }

    fn ended(&self, status: std::process::ExitStatus) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last: Vec<&str> = text.lines().rev().take(3).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        format!(
            "rank {} ended with {status}; its output is in {}{}",
            self.rank,
            self.log.display(),
            if last.is_empty() {
                String::new()
            } else {
                format!(": {}", last.join(" / "))
            }
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A worker outliving a failed start would wait for its timeout: end it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.job);
    }
}

/// The ranks of `job` seen from this process: [`Replicas::single`] for one process; else,
/// when this process launches its machine's ranks, the other local ranks are started (each
/// told the job through a YAML file and its rank through the environment), then every rank
/// joins the process group and checks that all ranks run the same job. Every configuration of
/// `job` gets this rank's device (`cuda:LOCAL_RANK`, or `cpu`).
///
/// # Errors
/// [`FailureKind::Config`]: an unusable configuration (checked once, before any process
/// starts), the build has no c10d, more processes than CUDA devices.
/// [`FailureKind::LostRank`]: a worker that cannot start or exits before the rendezvous, the
/// rendezvous itself (port in use, a rank that did not arrive within `dist_timeout`), ranks
/// whose jobs or world sizes differ.
pub fn start(job: &mut Job, saved_root: &Path) -> Result<Replicas, Failure> {
    let env = |k: &str| std::env::var(k).ok();
    let cuda = machine_cuda_devices();
    let topology = Topology::of(job.first_config(), &env, cuda).kind(FailureKind::Config)?;
    let Some(mut topo) = topology else {
        return Ok(Replicas::single());
    };
    check_before_launch(job, &topo, cuda).kind(FailureKind::Config)?;
    let text = comparable_job(job).kind(FailureKind::Internal)?;
    let mut workers = Vec::new();
    if topo.launches_local_ranks {
        if topo.master_port == 0 {
            topo.master_port = free_port().kind(FailureKind::LostRank)?;
        }
        for local in 1..topo.local_size {
            let worker = spawn_worker(&topo, local, &text, saved_root);
            workers.push(worker.kind(FailureKind::LostRank)?);
        }
    }
    let joined = ProcessGroup::join(
        &topo.master_addr,
        topo.master_port,
        topo.rank,
        topo.world_size,
        topo.backend,
        topo.timeout,
        |group| same_job_everywhere(group, &text, &mut workers),
    );
    let group = joined
        .with_context(|| {
            format!(
                "rank {} of {} could not join the rendezvous at {}:{} ({})",
                topo.rank, topo.world_size, topo.master_addr, topo.master_port, topo.backend
            )
        })
        .kind(FailureKind::LostRank)?;
    let scratch = match topo.backend {
        Backend::Gloo => tch::Device::Cpu,
        Backend::Nccl => tch::Device::Cuda(topo.local_rank),
    };
    job.set_device(&topo.device_spec());
    if topo.backend == Backend::Gloo {
        // CPU ranks share this machine's cores: split libtorch's threads between them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tch::set_num_threads((cores / topo.local_size).max(1) as i32);
    }
    let overlap = job.first_config().ddp_overlap;
    Ok(Replicas::new(group, workers, scratch).with_overlap(overlap))
}

/// What can be known before any process starts: each stage's configuration is usable (as
/// `mislas config` checks it), c10d is built in, and CUDA ranks have their devices.
fn check_before_launch(job: &Job, topo: &Topology, cuda: usize) -> Result<()> {
    super::c10d::support().map_err(anyhow::Error::msg)?;
    if topo.backend == Backend::Nccl && topo.local_size > cuda {
        bail!(
            "gpus: {} processes need as many CUDA devices, and this machine has {cuda}",
            topo.local_size
        );
    }
    for cfg in job.configs() {
        let mut probe = cfg.clone();
        // Stage 2's checkpoint is stage 1's, not written yet.
        probe.resume.clear();
        probe.ensure_valid()?;
    }
    // Only for the ranks mislas starts itself: ranks that torchrun or srun started are
    // already running, and one of them refusing would leave the others waiting for it until
    // `dist_timeout`.
    if topo.backend == Backend::Gloo && topo.launches_local_ranks {
        let cores = super::machine::cpu_cores();
        if let Some(why) = super::machine::cpu_ranks_issue(topo.local_size, cores) {
            bail!("gpus: {why}");
        }
    }
    Ok(())
}

/// The job as every rank must agree on it: its YAML, with the node rank (`rank`, which
/// differs between machines by design) left out.
fn comparable_job(job: &Job) -> Result<String> {
    let mut same = job.clone();
    same.for_each_config(|c| c.rank = -1);
    serde_yaml::to_string(&same).context("cannot write the job for the other ranks")
}

/// Every rank publishes its world size and job in the store before the backend connects; rank
/// 0 checks every other rank's against its own, the others check rank 0's. Rank 0 serves the
/// store, so it waits (10 s at most) until the others have read its entry before it returns,
/// a mismatch included: each rank then says what differs.
fn same_job_everywhere(group: &ProcessGroup, job: &str, workers: &mut [Worker]) -> Result<()> {
    let (rank, world) = (group.rank(), group.world_size());
    let key = |r: usize| format!("mislas/job/{r}");
    let read = |r: usize| format!("mislas/job-read/{r}");
    group.store_set(&key(rank), format!("{world}\n{job}").as_bytes())?;
    if rank != 0 {
        let first =
            await_key(group, &key(0), group.timeout(), workers).context("rank 0 did not arrive")?;
        group.store_set(&read(rank), b"1")?;
        return compare_jobs(&String::from_utf8_lossy(&first), 0, world, job, rank);
    }
    let mut verdict = Ok(());
    for r in 1..world {
        let theirs = await_key(group, &key(r), group.timeout(), workers)
            .with_context(|| format!("rank {r} did not arrive"))?;
        verdict = verdict.and(compare_jobs(
            &String::from_utf8_lossy(&theirs),
            r,
            world,
            job,
            0,
        ));
    }
    let wait = group.timeout().min(Duration::from_secs(10));
    for r in 1..world {
        let _ = await_key(group, &read(r), wait, workers);
    }
    verdict
}

/// Waits at most `wait` for `key` in the store, looking every 100 ms whether a local worker
/// exited meanwhile (it would never arrive).
fn await_key(
    group: &ProcessGroup,
    key: &str,
    wait: Duration,
    workers: &mut [Worker],
) -> Result<Vec<u8>> {
    let started = Instant::now();
    while !group.store_has(key)? {
        if let Some(gone) = workers.iter_mut().find_map(Worker::exited) {
            bail!("{gone}");
        }
        if started.elapsed() >= wait {
            bail!("nothing within dist_timeout ({} s)", wait.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    group.store_get(key, wait)
}

/// Compares rank `r`'s published `theirs` (`world\njob`) with this rank's (`me`).
fn compare_jobs(theirs: &str, r: usize, world: usize, job: &str, me: usize) -> Result<()> {
    let (their_world, their_job) = theirs.split_once('\n').unwrap_or(("?", ""));
    if their_world != world.to_string() {
        let (w0, w1, other) = match r {
            0 => (their_world.to_owned(), world.to_string(), me),
            _ => (world.to_string(), their_world.to_owned(), r),
        };
        bail!(
            "rank 0 was started for a world of {w0} ranks and rank {other} for {w1}: start every \
             rank with the same WORLD_SIZE (or gpus × world_size)"
        );
    }
    if their_job != job {
        let (first, other, other_rank) = match r {
            0 => (their_job, job, me),
            _ => (job, their_job, r),
        };
        bail!(
            "rank {other_rank} runs another job than rank 0: {}. Every rank must be started \
             with the same configuration",
            job_difference(first, other, other_rank)
        );
    }
    Ok(())
}

/// Which keys differ between rank 0's job (YAML) and this one, in words.
fn job_difference(first: &str, other: &str, other_rank: usize) -> String {
    let (Ok(first), Ok(other)) = (
        serde_yaml::from_str::<Job>(first),
        serde_yaml::from_str::<Job>(other),
    ) else {
        return "a job could not be read".to_owned();
    };
    let changes = other.first_config().changed_from(first.first_config());
    if changes.is_empty() {
        return "their stages differ".to_owned();
    }
    changes
        .iter()
        .map(|(k, a, b)| format!("{k} is {a} on rank 0 and {b} on rank {other_rank}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A port on 127.0.0.1 that is free now (the OS picks it; rank 0 binds it again at once).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

fn spawn_worker(topo: &Topology, local: usize, job: &str, saved_root: &Path) -> Result<Worker> {
    let rank = topo.rank + local;
    let dir = std::env::temp_dir();
    let stamp = format!("{}-{}", std::process::id(), topo.master_port);
    let job_file = dir.join(format!("mislas-job-{stamp}-rank{rank}.yaml"));
    std::fs::write(&job_file, job)
        .with_context(|| format!("cannot write {}", job_file.display()))?;
    let log = dir.join(format!("mislas-rank{rank}-{stamp}.log"));
    let err =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let exe = match std::env::var_os(ENV_BIN) {
        Some(bin) => PathBuf::from(bin),
        None => std::env::current_exe().context("cannot find the mislas binary to start ranks")?,
    };
    let child = Command::new(&exe)
        .arg("--saved")
        .arg(saved_root)
        .arg(WORKER_COMMAND)
        .arg("--job")
        .arg(&job_file)
        .env(ENV_RANK, rank.to_string())
        .env(ENV_WORLD_SIZE, topo.world_size.to_string())
        .env(ENV_LOCAL_RANK, local.to_string())
        .env(super::ENV_LOCAL_WORLD_SIZE, topo.local_size.to_string())
        .env(ENV_MASTER_ADDR, &topo.master_addr)
        .env(ENV_MASTER_PORT, topo.master_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start rank {rank} ({})", exe.display()))?;
    Ok(Worker {
        rank,
        child,
        log,
        job: job_file,
    })
}
