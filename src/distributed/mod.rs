//! Data-parallel training on PyTorch's own distributed engine (c10d), as the reference's
//! `DistributedDataParallel` with one process per device.
//!
//! * [`c10d`]: the process group (TCPStore rendezvous, Gloo on CPU, NCCL on CUDA);
//! * [`Topology`]: where this process stands (rank, world size, rendezvous), from a
//!   `torchrun`-style environment, from the tasks of an `srun` step ([`srun`]) or from the
//!   configuration's `gpus`, `world_size`, `rank`, `dist_url`;
//! * [`GradientSync`]: what a data-parallel step adds to the backward pass and before the SGD
//!   step (the engine's step calls it);
//! * [`overlap`]: the gradient all-reduce overlapped with the backward pass (DDP's `Reducer`:
//!   buckets started from gradient hooks);
//! * [`machine`]: the checks of a configuration against this machine and this build;
//! * [`launch`]: starting the other ranks of this machine as processes of this binary;
//! * [`replicas`]: what DDP does to a step and an evaluation (broadcast, bucketed gradient
//!   averaging, the sampler's split, gathering per-sample results, agreeing on controls).
pub mod c10d;
pub mod launch;
pub mod machine;
pub mod overlap;
pub mod replicas;
pub mod srun;

pub use replicas::Replicas;

use crate::config::{parse_device_spec, Config, DeviceSpec};
use anyhow::{bail, Context, Result};
use c10d::Backend;
use std::time::Duration;

/// What a data-parallel step adds to the backward pass and before the SGD step
/// ([`Replicas`]: DDP's gradient all-reduce).
pub trait GradientSync {
    /// Called just before the backward pass whose gradients [`GradientSync::average`] then
    /// averages (a step's last micro-batch), with the parameters the step trains (the SGD's,
    /// in group order): an implementation may start averaging while that backward pass runs
    /// ([`Replicas`]: DDP's overlapped buckets, [`overlap`]). The default does nothing.
    ///
    /// # Errors
    /// The gradient hooks could not be set up.
    fn before_backward(&self, params: &[tch::Tensor]) -> anyhow::Result<()> {
        let _ = params;
        Ok(())
    }

    /// Averages `grads` (the live gradients, changed in place) over the ranks, and sums
    /// `figures` (`[3]` f64: loss · images, top-1 hits, images) over them.
    ///
    /// # Errors
    /// A lost rank.
    fn average(&self, grads: &[tch::Tensor], figures: &mut tch::Tensor) -> anyhow::Result<()>;
}

/// Environment variables of a rank, as `torchrun` sets them.
pub const ENV_RANK: &str = "RANK";
/// Number of ranks in all.
pub const ENV_WORLD_SIZE: &str = "WORLD_SIZE";
/// Rank on this machine (the CUDA device index).
pub const ENV_LOCAL_RANK: &str = "LOCAL_RANK";
/// Ranks on this machine.
pub const ENV_LOCAL_WORLD_SIZE: &str = "LOCAL_WORLD_SIZE";
/// Host of rank 0's rendezvous store.
pub const ENV_MASTER_ADDR: &str = "MASTER_ADDR";
/// Port of rank 0's rendezvous store.
pub const ENV_MASTER_PORT: &str = "MASTER_PORT";

/// Where this process stands in a data-parallel run.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Global rank, `0..world_size`; rank 0 writes the run folder and serves the rendezvous.
    pub rank: usize,
    /// Number of ranks in all (processes per machine × machines).
    pub world_size: usize,
    /// Rank on this machine: the CUDA device `cuda:local_rank` on CUDA.
    pub local_rank: usize,
    /// Processes on this machine.
    pub local_size: usize,
    /// Host of the rendezvous.
    pub master_addr: String,
    /// Port of the rendezvous (0: not chosen yet; [`launch`] picks a free one).
    pub master_port: u16,
    /// Gloo on CPU, NCCL on CUDA.
    pub backend: Backend,
    /// Bound of the rendezvous and of each collective (`dist_timeout`).
    pub timeout: Duration,
    /// This process starts the other ranks of this machine ([`launch`]): it was not itself
    /// started by a launcher (`torchrun`, or mislas's own).
    pub launches_local_ranks: bool,
}

