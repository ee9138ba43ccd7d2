//! What `DistributedDataParallel` does to training and evaluation, on a [`ProcessGroup`].
//!
//! | | PyTorch (reference) | here |
//! |---|---|---|
//! | start | DDP's constructor broadcasts parameters and buffers from rank 0 | [`Replicas::broadcast_state`] |
//! | forward | buffers (BatchNorm statistics) broadcast from rank 0 (`broadcast_buffers=True`); no SyncBN | [`Replicas::broadcast_buffers`] |
//! | backward | gradients summed in 25 MB buckets (the first 1 MB), in reverse parameter order, each bucket's asynchronous all-reduce started by gradient hooks as soon as its gradients are ready, overlapping the rest of the backward pass; divided by the world size | [`Replicas::before_backward`](GradientSync::before_backward) and [`Replicas::average`](GradientSync::average) with [`super::overlap`] (`ddp_overlap true`, the default); `ddp_overlap false`: 25 MB buckets in parameter order, summed one after another after the backward pass |
//! | sampler | `DistributedSampler`: the epoch's order padded to a multiple of N, rank r takes r, r+N, … | [`Replicas::shard`] |
//! | stage 2, shift learning | (the reference runs stage 2 on one GPU) | with `sync_bn_stats`: no buffer broadcast; running statistics averaged before each evaluation and checkpoint, [`Replicas::average_batchnorm_statistics`] |
//!
//! Every collective failure becomes one message naming the rank that was lost
//! ([`Replicas::lost_rank`]).
use super::c10d::ProcessGroup;
use super::launch::Worker;
use super::overlap::{reverse_buckets, OverlapStats, OverlappedAllReduce, FIRST_BUCKET_BYTES};
use super::GradientSync;
use crate::metrics::EvalAccumulator;
use crate::model::Network;
use crate::wire::{Flow, Link, Poll};
use anyhow::{anyhow, Result};
use std::cell::{Cell, RefCell};
use std::time::Duration;
use tch::{Device, Tensor};

/// What the ranks agreed before a batch ([`Replicas::agree`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// Go on or stop (rank 0's controls).
    pub flow: Flow,
    /// Some rank cannot train its share of the batch: every rank skips the step.
    pub skip_step: bool,
    /// Rank 0's clock says an in-epoch checkpoint is due: every rank writes it at this batch
    /// (rank 0 alone writes the file).
    pub checkpoint: bool,
}

/// DDP's default bucket size (`bucket_cap_mb=25`), bytes.
pub const BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The ranks of a data-parallel run, seen from one of them; or one process alone
/// ([`Replicas::single`]), for which every method is the identity.
#[derive(Debug)]
pub struct Replicas {
    /// The hooks and buckets of the overlapped all-reduce, made at the first step (and again
    /// when the parameters change, e.g. at stage 2); dropped before the group.
    overlap: RefCell<Option<OverlappedAllReduce>>,
    group: Option<ProcessGroup>,
    rank: usize,
    world_size: usize,
    /// Processes of the other local ranks, started by this one.
    workers: Vec<Worker>,
    /// Rank 0: the controls say "paused".
    paused: Cell<bool>,
    /// Collective failures so far (a key of the lost-rank roll call).
    failures: Cell<u32>,
    /// Wall-clock seconds spent averaging gradients since [`Replicas::take_sync_seconds`].
    sync_seconds: Cell<f64>,
    /// The all-reduce overlaps the backward pass (`ddp_overlap`).
    overlap_backward: bool,
    /// Bucket cap, bytes (DDP's `bucket_cap_mb`).
    bucket_bytes: usize,
    /// [`GradientSync::before_backward`] armed the hooks for the coming backward pass.
    armed: Cell<bool>,
    /// Where the small tensors of a collective live: the CPU for Gloo, the rank's GPU for NCCL
    /// (which reduces CUDA tensors only).
    scratch: Device,
}

impl Replicas {
    /// One process: no collective.
    pub fn single() -> Self {
        Replicas {
            group: None,
            rank: 0,
            world_size: 1,
            workers: Vec::new(),
            paused: Cell::new(false),
            failures: Cell::new(0),
            sync_seconds: Cell::new(0.0),
            overlap: RefCell::new(None),
            overlap_backward: true,
            bucket_bytes: BUCKET_BYTES,
            armed: Cell::new(false),
            scratch: Device::Cpu,
        }
    }

