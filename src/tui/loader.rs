//! Reading runs, metrics and the queue off the UI thread: the loop hands each read to a
//! [`Loader`] thread and goes on drawing; the answers come back as [`Msg`]s on a channel the
//! loop selects over, like the trainer's events. A listing of `saved/` with many runs, a long
//! `metrics.jsonl`, or a queue database locked by a scheduler costs the loader time, never a
//! frame. Requests that pile up while one is read (a tick each second on a slow disk) are
//! merged: each kind of read is done once per turn.
use super::app::{Msg, QueueOp, Removal};
use crate::config::Config;
use crate::run_dir::{list_runs, read_metrics};
use crate::runs::status::read_facts;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A read (or a change to the queue) the loader does.
#[derive(Debug, Clone)]
pub enum Load {
    /// List the runs of `saved/` and their folders' facts; answers [`Msg::Runs`].
    Runs,
    /// A run folder's facts, and its metrics when they changed; answers [`Msg::Facts`] and
    /// [`Msg::Metrics`].
    Metrics(PathBuf),
    /// Read the queue; answers [`Msg::Queue`].
    Queue,
    /// Change the queue; answers [`Msg::QueueChanged`], then [`Msg::Queue`].
    QueueOp(QueueOp),
    /// Archive or delete a run folder and remove its queue entries; answers [`Msg::Removed`],
    /// then [`Msg::Runs`].
    Remove(PathBuf, Removal),
}

/// Where the loader reads: the project root (jobs are queued against it), its `saved/`, and
/// the queue's folder (`None`: the per-user data folder).
#[derive(Debug, Clone)]
pub struct Places {
    /// The project root.
    pub root: PathBuf,
    /// Its `saved/`.
    pub saved_root: PathBuf,
    /// The queue database's folder, when not the per-user one.
    pub queue_dir: Option<PathBuf>,
}

/// The loader thread's handle: send it [`Load`]s, receive [`Msg`]s.
pub struct Loader {
    requests: Sender<Load>,
    /// Its answers.
    pub answers: Receiver<Msg>,
}

impl Loader {
    /// Starts the loader thread over `places`.
    ///
    /// # Errors
    /// The thread cannot be started (the system's reason).
    pub fn spawn(places: Places) -> std::io::Result<Self> {
        let (requests, rx) = unbounded::<Load>();
        let (tx, answers) = unbounded();
        std::thread::Builder::new()
            .name("mislas-loader".into())
            .spawn(move || serve(&places, &rx, &tx))?;
        Ok(Loader { requests, answers })
    }

    /// Asks for `load`; the answer comes on [`Loader::answers`].
    pub fn ask(&self, load: Load) {
        let _ = self.requests.send(load);
    }
}