impl Topology {
    /// The topology of a run of `cfg` in a process whose environment `env` gives; `None` for
    /// one process. A `torchrun`-style environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    /// `MASTER_ADDR`, `MASTER_PORT`) wins over the configuration; without one, the tasks of an
    /// `srun` step rank from Slurm's variables ([`srun`]).
    ///
    /// From the configuration, as the reference: `gpus` processes per machine (with
    /// `multiprocessing_distributed` and `gpus` 1 on CUDA, one per CUDA device:
    /// `cuda_devices`), `world_size` machines, this one of node rank `rank`; global rank =
    /// node rank · processes per machine + local rank. One machine meets on 127.0.0.1: on the
    /// port of `dist_url` when it names a loopback address, else on a free port; several
    /// machines need `dist_url tcp://HOST:PORT`.
    ///
    /// # Errors
    /// A malformed environment variable or `dist_url`, several machines without `dist_url`, a
    /// node rank outside `0..world_size`.
    pub fn of(
        cfg: &Config,
        env: &dyn Fn(&str) -> Option<String>,
        cuda_devices: usize,
    ) -> Result<Option<Topology>> {
        let backend = match parse_device_spec(&cfg.device) {
            Ok(DeviceSpec::Cpu) => Backend::Gloo,
            Ok(DeviceSpec::Auto) if cuda_devices == 0 => Backend::Gloo,
            _ => Backend::Nccl,
        };
        let timeout = Duration::from_secs_f64(cfg.dist_timeout.max(0.001));
        if let Some(rank) = env(ENV_RANK) {
            return from_env(&rank, env, backend, timeout).map(Some);
        }
        if env(ENV_WORLD_SIZE).is_some() {
            bail!("{ENV_WORLD_SIZE} is set but {ENV_RANK} is not: a torchrun-style launch sets both (and {ENV_MASTER_ADDR}, {ENV_MASTER_PORT})");
        }
        if let Some(t) = srun::topology(env, backend, timeout)? {
            return Ok(Some(t));
        }
        let local_size = match (cfg.multiprocessing_distributed, cfg.gpus, backend) {
            (true, 1, Backend::Nccl) => cuda_devices.max(1),
            (_, n, _) => n.max(1),
        };
        let nodes = usize::try_from(cfg.world_size.max(1)).unwrap_or(1);
        if local_size * nodes == 1 {
            return Ok(None);
        }
        let node_rank = usize::try_from(cfg.rank.max(0)).unwrap_or(0);
        if node_rank >= nodes {
            bail!("rank (the node rank) is {node_rank}, but world_size says {nodes} machines: it must be 0 to {}", nodes - 1);
        }
        let (master_addr, master_port) = match (cfg.dist_url.trim(), nodes) {
            ("", 1) => ("127.0.0.1".to_owned(), 0),
            ("", _) => bail!(
                "dist_url: a run over {nodes} machines needs the rendezvous of rank 0 as \
                 tcp://HOST:PORT"
            ),
            (url, 1) => match parse_dist_url(url)? {
                (host, port) if is_loopback(&host) => ("127.0.0.1".to_owned(), port),
                // The reference's presets carry `tcp://224.66.41.62:23456`: on one machine a
                // fixed port would make two runs collide, so only a loopback URL is kept.
                _ => ("127.0.0.1".to_owned(), 0),
            },
            (url, _) => parse_dist_url(url)?,
        };
        Ok(Some(Topology {
            rank: node_rank * local_size,
            world_size: local_size * nodes,
            local_rank: 0,
            local_size,
            master_addr,
            master_port,
            backend,
            timeout,
            launches_local_ranks: true,
        }))
    }

    /// The device of this rank: `cuda:local_rank` for NCCL, the CPU for Gloo.
    pub fn device_spec(&self) -> String {
        match self.backend {
            Backend::Nccl => format!("cuda:{}", self.local_rank),
            Backend::Gloo => "cpu".to_owned(),
        }
    }
}

fn from_env(
    rank: &str,
    env: &dyn Fn(&str) -> Option<String>,
    backend: Backend,
    timeout: Duration,
) -> Result<Topology> {
    let number = |name: &str, value: Option<String>| -> Result<usize> {
        let value = value.with_context(|| {
            format!("{ENV_RANK} is set, so {name} must be too (the torchrun environment)")
        })?;
        value
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a whole number, is '{value}'"))
    };
    let rank = number(ENV_RANK, Some(rank.to_owned()))?;
    let world_size = number(ENV_WORLD_SIZE, env(ENV_WORLD_SIZE))?;
    let local_rank = match env(ENV_LOCAL_RANK) {
        Some(v) => number(ENV_LOCAL_RANK, Some(v))?,
        None => rank,
    };
    if world_size == 0 {
        bail!("{ENV_WORLD_SIZE} must be at least 1, is 0");
    }
    if rank >= world_size {
        bail!("{ENV_RANK} is {rank}, but {ENV_WORLD_SIZE} is {world_size}: a rank is 0 to {ENV_WORLD_SIZE}−1");
    }
    let master_port = number(ENV_MASTER_PORT, env(ENV_MASTER_PORT))?;
    let master_port = u16::try_from(master_port)
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("{ENV_MASTER_PORT} must be a port 1–65535, is {master_port}"))?;
    let local_size = match env(ENV_LOCAL_WORLD_SIZE) {
        Some(v) => number(ENV_LOCAL_WORLD_SIZE, Some(v))?.max(1),
        None => world_size,
    };
    Ok(Topology {
        rank,
        world_size,
        local_rank,
        local_size,
        master_addr: env(ENV_MASTER_ADDR).unwrap_or_else(|| "127.0.0.1".to_owned()),
        master_port,
        backend,
        timeout,
        launches_local_ranks: false,
    })
}