    /// Rank `group.rank()` of `group`, with the local `workers` it started; `scratch` is the
    /// device of the backend's tensors (the CPU for Gloo, this rank's GPU for NCCL).
    pub fn new(group: ProcessGroup, workers: Vec<Worker>, scratch: Device) -> Self {
        Replicas {
            rank: group.rank(),
            world_size: group.world_size(),
            group: Some(group),
            workers,
            paused: Cell::new(false),
            failures: Cell::new(0),
            sync_seconds: Cell::new(0.0),
            overlap: RefCell::new(None),
            overlap_backward: true,
            bucket_bytes: BUCKET_BYTES,
            armed: Cell::new(false),
            scratch,
        }
    }

    /// Whether the gradient all-reduce overlaps the backward pass (`ddp_overlap`; on by
    /// default): DDP's buckets (reverse parameter order, the first at most 1 MiB) start from
    /// gradient hooks. Off: buckets in parameter order, summed one after another once the
    /// backward pass is over (mislas before the overlap).
    pub fn with_overlap(mut self, on: bool) -> Self {
        self.overlap_backward = on;
        self
    }

    /// The gradient buckets' cap, bytes (DDP's `bucket_cap_mb`; [`BUCKET_BYTES`] by
    /// default); the overlapped path's first bucket holds at most the smaller of this and
    /// [`FIRST_BUCKET_BYTES`]. 0 puts every gradient in a bucket of its own.
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes;
        self
    }

    /// The overlapped all-reduce's figures (buckets, those started inside the last backward
    /// pass, seconds inside the hooks since the last call); `None` before its first step or
    /// with `ddp_overlap false`.
    pub fn overlap_stats(&self) -> Option<OverlapStats> {
        self.overlap
            .borrow()
            .as_ref()
            .map(OverlappedAllReduce::stats)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks (1 alone).
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Rank 0: the one that writes the run folder and reads the controls.
    pub fn is_primary(&self) -> bool {
        self.rank == 0
    }

    /// The process group, when there is more than one rank.
    pub fn group(&self) -> Option<&ProcessGroup> {
        self.group.as_ref()
    }

    /// Copies rank 0's parameters and buffers (every variable of `net`) to every rank, as
    /// DDP's constructor does.
    ///
    /// # Errors
    /// A lost rank.
    pub fn broadcast_state(&self, net: &Network) -> Result<()> {
        let vars: Vec<Tensor> = sorted_variables(net).into_iter().map(|(_, t)| t).collect();
        self.broadcast_bucketed(&vars, "broadcasting the weights from rank 0")
    }

    /// Copies rank 0's BatchNorm statistics (running mean and variance, batches tracked) to
    /// every rank: DDP's `broadcast_buffers=True` before each forward pass in train mode.
    ///
    /// # Errors
    /// A lost rank.
    pub fn broadcast_buffers(&self, net: &Network) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        let buffers: Vec<Tensor> = sorted_variables(net)
            .into_iter()
            .filter(|(name, _)| is_batchnorm_buffer(name))
            .map(|(_, t)| t)
            .collect();
        self.broadcast_bucketed(&buffers, "broadcasting BatchNorm statistics")
    }

    fn broadcast_bucketed(&self, tensors: &[Tensor], during: &str) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        tch::no_grad(|| {
            for bucket in buckets(tensors, BUCKET_BYTES) {
                let parts: Vec<&Tensor> = bucket.iter().map(|&i| &tensors[i]).collect();
                let mut flat = [flatten(&parts)];
                group
                    .broadcast(&mut flat, 0)
                    .map_err(|e| self.lost_rank(during, e))?;
                unflatten(&flat[0], &parts);
            }
            Ok(())
        })
    }

    /// The share of an epoch's `order` this rank trains on or evaluates: `DistributedSampler`
    /// (`drop_last=False`) — the order padded with its own first indices to a multiple of the
    /// world size, then every world-size-th index from position `rank`. So global batch `j` of
    /// B indices is split into the ranks' batches `j` of B/N, rank r taking the positions
    /// ≡ r (mod N) of it. Alone: the order itself.
    pub fn shard(&self, order: Vec<usize>) -> Vec<usize> {
        shard(order, self.rank, self.world_size)
    }

    /// Whether every rank goes on, stops, or waits, and whether every rank trains the coming
    /// batch: rank 0 reads the controls ([`Link::poll`]) and every rank says whether it cannot
    /// train its share (`skip_here`: no image, or one under BatchNorm in train mode, after
    /// unreadable images were left out); one all-reduce, so that all ranks stop at the same
    /// batch and skip the same steps (a rank alone in a collective would wait for the others
    /// until the timeout). While paused every rank waits here, meeting again every 200 ms (so
    /// that a long pause is no lost rank). `checkpoint_due` is read on rank 0 only (its clock
    /// decides an in-epoch checkpoint for every rank). Alone: [`Link::check`], `skip_here` and
    /// `checkpoint_due`.
    ///
    /// # Errors
    /// A lost rank.
    pub fn agree(&self, link: &Link, skip_here: bool, checkpoint_due: bool) -> Result<Agreed> {
        let Some(group) = &self.group else {
            return Ok(Agreed {
                flow: link.check(),
                skip_step: skip_here,
                checkpoint: checkpoint_due,
            });
        };
        loop {
            let code = match self.is_primary() {
                true => {
                    let mut paused = self.paused.get();
                    let poll = link.poll(&mut paused);
                    self.paused.set(paused);
                    poll as i64
                }
                false => 0,
            };
            // Rank 0's clock alone decides a checkpoint, so that the ranks agree on the batch.
            let due = i64::from(checkpoint_due && self.is_primary());
            let mut t = [self.on_scratch(Tensor::from_slice(&[code, i64::from(skip_here), due]))];
            group
                .all_reduce_sum(&mut t)
                .map_err(|e| self.lost_rank("agreeing on the controls", e))?;
            let skip_step = t[0].int64_value(&[1]) > 0;
            let flow = match t[0].int64_value(&[0]) {
                c if c == Poll::Stop as i64 => Flow::Stop,
                c if c == Poll::Paused as i64 => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                _ => Flow::Continue,
            };
            let checkpoint = t[0].int64_value(&[2]) > 0;
            return Ok(Agreed {
                flow,
                skip_step,
                checkpoint,
            });
        }
    }

    /// Gathers an evaluation made on shards: `acc` holds this rank's samples, `indices` their
    /// indices in the set (of `set_len` images). Returns every sample once, in index order (the
    /// order of a one-process evaluation), padded duplicates removed, on every rank. Alone:
    /// `acc`.
    ///
    /// # Errors
    /// A lost rank.
    pub fn gather_evaluation(
        &self,
        acc: EvalAccumulator,
        indices: &[usize],
        set_len: usize,
        num_classes: usize,
    ) -> Result<EvalAccumulator> {
        let Some(group) = &self.group else {
            return Ok(acc);
        };
        let during = "gathering the evaluation";
        let lost = |e| self.lost_rank(during, e);
        let rows = acc.to_rows();
        let idx = Tensor::from_slice(&indices.iter().map(|&i| i as f64).collect::<Vec<_>>());
        let mine = self.on_scratch(Tensor::cat(&[idx.unsqueeze(1), rows], 1));
        let counts = group
            .all_gather(&self.on_scratch(Tensor::from_slice(&[indices.len() as i64])))
            .map_err(lost)?;
        let most = counts
            .iter()
            .map(|c| c.int64_value(&[0]))
            .max()
            .unwrap_or(0);
        let padded = mine.constant_pad_nd([0, 0, 0, most - indices.len() as i64]);
        let _ = padded
            .narrow(0, indices.len() as i64, most - indices.len() as i64)
            .fill_(-1.0);
        let all = group.all_gather(&padded).map_err(lost)?;
        let all = Tensor::cat(&all, 0)
            .to_device(Device::Cpu)
            .contiguous()
            .view(-1);
        let flat = Vec::<f64>::try_from(&all)?;
        let mut by_index: Vec<Option<&[f64]>> = vec![None; set_len];
        for row in flat.chunks_exact(6) {
            let i = row[0];
            if i >= 0.0 && (i as usize) < set_len && by_index[i as usize].is_none() {
                by_index[i as usize] = Some(&row[1..]);
            }
        }
        let values: Vec<f64> = by_index.into_iter().flatten().flatten().copied().collect();
        let mut out = EvalAccumulator::new(num_classes);
        if !values.is_empty() {
            out.add_rows(&Tensor::from_slice(&values).view([-1, 5]));
        }
        Ok(out)
    }

    /// Rank 0's `value` on every rank (through the rendezvous store, under `key`).
    ///
    /// # Errors
    /// A lost rank, or rank 0 did not publish within the timeout.
    pub fn share_text(&self, key: &str, value: &str) -> Result<String> {
        let Some(group) = &self.group else {
            return Ok(value.to_owned());
        };
        let key = format!("mislas/{key}");
        if self.is_primary() {
            group.store_set(&key, value.as_bytes())?;
            return Ok(value.to_owned());
        }
        let bytes = group
            .store_get(&key, group.timeout())
            .map_err(|e| self.lost_rank(&format!("waiting for rank 0's {key}"), e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until every rank arrived here.
    ///
    /// # Errors
    /// A lost rank.
    pub fn barrier(&self, during: &str) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let mut t = [self.on_scratch(Tensor::from_slice(&[1i64]))];
        group
            .all_reduce_sum(&mut t)
            .map_err(|e| self.lost_rank(during, e))
    }

    /// The error of a failed collective, naming the lost ranks: every surviving rank writes a
    /// roll-call key for this failure into the rendezvous store and waits (at most 10 s, within
    /// the timeout) for the others'; those missing are named. When the store itself is gone,
    /// rank 0 (which serves it) was lost.
    pub fn lost_rank(&self, during: &str, cause: anyhow::Error) -> anyhow::Error {
        let Some(group) = &self.group else {
            return cause;
        };
        let n = self.failures.get();
        self.failures.set(n + 1);
        let key = |r: usize| format!("mislas/alive/{n}/{r}");
        if group.store_set(&key(self.rank), b"1").is_err() {
            return anyhow!(
                "lost rank 0 of {} while {during}: its rendezvous store is gone (the process \
                 ended or its machine is unreachable); rank {} stops. ({cause:#})",
                self.world_size,
                self.rank
            );
        }
        let wait = group.timeout().min(Duration::from_secs(10));
        let missing: Vec<String> = (0..self.world_size)
            .filter(|&r| r != self.rank && group.store_get(&key(r), wait).is_err())
            .map(|r| r.to_string())
            .collect();
        let who = match missing.len() {
            0 => "no rank answered as lost".to_owned(),
            1 => format!("lost rank {}", missing[0]),
            _ => format!("lost ranks {}", missing.join(", ")),
        };
        anyhow!(
            "{who} of {} while {during}; rank {} stops. ({cause:#})",
            self.world_size,
            self.rank
        )
    }

    /// `t` on the backend's device, contiguous.
    fn on_scratch(&self, t: Tensor) -> Tensor {
        t.to_device(self.scratch).contiguous()
    }

    /// Leaves the process group (rank 0: closes the rendezvous store), so that the other ranks'
    /// next collective fails at once rather than after the timeout. Collectives after this
    /// are the identity.
    pub fn leave(&mut self) {
        self.armed.set(false);
        self.overlap.replace(None);
        self.group = None;
    }

    /// Seconds the step waited for the gradient all-reduce after the backward pass
    /// ([`GradientSync::average`]: with the overlap, the buckets still running when the
    /// backward pass ended) since the last call, and resets the count: the all-reduce's share
    /// of the training time.
    pub fn take_sync_seconds(&self) -> f64 {
        self.sync_seconds.replace(0.0)
    }

    /// Waits for the local ranks this process started, each at most `grace` (then it is
    /// killed: a frozen process must not hold this one); their failures, as text.
    pub fn wait_for_workers(&mut self, grace: Duration) -> Vec<String> {
        self.workers
            .iter_mut()
            .filter_map(|w| w.wait(grace))
            .collect()
    }

    /// The bound of every collective (`dist_timeout`); `None` alone.
    pub fn timeout(&self) -> Option<Duration> {
        self.group.as_ref().map(ProcessGroup::timeout)
    }
}

impl GradientSync for Replicas {
    /// With the overlap on, (re)makes the hooks and buckets when `params` are not those of
    /// the last step, and arms them: during the coming backward pass each bucket's
    /// all-reduce starts once its gradients are ready ([`super::overlap`]).
    fn before_backward(&self, params: &[Tensor]) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        if !self.overlap_backward {
            return Ok(());
        }
        let mut slot = self.overlap.borrow_mut();
        if !slot.as_ref().is_some_and(|o| o.matches(params)) {
            // The old hooks go before the new ones are set on parameters they may share.
            *slot = None;
            let first = FIRST_BUCKET_BYTES.min(self.bucket_bytes);
            let plan = reverse_buckets(params, first, self.bucket_bytes);
            *slot = Some(OverlappedAllReduce::new(group, params, &plan)?);
        }
        slot.as_ref().expect("made above").arm()?;
        self.armed.set(true);
        Ok(())
    }

    /// Averages the gradients over the ranks (sums, then divides by the world size: DDP's
    /// averaging) and sums the step's `figures`. Armed ([`GradientSync::before_backward`]):
    /// waits for the buckets the hooks started and starts the rest; else sums `grads` in
    /// buckets of parameter order, one after another.
    fn average(&self, grads: &[Tensor], figures: &mut Tensor) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let lost = |e| self.lost_rank("averaging gradients", e);
        let started = std::time::Instant::now();
        let result = tch::no_grad(|| {
            if self.armed.replace(false) {
                let overlap = self.overlap.borrow();
                let overlap = overlap.as_ref().expect("armed with its hooks");
                overlap.finish(self.world_size).map_err(lost)?;
            } else {
                self.average_after_backward(group, grads).map_err(lost)?;
            }
            let mut f = [self.on_scratch(figures.shallow_clone())];
            group.all_reduce_sum(&mut f).map_err(lost)?;
            *figures = f[0].to_device(Device::Cpu);
            Ok(())
        });
        let spent = started.elapsed().as_secs_f64();
        self.sync_seconds.set(self.sync_seconds.get() + spent);
        result
    }
}

