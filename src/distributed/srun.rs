//! The rendezvous of ranks started by Slurm's `srun` (one task per GPU), read from the
//! variables Slurm sets in each task when no torchrun environment (`RANK`, `WORLD_SIZE`, …)
//! is set (issue 22, "The queue on Slurm"):
//!
//! - rank: `SLURM_PROCID`; world size: `SLURM_STEP_NUM_TASKS` (the tasks of this `srun`),
//!   else `SLURM_NTASKS`; local rank: `SLURM_LOCALID`; ranks on this node:
//!   `SLURM_NTASKS_PER_NODE`, else the first count of `SLURM_STEP_TASKS_PER_NODE` /
//!   `SLURM_TASKS_PER_NODE` (`2(x3),1` → 2), else the world size;
//! - host of the rendezvous: the first host of `SLURM_STEP_NODELIST`, else of
//!   `SLURM_JOB_NODELIST`, in Slurm's hostlist syntax ([`expand_hostlist`]); rank 0 runs there
//!   (Slurm's block distribution puts task 0 on the first node);
//! - port: `MASTER_PORT` when set, else 15000 + (`SLURM_JOB_ID` mod 10000), in 15000–24999
//!   (as PyTorch Lightning's Slurm environment derives it): every task of a job computes the
//!   same port without talking, and jobs that run at the same time on one node differ unless
//!   their ids differ by a multiple of 10000. `MASTER_ADDR` when set wins over the node list.
//!
//! One task (`SLURM_NTASKS` 1, as in a batch script of one task) is one process: the
//! configuration decides. A batch script of several tasks must start mislas with `srun`, or
//! rank 0 waits for ranks that never come (until `dist_timeout`).
use super::{Backend, Topology, ENV_MASTER_ADDR, ENV_MASTER_PORT};
use anyhow::{bail, Context, Result};
use std::time::Duration;

/// First port of the range a job's rendezvous port is taken from.
pub const PORT_BASE: u16 = 15000;
/// Size of that range.
pub const PORT_SPAN: u64 = 10000;

/// The port of job `job_id`'s rendezvous: [`PORT_BASE`] + `job_id` mod [`PORT_SPAN`].
pub fn port_of_job(job_id: u64) -> u16 {
    PORT_BASE + (job_id % PORT_SPAN) as u16
}

/// The topology `srun` gives this task, when `SLURM_PROCID` is set and the step has more
/// than one task; `None` otherwise (see the module's rules).
///
/// # Errors
/// A variable is missing or malformed (named, with its value), the rank is outside the world,
/// the node list cannot be read.
pub fn topology(
    env: &dyn Fn(&str) -> Option<String>,
    backend: Backend,
    timeout: Duration,
) -> Result<Option<Topology>> {
    let Some(rank) = env("SLURM_PROCID") else {
        return Ok(None);
    };
    let number = |name: &str, v: &str| -> Result<usize> {
        v.trim()
            .parse()
            .with_context(|| format!("{name} must be a whole number, is '{v}' (set by srun)"))
    };
    let rank = number("SLURM_PROCID", &rank)?;
    let (ws_name, ws) = match (env("SLURM_STEP_NUM_TASKS"), env("SLURM_NTASKS")) {
        (Some(v), _) => ("SLURM_STEP_NUM_TASKS", v),
        (None, Some(v)) => ("SLURM_NTASKS", v),
        (None, None) => return Ok(None),
    };
    let world_size = number(ws_name, &ws)?;
    if world_size <= 1 {
        return Ok(None);
    }
    if rank >= world_size {
        bail!("SLURM_PROCID is {rank}, but {ws_name} is {world_size}: a rank is 0 to {ws_name}−1");
    }
    let local_rank = match env("SLURM_LOCALID") {
        Some(v) => number("SLURM_LOCALID", &v)?,
        None => bail!("SLURM_PROCID is set, so SLURM_LOCALID must be too (srun sets both)"),
    };
    let local_size = local_size(env)?.unwrap_or(world_size).max(1);
    let master_addr = master_addr(env)?;
    let master_port = master_port(env)?;
    Ok(Some(Topology {
        rank,
        world_size,
        local_rank,
        local_size,
        master_addr,
        master_port,
        backend,
        timeout,
        launches_local_ranks: false,
    }))
}