/// Whether `host` is this machine's loopback (`localhost`, `127.x.y.z`, `::1`).
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `tcp://HOST:PORT` as (host, port).
///
/// # Errors
/// Another form; the message shows the expected one.
pub fn parse_dist_url(url: &str) -> Result<(String, u16)> {
    let bad = || format!("dist_url must be tcp://HOST:PORT, is '{url}'");
    let rest = url.strip_prefix("tcp://").with_context(bad)?;
    let (host, port) = rest.rsplit_once(':').with_context(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).with_context(bad)?;
    if host.is_empty() {
        bail!(bad());
    }
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn cfg(device: &str, gpus: usize) -> Config {
        Config {
            device: device.into(),
            gpus,
            ..Config::default()
        }
    }

    #[test]
    fn one_process_has_no_topology() {
        let none = env_of(&[]);
        assert_eq!(Topology::of(&cfg("cpu", 1), &none, 0).unwrap(), None);
        // The reference's switch without CUDA devices keeps one process.
        let mut c = cfg("auto", 1);
        c.multiprocessing_distributed = true;
        assert_eq!(Topology::of(&c, &none, 0).unwrap(), None);
    }

    #[test]
    fn gpus_on_one_machine_meet_on_loopback() {
        let t = Topology::of(&cfg("cpu", 2), &env_of(&[]), 0)
            .unwrap()
            .unwrap();
        assert_eq!((t.rank, t.world_size, t.local_size), (0, 2, 2));
        assert_eq!((t.master_addr.as_str(), t.master_port), ("127.0.0.1", 0));
        assert_eq!(t.backend, Backend::Gloo);
        // A loopback dist_url keeps its port; the reference's preset URL does not.
        let mut c = cfg("cpu", 2);
        c.dist_url = "tcp://localhost:23456".into();
        let t = Topology::of(&c, &env_of(&[]), 0).unwrap().unwrap();
        assert_eq!(t.master_port, 23456);
        c.dist_url = "tcp://224.66.41.62:23456".into();
        let t = Topology::of(&c, &env_of(&[]), 0).unwrap().unwrap();
        assert_eq!((t.master_addr.as_str(), t.master_port), ("127.0.0.1", 0));
        assert!(t.launches_local_ranks);
        // The reference's multiprocessing_distributed: one process per CUDA device.
        let mut c = cfg("cuda", 1);
        c.multiprocessing_distributed = true;
        let t = Topology::of(&c, &env_of(&[]), 4).unwrap().unwrap();
        assert_eq!((t.world_size, t.backend), (4, Backend::Nccl));
        assert_eq!(t.device_spec(), "cuda:0");
    }

    #[test]
    fn two_nodes_rank_as_the_reference() {
        let mut c = cfg("cuda", 4);
        c.world_size = 2;
        c.rank = 1;
        c.dist_url = "tcp://10.0.0.5:23456".into();
        let t = Topology::of(&c, &env_of(&[]), 4).unwrap().unwrap();
        assert_eq!((t.rank, t.world_size), (4, 8));
        assert_eq!((t.master_addr.as_str(), t.master_port), ("10.0.0.5", 23456));
        c.dist_url.clear();
        let e = Topology::of(&c, &env_of(&[]), 4).unwrap_err().to_string();
        assert!(e.contains("tcp://HOST:PORT"), "{e}");
        c.rank = 2;
        c.dist_url = "tcp://h:1".into();
        let e = Topology::of(&c, &env_of(&[]), 4).unwrap_err().to_string();
        assert!(e.contains("0 to 1"), "{e}");
    }

    #[test]
    fn torchrun_environment_wins() {
        let env = env_of(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ]);
        let t = Topology::of(&cfg("cuda", 1), &env, 2).unwrap().unwrap();
        assert_eq!((t.rank, t.world_size, t.local_rank), (3, 4, 1));
        assert_eq!((t.master_addr.as_str(), t.master_port), ("node0", 29500));
        assert!(!t.launches_local_ranks);
        assert_eq!(t.device_spec(), "cuda:1");
        let bad = env_of(&[("RANK", "4"), ("WORLD_SIZE", "4"), ("MASTER_PORT", "1")]);
        let e = Topology::of(&cfg("cpu", 1), &bad, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("WORLD_SIZE is 4"), "{e}");
        let bad = env_of(&[("RANK", "0"), ("WORLD_SIZE", "2")]);
        let e = Topology::of(&cfg("cpu", 1), &bad, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MASTER_PORT must be too"), "{e}");
    }

    #[test]
    fn dist_urls() {
        assert_eq!(
            parse_dist_url("tcp://224.66.41.62:23456").unwrap(),
            ("224.66.41.62".into(), 23456)
        );
        assert_eq!(
            parse_dist_url("tcp://[::1]:80").unwrap(),
            ("::1".into(), 80)
        );
        for bad in [
            "224.66.41.62:23456",
            "tcp://host",
            "tcp://:80",
            "tcp://h:0",
            "env://",
        ] {
            assert!(parse_dist_url(bad).is_err(), "{bad}");
        }
    }
}