/// BatchNorm running statistics averaged over the ranks (stage 2's shift learning on N ranks;
/// `sync_bn_stats`).
impl Replicas {
    /// Replaces every rank's BatchNorm `running_mean` and `running_var` by their mean over the
    /// ranks (all-reduce sum, divided by N, in [`BUCKET_BYTES`] buckets); `num_batches_tracked`
    /// is left as it is (every rank trained the same steps). Alone: nothing.
    ///
    /// BatchNorm's update `r ← (1 − m)·r + m·s` (PyTorch's `BatchNorm2d`, m = `momentum`, s
    /// the batch's mean, or its unbiased variance) is affine in r and s with the same m on
    /// every rank, so the mean over the ranks of statistics each rank updated from its own
    /// share of every batch, from one start, is the update from the mean of the shares'
    /// batch statistics: the batch mean itself for `running_mean` (equal shares), and the mean
    /// of the shares' variances for `running_var` — timm's `distribute_bn(reduce=True)`.
    ///
    /// # Errors
    /// A lost rank.
    pub fn average_batchnorm_statistics(&self, net: &Network) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let stats: Vec<Tensor> = sorted_variables(net)
            .into_iter()
            .filter(|(name, _)| name.ends_with("running_mean") || name.ends_with("running_var"))
            .map(|(_, t)| t)
            .collect();
        let n = self.world_size as f64;
        let lost = |e| self.lost_rank("averaging BatchNorm statistics", e);
        tch::no_grad(|| {
            for bucket in buckets(&stats, BUCKET_BYTES) {
                let parts: Vec<&Tensor> = bucket.iter().map(|&i| &stats[i]).collect();
                let mut flat = [flatten(&parts)];
                group.all_reduce_sum(&mut flat).map_err(lost)?;
                let _ = flat[0].divide_scalar_(n);
                unflatten(&flat[0], &parts);
            }
            Ok(())
        })
    }
}