/// The host of the rendezvous: `MASTER_ADDR`, else the first host of the step's (or the job's)
/// node list.
fn master_addr(env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    Ok(match env(ENV_MASTER_ADDR) {
        Some(a) => a,
        None => {
            let (name, list) = match (env("SLURM_STEP_NODELIST"), env("SLURM_JOB_NODELIST")) {
                (Some(l), _) => ("SLURM_STEP_NODELIST", l),
                (None, Some(l)) => ("SLURM_JOB_NODELIST", l),
                (None, None) => bail!(
                    "SLURM_PROCID is set but SLURM_JOB_NODELIST is not: the rendezvous host is \
                     its first node (or set {ENV_MASTER_ADDR})"
                ),
            };
            let hosts = expand_hostlist(&list).with_context(|| format!("{name} '{list}'"))?;
            hosts
                .into_iter()
                .next()
                .with_context(|| format!("{name} is empty"))?
        }
    })
}

/// The port of the rendezvous: `MASTER_PORT`, else [`port_of_job`] of `SLURM_JOB_ID`.
fn master_port(env: &dyn Fn(&str) -> Option<String>) -> Result<u16> {
    Ok(match (env(ENV_MASTER_PORT), env("SLURM_JOB_ID")) {
        (Some(p), _) => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| format!("{ENV_MASTER_PORT} must be a port 1–65535, is '{p}'"))?,
        (None, Some(id)) => port_of_job(
            id.trim()
                .parse()
                .with_context(|| format!("SLURM_JOB_ID must be a whole number, is '{id}'"))?,
        ),
        (None, None) => bail!(
            "SLURM_PROCID is set but SLURM_JOB_ID is not: the rendezvous port is derived from \
             it (or set {ENV_MASTER_PORT})"
        ),
    })
}

/// Ranks on this node: `SLURM_NTASKS_PER_NODE`, else the first count of Slurm's tasks-per-node
/// list (`2(x3),1`: two on each of the first three nodes, one on the fourth).
fn local_size(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    for name in [
        "SLURM_NTASKS_PER_NODE",
        "SLURM_STEP_TASKS_PER_NODE",
        "SLURM_TASKS_PER_NODE",
    ] {
        if let Some(v) = env(name) {
            let first = v.split([',', '(']).next().unwrap_or("");
            let n = first.trim().parse::<usize>().with_context(|| {
                format!("{name} must start with a whole number (e.g. 2 or 2(x3)), is '{v}'")
            })?;
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Expands a Slurm hostlist: `node[01-04,07]` → node01 … node04, node07; `a1,b[2-3]` → a1, b2,
/// b3; several bracket groups in one name multiply (`r[1-2]n[1-2]` → r1n1, r1n2, r2n1, r2n2);
/// a range keeps the zero padding of its first number (Slurm's `hostlist_expand`).
///
/// # Errors
/// An unbalanced bracket, an empty or descending range, a range that is not numbers.
pub fn expand_hostlist(list: &str) -> Result<Vec<String>> {
    let mut hosts = Vec::new();
    for item in split_top_level(list)? {
        let item = item.trim();
        if !item.is_empty() {
            hosts.extend(expand_one(item)?);
        }
    }
    Ok(hosts)
}

/// Splits at commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            bail!("unbalanced or nested brackets");
        }
    }
    if depth != 0 {
        bail!("a '[' without its ']'");
    }
    items.push(&list[start..]);
    Ok(items)
}

/// Expands one host name with bracket groups.
fn expand_one(item: &str) -> Result<Vec<String>> {
    let Some(open) = item.find('[') else {
        if item.contains(']') {
            bail!("a ']' without its '[' in '{item}'");
        }
        return Ok(vec![item.to_owned()]);
    };
    let close = item[open..].find(']').context("a '[' without its ']'")? + open;
    let (prefix, ranges, rest) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    let tails = expand_one(rest)?;
    let mut out = Vec::new();
    for r in ranges.split(',') {
        for n in expand_range(r.trim())? {
            out.extend(tails.iter().map(|t| format!("{prefix}{n}{t}")));
        }
    }
    Ok(out)
}

