//! The training engine: runs stage 1, stage 2 or both on its own thread, publishes [`Event`]s
//! and obeys [`Control`](crate::events::Control)s between batches. It knows nothing of any front end.
//!
//! ```text
//! spawn(Job) ── trainer thread ──▶ run_job ──▶ distributed::launch::start  other ranks, process group
//!                                    │                                (none for one process)
//!                                    ├──────▶ trainer::run_stage      per stage, on this rank
//!                                    │  setup::prepare      config, device, checkpoint, data, network
//!                                    │  recipe::for_config  what the stage trains (mixup | mislas | crt | lws | wb)
//!                                    │  Trainer::fit        epochs: train_epoch → evaluate_epoch → end_epoch
//!                                    │                      batches: step::train_step (the recipe's Objective)
//!   Event  ◀── Link::emit ───────────┘  (log lines written by the same `Event::log_lines`)
//!   Control ──▶ Link::check (between batches, also during evaluation; with several ranks,
//!               rank 0 reads them and every rank agrees: distributed::Replicas::agree)
//! ```
//!
//! The last event of a thread is [`Event::Finished`] or [`Event::Failed`]; a panic of the
//! trainer thread (a libtorch error) becomes an [`Event::Failed`] with its message.
pub mod evaluate;
pub mod recipe;
pub mod setup;
pub mod step;
pub mod trainer;

use crate::config::{parse_device_spec, Config, DeviceSpec};
use crate::distributed::Replicas;
use crate::events::{DeviceInfo, Event, Failure, FailureKind};
use crate::wire::{Classify, Job, Link, RunHandle};
use anyhow::{bail, Result};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::Device;