impl Replicas {
    /// The all-reduce after the backward pass (`ddp_overlap false`): `grads` in buckets of
    /// parameter order, each summed (blocking), divided by the world size and copied back.
    fn average_after_backward(&self, group: &ProcessGroup, grads: &[Tensor]) -> Result<()> {
        let n = self.world_size as f64;
        for bucket in buckets(grads, self.bucket_bytes) {
            let parts: Vec<&Tensor> = bucket.iter().map(|&i| &grads[i]).collect();
            let mut flat = [flatten(&parts)];
            group.all_reduce_sum(&mut flat)?;
            let _ = flat[0].divide_scalar_(n);
            unflatten(&flat[0], &parts);
        }
        Ok(())
    }
}

/// Every variable of `net` by name: the same order on every rank (a `HashMap`'s is not).
fn sorted_variables(net: &Network) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = net.vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// BatchNorm's buffers among a network's variables (`running_mean`, `running_var`,
/// `num_batches_tracked`).
fn is_batchnorm_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

/// Groups `tensors` (in order) into buckets of one dtype and device holding at most
/// `cap_bytes` each (a larger tensor is a bucket alone), as DDP's `bucket_cap_mb`.
pub fn buckets(tensors: &[Tensor], cap_bytes: usize) -> Vec<Vec<usize>> {
    buckets_in_order(tensors, 0..tensors.len(), cap_bytes, cap_bytes)
}

