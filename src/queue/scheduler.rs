//! The scheduler of `mislas queue run`: it starts the queued runs as processes of their own,
//! with the durable start protocol of [`super`], and records how each ended.
use super::retry::{self, Attempt, Decision};
use super::{state, Job, Queue, FAULT_ENV};
use anyhow::{bail, Context, Result};
use rusqlite::params;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Holds `scheduler.lock` in the data folder while a scheduler runs.
#[derive(Debug)]
struct SchedulerLock {
    _file: File,
}

impl SchedulerLock {
    fn take(dir: &Path) -> Result<SchedulerLock> {
        let p = dir.join("scheduler.lock");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .with_context(|| format!("cannot open {}", p.display()))?;
        match f.try_lock() {
            Ok(()) => {
                use std::io::Write;
                f.set_len(0)?;
                write!(f, "{}", std::process::id())?;
                Ok(SchedulerLock { _file: f })
            }
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&p).unwrap_or_default();
                bail!(
                    "another scheduler (pid {}) is running this queue ({}); it starts the runs \
                     added here",
                    pid.trim(),
                    p.display()
                )
            }
            Err(fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// A run the scheduler started.
struct Running {
    id: i64,
    device: String,
    /// When its process was started (a checkpoint newer than this is progress).
    started: std::time::SystemTime,
    child: std::process::Child,
}

/// Aborts the process at `step` when [`FAULT_ENV`] names it (fault drills).
fn fault_point(step: &str) {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == step) {
        eprintln!("queue: fault drill: aborting {step}");
        std::process::abort();
    }
}

/// Runs the queue until no run is queued, starting or running: each of `devices` (`cpu`, or
/// `cuda:0`, `cuda:1`, …; `cpu/2` is a second slot on the CPU) runs one run at a time; `exe` is
/// the `mislas` executable. Runs left `starting` or `running` by a scheduler that ended are
/// adopted, ended or queued again, as the module's start protocol says. Prints each start and
/// end.
///
/// # Errors
/// Another scheduler runs (its pid is named), or the database cannot be used.
pub fn run_scheduler(queue: &mut Queue, devices: &[String], exe: &Path) -> Result<()> {
    let _lock = SchedulerLock::take(&queue.dir)?;
    let logs = queue.dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut s = Slots {
        running: Vec::new(),
        adopted: Vec::new(),
        logs: logs.clone(),
        shown: Default::default(),
    };
    s.recover(queue)?;
    loop {
        s.reap(queue)?;
        for device in devices {
            if s.busy(device) {
                continue;
            }
            let Some(job) = queue.take_next(device)? else {
                break;
            };
            fault_point("after_take");
            match start(&job, device, exe, &logs) {
                Ok(r) => {
                    fault_point("after_spawn");
                    queue.started(job.id, r.child.id(), device)?;
                    fault_point("after_running");
                    println!("queue: run {} ({}) started on {device}", job.id, job.name);
                    s.running.push(r);
                }
                Err(e) => {
                    eprintln!("queue: run {} could not start: {e:#}", job.id);
                    queue.ended(job.id, None, None)?;
                }
            }
        }
        let waiting = queue.list()?.iter().any(|j| j.state == state::QUEUED);
        if s.running.is_empty() && s.adopted.is_empty() && !waiting {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the scheduler's devices run: its own children, and runs a previous scheduler started
/// (`(id, device, pid)`), followed through their start locks.
struct Slots {
    running: Vec<Running>,
    adopted: Vec<(i64, String, Option<i64>)>,
    logs: PathBuf,
    /// Runs whose announced run folder is recorded in their row already.
    shown: std::collections::HashSet<i64>,
}

/// `logs/<id>.lock`: held while the run's processes live (module doc).
fn start_lock_path(logs: &Path, id: i64) -> PathBuf {
    logs.join(format!("{id}.lock"))
}

/// `logs/<id>.run_dir`: the run folder the run announced, once it has one.
fn announce_path(logs: &Path, id: i64) -> PathBuf {
    logs.join(format!("{id}.run_dir"))
}

/// Whether the processes of run `id` live: its start lock is held. A run without a lock file
/// (started by a scheduler of an earlier version) lives while its `pid` does.
fn run_alive(logs: &Path, id: i64, pid: Option<i64>) -> bool {
    match File::open(start_lock_path(logs, id)) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => false,
        },
        // SAFETY: kill with signal 0 only asks whether the process exists.
        Err(_) => pid.is_some_and(|p| p > 0 && unsafe { libc::kill(p as libc::pid_t, 0) } == 0),
    }
}

/// The run folder run `id` announced, if it exists.
fn announced_run_dir(logs: &Path, id: i64) -> Option<PathBuf> {
    let text = fs::read_to_string(announce_path(logs, id)).ok()?;
    let dir = PathBuf::from(text.trim());
    dir.is_dir().then_some(dir)
}

impl Slots {
    fn busy(&self, device: &str) -> bool {
        self.running.iter().any(|r| r.device == device)
            || self.adopted.iter().any(|(_, d, _)| d == device)
    }

    /// Takes over the runs a scheduler that ended left `starting` or `running`: a live one is
    /// adopted (and recorded `running`), a dead one is settled ([`Slots::settle`]).
    fn recover(&mut self, queue: &Queue) -> Result<()> {
        for j in queue.list()? {
            if j.state != state::STARTING && j.state != state::RUNNING {
                continue;
            }
            let device = j.device.clone().unwrap_or_default();
            if run_alive(&self.logs, j.id, j.pid) {
                if j.state == state::STARTING {
                    queue.db.execute(
                        "UPDATE jobs SET state = ?2 WHERE id = ?1",
                        params![j.id, state::RUNNING],
                    )?;
                }
                println!(
                    "queue: run {} ({}) on {device}, started by an earlier scheduler, adopted",
                    j.id, j.name
                );
                self.adopted.push((j.id, device, j.pid));
            } else {
                self.settle(queue, j.id)?;
            }
        }
        Ok(())
    }

    /// A run whose processes are gone and that no scheduler watched end: with its run folder,
    /// `ended` or started again as [`retry::decide`] says from that folder; without one, back
    /// in the queue.
    fn settle(&self, queue: &Queue, id: i64) -> Result<()> {
        match announced_run_dir(&self.logs, id) {
            Some(dir) => {
                let attempt = Attempt::read(Some(&dir), None, None, queue.attempt_start(id)?);
                let (decision, why) = queue.after_attempt(id, &attempt, Some(&dir))?;
                println!(
                    "queue: run {id} ended while no scheduler watched it: {} says how",
                    dir.display()
                );
                match decision {
                    Decision::Restart { .. } => println!("queue: run {id} {why}"),
                    Decision::Final(st) => hook_run_end(queue, id, st, Some(&dir), &why),
                }
            }
            None => {
                queue.requeue(id)?;
                println!("queue: run {id} never made its run folder: queued again");
            }
        }
        Ok(())
    }

    /// Records the run folder of each run that announced one since the last look, so that
    /// `queue ls` shows it while the run trains (an adopted one too).
    fn record_run_dirs(&mut self, queue: &Queue) -> Result<()> {
        let ids: Vec<i64> = (self.running.iter().map(|r| r.id))
            .chain(self.adopted.iter().map(|(id, _, _)| *id))
            .filter(|id| !self.shown.contains(id))
            .collect();
        for id in ids {
            if let Some(dir) = announced_run_dir(&self.logs, id) {
                queue.db.execute(
                    "UPDATE jobs SET run_dir = ?2 WHERE id = ?1",
                    params![id, dir.display().to_string()],
                )?;
                self.shown.insert(id);
            }
        }
        Ok(())
    }

    /// Records the runs that ended since the last look.
    fn reap(&mut self, queue: &Queue) -> Result<()> {
        let logs = self.logs.clone();
        let mut gone = Vec::new();
        self.adopted.retain(|(id, _, pid)| {
            let alive = run_alive(&logs, *id, *pid);
            if !alive {
                gone.push(*id);
            }
            alive
        });
        for id in gone {
            self.settle(queue, id)?;
        }
        self.record_run_dirs(queue)?;
        self.running.retain_mut(|r| match r.child.try_wait() {
            Ok(Some(status)) => {
                fault_point("before_ended");
                use std::os::unix::process::ExitStatusExt;
                let dir = announced_run_dir(&logs, r.id);
                let log = logs.join(format!("{}.log", r.id));
                let attempt =
                    Attempt::read(dir.as_deref(), status.code(), status.signal(), r.started)
                        .with_logged_failure(&log);
                println!("queue: run {} on {} ended ({status})", r.id, r.device);
                match queue.after_attempt(r.id, &attempt, dir.as_deref()) {
                    Ok((Decision::Restart { .. }, why)) => {
                        println!("queue: run {} {why}", r.id)
                    }
                    Ok((Decision::Final(st), why)) => {
                        if st != state::DONE {
                            println!("queue: run {} {st}: {why}", r.id);
                        }
                        let logged = retry::logged_failure(&log).map(|(_, m)| m);
                        let why = logged.unwrap_or(why);
                        hook_run_end(queue, r.id, st, dir.as_deref(), &why);
                    }
                    Err(e) => eprintln!("queue: run {}: {e:#}", r.id),
                }
                false
            }
            _ => true,
        });
        Ok(())
    }
}

/// The per-user `on_run_end` hook ([`crate::hooks`]) of run `id`, whose queue state `st` is
/// final (`why` says how it ended), told from its run folder `dir` when it made one (else by its
/// queue name). A failing hook is printed; the run's state stays as it is.
pub(super) fn hook_run_end(queue: &Queue, id: i64, st: &str, dir: Option<&Path>, why: &str) {
    use crate::hooks::{EndState, RunEnd};
    let end_state = match st {
        state::DONE => EndState::Finished,
        state::STOPPED => EndState::Stopped,
        _ => EndState::Failed,
    };
    let rows = queue.list().unwrap_or_default();
    let name = rows.into_iter().find(|j| j.id == id).map(|j| j.name);
    let name = name.unwrap_or_else(|| format!("queue run {id}"));
    let mut end = match dir {
        Some(d) => RunEnd::from_job_dir(d, end_state, &name),
        None => RunEnd::named(&name, end_state),
    };
    if end_state == EndState::Failed && end.message.is_none() {
        end.message = Some(why.to_owned());
    }
    if let Some(line) = crate::hooks::on_run_end(&end) {
        eprintln!("queue: run {id}: {line}");
    }
}

/// Starts one queued run on `device` as a process of its own (its own session, so that it
/// outlives the scheduler's terminal) that inherits the run's start lock, taken here (module
/// doc); its output goes to `logs/<id>.log`.
///
/// # Errors
/// The run's working folder is gone (its relative paths would not resolve; spawning there
/// fails with an error that names the executable instead), the log or lock cannot be created,
/// the lock is held (a process of this run still lives), or the process cannot be started.
fn start(job: &Job, device: &str, exe: &Path, logs: &Path) -> Result<Running> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    if !job.project.is_dir() {
        bail!(
            "its working folder {} (where it was queued; its relative paths start there) does \
             not exist any more: queue it again from a folder that holds what it names",
            job.project.display()
        );
    }
    let lock_path = start_lock_path(logs, job.id);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "{} is held: a process of run {} still lives",
            lock_path.display(),
            job.id
        );
    }
    let log = logs.join(format!("{}.log", job.id));
    let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let announce = announce_path(logs, job.id);
    let _ = fs::remove_file(&announce);
    let args = match &job.resume {
        Some(ck) => retry::resumed_args(&job.args, job.run_dir.as_deref(), ck),
        None => job.args.clone(),
    };
    let started = std::time::SystemTime::now();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--saved")
        .arg(&job.saved)
        .args(&args)
        .args(["device", device.split('/').next().unwrap_or(device)])
        .current_dir(&job.project)
        .env(crate::live::ANNOUNCE_ENV, &announce)
        .env_remove(crate::live::DETACHED_ENV)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    crate::live::detach_from_terminal(&mut cmd);
    let fd = lock.as_raw_fd();
    // SAFETY: fcntl is async-signal-safe; it clears close-on-exec of the lock's descriptor in
    // the child only, so that the run's process holds the start lock while it lives.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    // The child holds the lock now; this process's descriptor of it closes here.
    drop(lock);
    Ok(Running {
        id: job.id,
        device: device.to_owned(),
        started,
        child,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_start_left_by_a_dead_scheduler_is_decided_from_its_lock_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        let p = Path::new("/p");
        let mut q2 = Queue::open(dir.path()).unwrap();
        let ids: Vec<i64> = ["live", "ended", "never", "old"]
            .iter()
            .map(|n| q.add(n, &s(&["train"]), p, p).unwrap())
            .collect();
        for _ in &ids {
            q2.take_next("cpu").unwrap().unwrap();
        }
        // `live`: its process holds the start lock (this handle plays it), no pid recorded.
        let held = File::create(start_lock_path(&logs, ids[0])).unwrap();
        held.try_lock().unwrap();
        // `ended`: lock free, and it announced a run folder that exists.
        let run = dir.path().join("saved/ended_202601010000");
        fs::create_dir_all(&run).unwrap();
        File::create(start_lock_path(&logs, ids[1])).unwrap();
        fs::write(announce_path(&logs, ids[1]), run.display().to_string()).unwrap();
        // `never`: taken, lock free, no folder: it never did any work.
        File::create(start_lock_path(&logs, ids[2])).unwrap();
        // `old`: no lock file (an earlier version's start), `running` with a dead pid.
        q.started(ids[3], 999_999_999, "cpu").unwrap();

        let mut slots = Slots {
            running: Vec::new(),
            adopted: Vec::new(),
            logs: logs.clone(),
            shown: Default::default(),
        };
        slots.recover(&q).unwrap();
        let states = |q: &Queue| -> Vec<(String, Option<PathBuf>)> {
            q.list()
                .unwrap()
                .into_iter()
                .map(|j| (j.state, j.run_dir))
                .collect()
        };
        assert_eq!(
            states(&q),
            [
                (state::RUNNING.to_owned(), None),
                (state::ENDED.to_owned(), Some(run.clone())),
                (state::QUEUED.to_owned(), None),
                (state::QUEUED.to_owned(), None),
            ]
        );
        assert_eq!(slots.adopted, [(ids[0], "cpu".to_owned(), None)]);
        assert!(slots.busy("cpu"), "the adopted run keeps its device");

        // Still alive: nothing changes.
        slots.reap(&q).unwrap();
        assert_eq!(slots.adopted.len(), 1);
        // Its process announces a folder: `queue ls` shows it while it trains.
        let live_run = dir.path().join("saved/live_202601010000");
        fs::create_dir_all(&live_run).unwrap();
        fs::write(announce_path(&logs, ids[0]), live_run.display().to_string()).unwrap();
        slots.reap(&q).unwrap();
        assert_eq!(
            states(&q)[0],
            (state::RUNNING.to_owned(), Some(live_run.clone()))
        );
        // It ends: `ended`, with the folder.
        drop(held);
        slots.reap(&q).unwrap();
        assert!(slots.adopted.is_empty() && !slots.busy("cpu"));
        assert_eq!(states(&q)[0], (state::ENDED.to_owned(), Some(live_run)));
    }

    /// A run queued from a folder that is gone is not spawned (spawning there would fail with
    /// "No such file or directory" about the executable): the error names the folder, and
    /// nothing is written for it.
    #[test]
    fn a_run_whose_working_folder_is_gone_says_which_folder() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let gone = dir.path().join("worktree-removed");
        q.add("x", &s(&["train"]), &gone, dir.path()).unwrap();
        let job = q.list().unwrap().remove(0);
        let logs = dir.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        let exe = std::env::current_exe().unwrap();
        let e = format!("{:#}", start(&job, "cpu", &exe, &logs).err().unwrap());
        assert!(
            e.starts_with(&format!(
                "its working folder {} (where it was queued",
                gone.display()
            )),
            "{e}"
        );
        assert_eq!(fs::read_dir(&logs).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn a_second_scheduler_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SchedulerLock::take(dir.path()).unwrap();
        let e = SchedulerLock::take(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    }
}