/// Starts the trainer thread on `job`; run folders go under `saved_root`.
///
/// The thread ends with [`Event::Finished`] or [`Event::Failed`] as its last event, a panic
/// included.
pub fn spawn(job: Job, saved_root: PathBuf) -> RunHandle {
    let (etx, erx) = crossbeam_channel::unbounded();
    let (ctx, crx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name(TRAINER_THREAD.into())
        .spawn(move || {
            let link = Link {
                events: etx,
                controls: crx,
            };
            let device = job.first_config().device.clone();
            let result = catch_unwind(AssertUnwindSafe(|| run_job(job, &saved_root, &link)))
                .unwrap_or_else(|panic| {
                    Err(Failure::new(
                        FailureKind::Internal,
                        format!(
                            "the trainer stopped on an error on device {device}: {}",
                            panic_text(panic.as_ref())
                        ),
                    ))
                });
            link.emit(match result {
                Ok(()) => Event::Finished,
                Err(f) => Event::Failed(f),
            });
        })
        .expect("cannot start the trainer thread");
    RunHandle::new(erx, ctx, thread)
}

/// Name of the trainer thread (front ends' panic hooks leave its panics to the engine, which
/// reports them as [`Event::Failed`]).
pub const TRAINER_THREAD: &str = "mislas-trainer";

/// Runs the job's stages on this process's rank: [`crate::distributed::launch::start`] starts and
/// joins the other ranks when the configuration asks for several (`gpus`, `world_size`).
fn run_job(mut job: Job, saved_root: &Path, link: &Link) -> Result<(), Failure> {
    let mut replicas = crate::distributed::launch::start(&mut job, saved_root)?;
    let result = run_stages(job, saved_root, link, &replicas);
    // After a success the other ranks end with this one; after a failure they learn it at once
    // (this rank leaves the group) and get a few seconds.
    let grace = match result {
        Ok(()) => replicas.timeout().unwrap_or_default(),
        Err(_) => Duration::from_secs(10),
    };
    if result.is_err() {
        replicas.leave();
    }
    let failed_workers = replicas.wait_for_workers(grace);
    match (result, failed_workers.is_empty()) {
        // A lost rank: what the other rank said is the cause. Any other failure (a non-finite
        // loss, bad data) is the same on every rank, and is said once.
        (Err(mut f), false) if f.kind == FailureKind::LostRank => {
            f.message = format!("{} ({})", f.message, failed_workers.join("; "));
            Err(f)
        }
        (Ok(()), false) => Err(Failure::new(
            FailureKind::LostRank,
            failed_workers.join("; "),
        )),
        (result, _) => result,
    }
}

fn run_stages(
    job: Job,
    saved_root: &Path,
    link: &Link,
    replicas: &Replicas,
) -> Result<(), Failure> {
    match job {
        Job::Single(cfg) => trainer::run_stage(&cfg, saved_root, link, replicas).map(|_| ()),
        Job::Pipeline { stage1, stage2 } => {
            // What the stage 2s need of the machine is checked before stage 1 spends its hours.
            for c in &stage2 {
                setup::stage_device(c).kind(FailureKind::Config)?;
            }
            let first = trainer::run_stage(&stage1, saved_root, link, replicas)?;
            if first.stopped {
                return Ok(());
            }
            let best = first.best_checkpoint.ok_or_else(|| {
                Failure::new(
                    FailureKind::Checkpoint,
                    format!(
                        "stage 1 in {} wrote no best checkpoint; stage 2 cannot start",
                        first.run_dir.display()
                    ),
                )
            })?;
            // Each stage 2 starts from the same checkpoint, in its own run folder; a stop ends
            // the pipeline.
            for mut c in stage2 {
                c.resume = best.display().to_string();
                if trainer::run_stage(&c, saved_root, link, replicas)?.stopped {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// The text of a panic payload; a libtorch error is cut to its first line (its message),
/// without the C++ stack that follows.
pub fn panic_text(panic: &(dyn Any + Send)) -> String {
    let raw = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown error".into());
    // tch panics with `…: Torch("<message>\nException raised from … <C++ frames>")`.
    let text = match raw.split_once("Torch(\"") {
        Some((_, rest)) => rest.to_owned(),
        None => raw,
    };
    let first = text
        .split("\\n")
        .next()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default();
    first.trim_end_matches(['"', ')']).trim().to_owned()
}

/// Whether a libtorch error message says that memory ran out (CUDA's caching allocator, the
/// CPU allocator, or the operating system).
pub fn is_out_of_memory(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("out of memory")
        || t.contains("can't allocate memory")
        || t.contains("std::bad_alloc")
}

/// The failure of a panic during `context` (a libtorch error): out of memory gets the advice
/// the user needs, anything else says what failed.
pub fn panic_failure(
    panic: &(dyn Any + Send),
    context: &str,
    cfg: &Config,
    device: Device,
) -> Failure {
    let text = panic_text(panic);
    let device = device_info(device).id;
    if is_out_of_memory(&text) {
        Failure::new(
            FailureKind::OutOfMemory,
            format!(
                "out of memory at batch size {} on {device} while {context}: lower batch_size \
                 or set accum_steps ({text})",
                cfg.batch_size
            ),
        )
    } else {
        Failure::new(
            FailureKind::Internal,
            format!("libtorch failed while {context} on {device}: {text}"),
        )
    }
}

/// Resolves the `device` key to a libtorch device.
///
/// # Errors
/// CUDA was asked for but is not available, or the device index does not exist.
pub fn resolve_device(spec: &str) -> Result<Device> {
    let spec = parse_device_spec(spec).map_err(|e| anyhow::anyhow!("device: {e}"))?;
    Ok(match spec {
        DeviceSpec::Auto => Device::cuda_if_available(),
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda(n) => {
            if !tch::Cuda::is_available() {
                bail!(
                    "device: cuda:{n} was asked for but CUDA is not available to libtorch \
                     (no GPU, a driver older than the libtorch build needs, or a CPU-only \
                     libtorch; see README, Troubleshooting)"
                );
            }
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                bail!("device: cuda:{n} does not exist ({count} CUDA device(s))");
            }
            Device::Cuda(n)
        }
    })
}

/// Describes a device for the front ends: the CUDA device's name and memory via `nvidia-smi`
/// when it is installed, else a generic name.
pub fn device_info(device: Device) -> DeviceInfo {
    match device {
        Device::Cuda(n) => {
            let smi = std::process::Command::new("nvidia-smi")
                .args([
                    "--query-gpu=name,memory.total",
                    "--format=csv,noheader,nounits",
                    "-i",
                    &n.to_string(),
                ])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
            let (name, mem) = match smi.as_deref().and_then(|s| s.rsplit_once(',')) {
                Some((name, mib)) => (
                    name.trim().to_owned(),
                    mib.trim().parse::<u64>().ok().map(|m| m * 1024 * 1024),
                ),
                None => (format!("CUDA device {n}"), None),
            };
            DeviceInfo {
                id: format!("cuda:{n}"),
                name,
                memory_total_bytes: mem,
            }
        }
        _ => DeviceInfo {
            id: "cpu".into(),
            name: match tch::get_num_threads() {
                1 => "CPU (1 thread)".to_owned(),
                n => format!("CPU ({n} threads)"),
            },
            memory_total_bytes: None,
        },
    }
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub fn resident_memory_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`; 0 elsewhere).
pub fn peak_memory_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Seed of one random stream, derived from the run's seed, the epoch, the batch and a stream
/// tag by SplitMix64 (Steele et al., 2014) so that streams are independent and a run can be
/// resumed at any batch.
pub fn stream_seed(seed: u64, epoch: usize, batch: usize, tag: u64) -> u64 {
    let mut z = seed
        ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (batch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ tag.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_resolve_on_cpu() {
        assert_eq!(resolve_device("cpu").unwrap(), Device::Cpu);
        if !tch::Cuda::is_available() {
            assert_eq!(resolve_device("auto").unwrap(), Device::Cpu);
            let e = resolve_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("CUDA is not available"), "{e}");
        }
    }

    #[test]
    fn stream_seeds_differ() {
        let a = stream_seed(0, 1, 2, 3);
        assert_ne!(a, stream_seed(0, 2, 1, 3));
        assert_ne!(a, stream_seed(0, 1, 2, 4));
        assert_eq!(a, stream_seed(0, 1, 2, 3));
    }
}