/// Groups the `tensors` taken in the index order `order` into buckets of one dtype and device:
/// the first holds at most `first_cap_bytes`, every later one at most `cap_bytes` (DDP's
/// `_DEFAULT_FIRST_BUCKET_BYTES` and `bucket_cap_mb`); a tensor larger than its cap is a
/// bucket alone. Buckets list indices in `order`.
pub fn buckets_in_order(
    tensors: &[Tensor],
    order: impl Iterator<Item = usize>,
    first_cap_bytes: usize,
    cap_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for i in order {
        let t = &tensors[i];
        let size = t.numel() * t.kind().elt_size_in_bytes();
        // The open bucket (the last one) has the first cap while it is the first.
        let cap = if out.len() == 1 {
            first_cap_bytes
        } else {
            cap_bytes
        };
        let fits = out.last().is_some_and(|b| {
            let first = &tensors[b[0]];
            first.kind() == t.kind() && first.device() == t.device() && bytes + size <= cap
        });
        if fits {
            out.last_mut().expect("checked").push(i);
            bytes += size;
        } else {
            out.push(vec![i]);
            bytes = size;
        }
    }
    out
}

fn flatten(parts: &[&Tensor]) -> Tensor {
    let views: Vec<Tensor> = parts.iter().map(|t| t.reshape(-1)).collect();
    Tensor::cat(&views, 0)
}