/// `01-04` → 01, 02, 03, 04; `7` → 7.
fn expand_range(r: &str) -> Result<Vec<String>> {
    let bad = || format!("'{r}' is not a number or a range A-B of numbers");
    let (a, b) = r.split_once('-').unwrap_or((r, r));
    if a.is_empty() || !a.bytes().all(|c| c.is_ascii_digit()) {
        bail!(bad());
    }
    let lo: u64 = a.parse().with_context(bad)?;
    let hi: u64 = b.parse().with_context(bad)?;
    if hi < lo {
        bail!("the range '{r}' runs backwards");
    }
    if hi - lo > 100_000 {
        bail!("the range '{r}' is too long");
    }
    let width = a.len();
    Ok((lo..=hi).map(|n| format!("{n:0width$}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn hostlists_expand_as_slurm_does() {
        let cases: &[(&str, &[&str])] = &[
            (
                "node[01-04,07]",
                &["node01", "node02", "node03", "node04", "node07"],
            ),
            ("a1,b[2-3]", &["a1", "b2", "b3"]),
            ("gpu-[8-10]", &["gpu-8", "gpu-9", "gpu-10"]),
            ("n[098-101]", &["n098", "n099", "n100", "n101"]),
            ("r[1-2]n[1-2]", &["r1n1", "r1n2", "r2n1", "r2n2"]),
            ("c[1]-ib", &["c1-ib"]),
            ("localhost", &["localhost"]),
        ];
        for (list, want) in cases {
            assert_eq!(expand_hostlist(list).unwrap(), *want, "{list}");
        }
        for bad in ["node[1-", "node]1", "n[a-b]", "n[3-1]", "n[[1]]", "n[]"] {
            assert!(expand_hostlist(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn srun_tasks_rank_from_slurm_variables() {
        let env = env_of(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "4"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "123456"),
        ]);
        let t = topology(&env, Backend::Nccl, Duration::from_secs(9))
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.rank, t.world_size, t.local_rank, t.local_size),
            (5, 8, 1, 4)
        );
        assert_eq!((t.master_addr.as_str(), t.master_port), ("gpu07", 18456));
        assert!(!t.launches_local_ranks);
        assert_eq!(t.device_spec(), "cuda:1");
        // The step's own count and node list win over the job's; MASTER_PORT over the id.
        let env = env_of(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_STEP_TASKS_PER_NODE", "1(x2)"),
            ("SLURM_JOB_NODELIST", "a1,b[2-3]"),
            ("SLURM_STEP_NODELIST", "b[2-3]"),
            ("SLURM_JOB_ID", "7"),
            ("MASTER_PORT", "29500"),
        ]);
        let t = topology(&env, Backend::Gloo, Duration::from_secs(9))
            .unwrap()
            .unwrap();
        assert_eq!((t.world_size, t.local_size), (2, 1));
        assert_eq!((t.master_addr.as_str(), t.master_port), ("b2", 29500));
    }

    #[test]
    fn one_task_or_no_slurm_is_one_process_and_bad_values_are_named() {
        let none = |pairs: &[(&str, &str)]| {
            topology(&env_of(pairs), Backend::Gloo, Duration::from_secs(1)).unwrap()
        };
        assert_eq!(none(&[]), None);
        assert_eq!(none(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]), None);
        let err = |pairs: &[(&str, &str)]| {
            format!(
                "{:#}",
                topology(&env_of(pairs), Backend::Gloo, Duration::from_secs(1)).unwrap_err()
            )
        };
        let base = [
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_JOB_NODELIST", "n1"),
            ("SLURM_JOB_ID", "3"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
            let mut v = base.to_vec();
            for (k, val) in extra {
                v.retain(|(k2, _)| k2 != k);
                v.push((k, val));
            }
            v
        };
        let e = err(&with(&[("SLURM_PROCID", "2")]));
        assert!(
            e.contains("SLURM_PROCID is 2, but SLURM_NTASKS is 2"),
            "{e}"
        );
        let e = err(&with(&[("SLURM_PROCID", "x")]));
        assert!(
            e.contains("SLURM_PROCID must be a whole number, is 'x'"),
            "{e}"
        );
        let e = err(&with(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_JOB_NODELIST", "n[1-"),
        ]));
        assert!(e.contains("SLURM_JOB_NODELIST 'n[1-'"), "{e}");
        let mut no_id = with(&[("SLURM_PROCID", "0")]);
        no_id.retain(|(k, _)| *k != "SLURM_JOB_ID");
        assert!(err(&no_id).contains("SLURM_JOB_ID is not"));
        assert_eq!(port_of_job(0), 15000);
        assert_eq!(port_of_job(29_999), 24999);
    }
}