/// The loader's loop: takes every pending request, merges repeated reads, answers each; ends
/// when the UI drops its handle.
fn serve(places: &Places, rx: &Receiver<Load>, tx: &Sender<Msg>) {
    let mut seen = MetricsSeen::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for load in merged(batch) {
            for msg in answer(places, &mut seen, load) {
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
    }
}

/// `batch` with repeated reads dropped (the first of each kept, in order); changes to the
/// queue are all kept.
pub fn merged(batch: Vec<Load>) -> Vec<Load> {
    let mut out: Vec<Load> = Vec::new();
    for load in batch {
        let repeated = out.iter().any(|o| match (o, &load) {
            (Load::Runs, Load::Runs) | (Load::Queue, Load::Queue) => true,
            (Load::Metrics(a), Load::Metrics(b)) => a == b,
            _ => false,
        });
        if !repeated {
            out.push(load);
        }
    }
    out
}

/// Size and modification time of each `metrics.jsonl` when last read.
type MetricsSeen = HashMap<PathBuf, Option<(u64, Option<SystemTime>)>>;

/// The messages that answer `load`.
pub fn answer(places: &Places, seen: &mut MetricsSeen, load: Load) -> Vec<Msg> {
    match load {
        Load::Runs => {
            let runs = list_runs(&places.saved_root);
            let facts = runs
                .iter()
                .map(|r| (r.dir.clone(), read_facts(&r.dir, r.config.as_ref())))
                .collect();
            vec![Msg::Runs(runs, facts)]
        }
        Load::Metrics(dir) => metrics(seen, dir),
        Load::Queue => vec![Msg::Queue(list_queue(places))],
        Load::QueueOp(op) => {
            let done = open_queue(places).and_then(|q| {
                super::queue_op(&q, op, &places.root, &places.saved_root)
                    .map_err(|e| format!("{e:#}"))
            });
            vec![Msg::QueueChanged(done), Msg::Queue(list_queue(places))]
        }
        Load::Remove(dir, how) => {
            let done = remove_run(places, &dir, how);
            let mut out = vec![Msg::Removed(done)];
            out.extend(answer(places, seen, Load::Runs));
            out
        }
    }
}

/// Whether `a` and `b` name one folder (as written, or once resolved).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Archives or deletes the run folder `dir` ([`crate::runs::archive`]) and removes the queue
/// entries that ran it; what was done, in words, or why nothing was. A run the queue has
/// running, starting or handed to Slurm is refused before anything is touched.
pub fn remove_run(places: &Places, dir: &Path, how: Removal) -> Result<String, String> {
    use crate::queue::state;
    use crate::runs::archive::{archive_run, delete_run};
    let queue = open_queue(places);
    let entries: Vec<crate::queue::Job> = match &queue {
        Ok(q) => q.list().map_err(|e| format!("{e:#}"))?,
        Err(_) => Vec::new(),
    }
    .into_iter()
    .filter(|j| j.run_dir.as_deref().is_some_and(|d| same_dir(d, dir)))
    .collect();
    let busy = [state::RUNNING, state::STARTING, state::SUBMITTED];
    if let Some(j) = entries.iter().find(|j| busy.contains(&j.state.as_str())) {
        return Err(format!(
            "{}: its queue entry {} is {}: stop it first; nothing was moved or deleted",
            dir.display(),
            j.id,
            j.state
        ));
    }
    // Short enough for the status line: the run's name, the archive under the project.
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let mut said = match how {
        Removal::Archive => archive_run(&places.saved_root, dir).map(|to| {
            let to = to.strip_prefix(&places.root).unwrap_or(&to).to_owned();
            format!("archived {name} to {}", to.display())
        }),
        Removal::Delete => delete_run(&places.saved_root, dir).map(|()| format!("deleted {name}")),
    }
    .map_err(|e| format!("{e:#}"))?;
    if let Ok(q) = &queue {
        for j in entries {
            match q.remove(j.id) {
                Ok(()) => said.push_str(&format!("; removed queue entry {}", j.id)),
                Err(e) => said.push_str(&format!("; queue entry {} stays: {e:#}", j.id)),
            }
        }
    }
    Ok(said)
}

/// The queue database (opened for each use: other front ends and the scheduler use it too).
fn open_queue(places: &Places) -> Result<crate::queue::Queue, String> {
    match &places.queue_dir {
        Some(d) => Ok(d.clone()),
        None => crate::queue::data_dir(),
    }
    .and_then(|d| crate::queue::Queue::open(&d))
    .map_err(|e| format!("{e:#}"))
}

/// Seconds between two polls of Slurm from the UI: the queue view reads the database every
/// 2 s, but each poll asks `squeue` once per submitted run, and a cluster's controller is not
/// to be asked that often (Slurm's documentation warns against tight `squeue` loops).
const SLURM_POLL_SECS: u64 = 30;

/// The queue's jobs, or why they cannot be read.
/// The states of runs handed to Slurm are asked of Slurm first, as `mislas queue ls` does, at
/// most every [`SLURM_POLL_SECS`] (a Slurm that cannot be asked leaves them as last seen).
fn list_queue(places: &Places) -> Result<Vec<crate::queue::Job>, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_POLL: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    open_queue(places).and_then(|q| {
        let last = LAST_POLL.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SLURM_POLL_SECS {
            LAST_POLL.store(now, Ordering::Relaxed);
            let _ = q.refresh_slurm();
        }
        q.list().map_err(|e| format!("{e:#}"))
    })
}

/// A run's folder facts, and its metrics when `metrics.jsonl` changed since last read (a
/// followed run costs a stat per tick otherwise).
fn metrics(seen: &mut MetricsSeen, dir: PathBuf) -> Vec<Msg> {
    let config = Config::from_file(&dir.join("config.yaml")).ok();
    let facts = Msg::Facts(
        dir.clone(),
        read_facts(&dir, config.as_ref().map(|l| &l.config)),
    );
    let stamp = std::fs::metadata(dir.join("metrics.jsonl"))
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    if seen.get(&dir) == Some(&stamp) {
        return vec![facts];
    }
    seen.insert(dir.clone(), stamp);
    let epochs = match stamp {
        Some(_) => read_metrics(&dir).map_err(|e| format!("{e:#}")),
        None => Ok(Vec::new()),
    };
    vec![facts, Msg::Metrics(dir, epochs)]
}