fn unflatten(flat: &Tensor, parts: &[&Tensor]) {
    let mut at = 0;
    for t in parts {
        let n = t.numel() as i64;
        let mut dst = t.shallow_clone();
        dst.copy_(&flat.narrow(0, at, n).view_as(t));
        at += n;
    }
}

/// `DistributedSampler`'s split of `order` (see [`Replicas::shard`]).
pub fn shard(mut order: Vec<usize>, rank: usize, world_size: usize) -> Vec<usize> {
    if world_size <= 1 || order.is_empty() {
        return order;
    }
    let padded = order.len().div_ceil(world_size) * world_size;
    let mut k = 0;
    while order.len() < padded {
        order.push(order[k]);
        k += 1;
    }
    order.into_iter().skip(rank).step_by(world_size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn shard_is_distributed_samplers() {
        // torch.utils.data.DistributedSampler(range(10), num_replicas=4, shuffle=False):
        // padded with 0, 1 to 12; rank r takes r, r+4, r+8.
        let order: Vec<usize> = (0..10).collect();
        assert_eq!(shard(order.clone(), 0, 4), vec![0, 4, 8]);
        assert_eq!(shard(order.clone(), 1, 4), vec![1, 5, 9]);
        assert_eq!(shard(order.clone(), 2, 4), vec![2, 6, 0]);
        assert_eq!(shard(order.clone(), 3, 4), vec![3, 7, 1]);
        assert_eq!(shard(order.clone(), 0, 1), order);
        // Global batch j of B = 4 on 2 ranks: rank r's batch j of 2 holds positions ≡ r mod 2.
        let order = vec![9, 8, 7, 6, 5, 4, 3, 2];
        assert_eq!(shard(order.clone(), 0, 2), vec![9, 7, 5, 3]);
        assert_eq!(shard(order, 1, 2), vec![8, 6, 4, 2]);
    }

    #[test]
    fn buckets_split_by_size_and_dtype() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let l = |n: i64| Tensor::zeros([n], (Kind::Int64, Device::Cpu));
        let ts = [f(10), f(10), f(30), l(2), l(2), f(1)];
        // 80 bytes cap: 40 + 40 fit, 120 alone, the int64 pair, then the float again.
        assert_eq!(
            buckets(&ts, 80),
            vec![vec![0, 1], vec![2], vec![3, 4], vec![5]]
        );
    }

    #[test]
    fn flatten_and_back() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let b = Tensor::from_slice(&[5.0f32]);
        let flat = flatten(&[&a, &b]);
        assert_eq!(
            Vec::<f32>::try_from(&flat).unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0]
        );
        let flat = flat * 2.0;
        unflatten(&flat, &[&a, &b]);
        assert_eq!(
            Vec::<f32>::try_from(&a.view(-1)).unwrap(),
            [2.0, 4.0, 6.0, 8.0]
        );
        assert_eq!(b.double_value(&[0]), 10.0);
    }
}
