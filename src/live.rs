//! Runs that outlive the terminal: what a running `mislas` process leaves in its run folder so
//! that any other front end can follow and control it.
//!
//! ```text
//! saved/<run>/
//!   events.jsonl   one JSON Event per line, append-only; a line counts once it ends in '\n'
//!   live.json      the process writing the run: pid, where this session's events begin
//!   run.lock       flock'ed (exclusive) by that process while it lives: free lock = dead run
//!   live.node      the host that process runs on, and its Slurm job when it is one's
//!   control.sock   Unix socket, owner-only (0600): `pause`, `resume`, `stop` (one per line)
//! ```
//!
//! The process side is [`publish`]: it sits between the trainer thread's event channel and the
//! process's own front end, writes every event to `events.jsonl` of the job's first run folder
//! (a pipeline's stage-2 events go there too; its stage-2 folder gets a `live.json` naming the
//! first folder), holds the lock and serves the socket. The follower side is [`attach`]: a
//! crossbeam `Receiver<Event>` — the channel type a trainer thread gives — fed from the file,
//! and a `Sender<Control>` whose controls go over the socket. Every attached front end may
//! control the run (the socket is the owner's only; a stop from any of them stops the run).
use crate::events::{Control, Event, Failure, FailureKind};
use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The event file of a run folder.
pub const EVENTS: &str = "events.jsonl";
/// The process that writes the run, as JSON ([`LiveInfo`]).
pub const LIVE: &str = "live.json";
/// The liveness lock: held (flock, exclusive) by the run's process while it lives.
pub const LOCK: &str = "run.lock";
/// The control socket.
pub const SOCKET: &str = "control.sock";
/// The machine of the process writing the run: its host name on the first line, its Slurm
/// job (`12`, or `12_3` for an array's task) on the second when it runs in one.
pub const NODE: &str = "live.node";
/// Environment variable: a file the process writes its job folder's path into once known (the
/// terminal UI uses it to find the run it launched).
pub const ANNOUNCE_ENV: &str = "MISLAS_ANNOUNCE";

/// Environment variable set on a run started by [`launch`] (a detached run): the run itself
/// runs the per-user `on_run_end` hook when it ends ([`crate::hooks`]); a queued run's hook is
/// the scheduler's.
pub const DETACHED_ENV: &str = "MISLAS_DETACHED";

/// How often a follower looks for new lines at the end of the event file.
const POLL: Duration = Duration::from_millis(100);

/// What `live.json` says about the process writing a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveInfo {
    /// Process id.
    pub pid: u32,
    /// The folder whose `events.jsonl` and `control.sock` serve this job (this folder, or a
    /// pipeline's stage-1 folder).
    pub job_dir: PathBuf,
    /// Byte offset in `events.jsonl` where this process's events begin (a resumed run appends
    /// to the file of its earlier sessions).
    pub events_offset: u64,
    /// Stages this job runs (2 for a pipeline).
    pub stages: usize,
}

/// Whether the process that wrote `dir` lives: `None` when no process ever held its lock (a run
/// of an older version, or one not started yet), `Some(false)` when the lock is free (the
/// process ended, was killed, or the machine restarted), `Some(true)` while it is held.
///
/// A run written by a process on another machine ([`remote_node`]: a Slurm job on another
/// node, the run folder on a shared file system) cannot be checked through its lock (flock
/// is per machine on many cluster file systems): it is taken as live until its event file ends
/// with its last event; it is never said to have died.
pub fn is_alive(dir: &Path) -> Option<bool> {
    if remote_node(dir).is_some() {
        let job_dir = read_info(dir).map_or(dir.to_path_buf(), |i| i.job_dir);
        let ended = matches!(
            last_event(&job_dir),
            Some(Event::Finished | Event::Failed(_))
        );
        return Some(!ended);
    }
    let f = File::open(dir.join(LOCK)).ok()?;
    match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            Some(false)
        }
        Err(fs::TryLockError::WouldBlock) => Some(true),
        Err(fs::TryLockError::Error(_)) => None,
    }
}

/// Whether the run in `dir` died: its process is gone (its lock is free) and its job's event
/// file does not end with [`Event::Finished`] or [`Event::Failed`] (a stop also ends with
/// `Finished`). `false` for a live run, one that ended, or a folder no process of this version
/// wrote.
pub fn died_without_end(dir: &Path) -> bool {
    if is_alive(dir) != Some(false) {
        return false;
    }
    let job_dir = read_info(dir).map_or(dir.to_path_buf(), |i| i.job_dir);
    !matches!(
        last_event(&job_dir),
        Some(Event::Finished | Event::Failed(_))
    )
}

/// The last complete event of `dir/events.jsonl` (read from its last 64 KiB).
pub fn last_event(dir: &Path) -> Option<Event> {
    let mut f = File::open(dir.join(EVENTS)).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))
        .ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    take_events(&mut buf).pop()
}

/// This machine's host name (`gethostname`, as Slurm names nodes by their short name: up to
/// the first dot).
pub fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    name.split('.').next().unwrap_or_default().to_owned()
}

/// The node and Slurm job (`node`, `Some(job)`) of the process writing `dir`, as its
/// [`NODE`] file says, when that node is not this machine; `None` for a run of this machine
/// or one without the file.
pub fn remote_node(dir: &Path) -> Option<(String, Option<String>)> {
    let text = fs::read_to_string(dir.join(NODE)).ok()?;
    let mut lines = text.lines().map(str::trim);
    let host = lines.next().filter(|h| !h.is_empty())?;
    let job = lines.next().filter(|j| !j.is_empty()).map(str::to_owned);
    (host != this_host()).then(|| (host.to_owned(), job))
}

/// `on node X (Slurm job 12)` for a run written on another machine ([`remote_node`]).
pub fn remote_note(dir: &Path) -> Option<String> {
    let (host, job) = remote_node(dir)?;
    Some(match job {
        Some(j) => format!("on node {host} (Slurm job {j})"),
        None => format!("on node {host}"),
    })
}

/// Writes `dir/`[`NODE`] for this process: this host, and the Slurm job it runs in.
fn write_node(dir: &Path) -> Result<()> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let job = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(a), Some(t)) => Some(format!("{a}_{t}")),
        _ => var("SLURM_JOB_ID"),
    };
    let p = dir.join(NODE);
    fs::write(
        &p,
        format!("{}\n{}\n", this_host(), job.unwrap_or_default()),
    )
    .with_context(|| format!("cannot write {}", p.display()))
}

/// Reads `live.json` of `dir`.
///
/// # Errors
/// The file is missing or not a [`LiveInfo`].
pub fn read_info(dir: &Path) -> Result<LiveInfo> {
    let p = dir.join(LIVE);
    let text = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a live-run record", p.display()))
}

/// The append-only event file of a run folder. A line is written with one `write_all` of the
/// JSON and its newline, then flushed; a reader takes a line only once its newline is there, so
/// a line cut short (a full disk) is never read as an event.
#[derive(Debug)]
pub struct EventLog {
    file: File,
    path: PathBuf,
}

impl EventLog {
    /// Opens (or creates) `dir/events.jsonl` for appending. A last line left without its
    /// newline by an earlier process gets one, so that it stays one unreadable line of its own.
    ///
    /// # Errors
    /// The file cannot be opened or written.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(EVENTS);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Ok(EventLog { file, path })
    }

    /// Bytes in the file now.
    ///
    /// # Errors
    /// The file's metadata cannot be read.
    pub fn bytes(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Appends one event as a line.
    ///
    /// # Errors
    /// The line cannot be written (disk full, file system gone), named with the file.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Splits the complete lines (ending in `\n`) off the front of `buf`, leaving a partial last
/// line in it; each line is parsed as an [`Event`]. A complete line that is not an event (cut
/// short by an earlier full disk, then closed by a later session) is skipped.
pub fn take_events(buf: &mut Vec<u8>) -> Vec<Event> {
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(end + 1);
    let complete = std::mem::replace(buf, rest);
    complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Holds a run folder for this process: the lock, `live.json` and (in the job's folder) the
/// control socket. Dropped at the end of the process (or of the job), it removes the socket.
#[derive(Debug)]
pub struct Holder {
    _lock: File,
    socket: Option<PathBuf>,
}

impl Holder {
    /// Takes the lock of `dir`, replaces a stale socket, writes `live.json`.
    ///
    /// # Errors
    /// Another live process holds the folder, or a file cannot be written.
    pub fn take(dir: &Path, info: &LiveInfo) -> Result<Holder> {
        let p = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("cannot open {}", p.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let pid = read_info(dir).map_or("?".into(), |i| i.pid.to_string());
                bail!(
                    "{} is being written by another live mislas process (pid {pid})",
                    dir.display()
                )
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", p.display()))
            }
        }
        let live = dir.join(LIVE);
        fs::write(&live, serde_json::to_string(info)?)
            .with_context(|| format!("cannot write {}", live.display()))?;
        write_node(dir)?;
        Ok(Holder {
            _lock: lock,
            socket: None,
        })
    }

    /// Serves `dir/control.sock` (owner-only): each line `pause`, `resume` or `stop` is sent on
    /// `controls` and answered `ok`; anything else is answered with an error line. A socket
    /// left by a dead process is replaced (the lock says it is dead).
    ///
    /// # Errors
    /// The socket cannot be created (its path is longer than the 107 bytes a Unix socket path
    /// may have, or the folder is not writable).
    pub fn serve(&mut self, dir: &Path, controls: Sender<Control>) -> Result<()> {
        let p = dir.join(SOCKET);
        let _ = fs::remove_file(&p);
        let listener =
            UnixListener::bind(&p).with_context(|| format!("cannot create {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} owner-only", p.display()))?;
        self.socket = Some(p);
        std::thread::Builder::new()
            .name("mislas-control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let controls = controls.clone();
                    std::thread::spawn(move || serve_client(stream, &controls));
                }
            })?;
        Ok(())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(p) = &self.socket {
            let _ = fs::remove_file(p);
        }
    }
}

fn serve_client(stream: UnixStream, controls: &Sender<Control>) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        let reply = match parse_control(line.trim()) {
            Some(c) => match controls.send(c) {
                Ok(()) => "ok".to_owned(),
                Err(_) => "error: the run has ended".to_owned(),
            },
            None => format!("error: '{}' is not pause, resume or stop", line.trim()),
        };
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

fn parse_control(word: &str) -> Option<Control> {
    match word {
        "pause" => Some(Control::Pause),
        "resume" => Some(Control::Resume),
        "stop" => Some(Control::Stop),
        _ => None,
    }
}

fn control_word(c: Control) -> &'static str {
    match c {
        Control::Pause => "pause",
        Control::Resume => "resume",
        Control::Stop => "stop",
    }
}

/// Sends `control` to the run whose job folder is `dir`, over its socket.
///
/// # Errors
/// No process serves the socket (the run ended or died), or it refused the control.
pub fn send_control(dir: &Path, control: Control) -> Result<()> {
    let p = dir.join(SOCKET);
    let mut s = UnixStream::connect(&p).with_context(|| {
        format!(
            "cannot reach the run through {} (has its process ended?)",
            p.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{}", control_word(control))?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    match reply.trim() {
        "ok" => Ok(()),
        other => bail!("{}: {other}", p.display()),
    }
}

/// The process side: starts a thread that writes each event of `events` (the trainer's) to the
/// job folder's `events.jsonl` and passes it on to the returned receiver (this process's front
/// end). The job folder is the run folder of the first [`Event::StageStarted`]; events before
/// it wait in memory. There the thread takes the lock, writes `live.json`, serves the control
/// socket (controls go to `controls`) and writes the folder's path to the file named by
/// [`ANNOUNCE_ENV`], when set. A write that fails stops the run (its checkpoint is saved as for
/// any stop) and is reported on the returned channel as a log line.
pub fn publish(
    events: Receiver<Event>,
    controls: Sender<Control>,
    stages: usize,
) -> Receiver<Event> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("mislas-publish".into())
        .spawn(move || {
            let mut p = Publisher {
                controls,
                stages,
                pending: Vec::new(),
                job: None,
                holders: Vec::new(),
                broken: false,
            };
            for e in events.iter() {
                for note in p.record(&e) {
                    let _ = tx.send(Event::Log(note));
                }
                let _ = tx.send(e);
            }
        })
        .expect("cannot start the event writer thread");
    rx
}

struct Publisher {
    controls: Sender<Control>,
    stages: usize,
    pending: Vec<Event>,
    job: Option<(PathBuf, EventLog)>,
    holders: Vec<Holder>,
    broken: bool,
}

impl Publisher {
    /// Records one event; returns lines to show this process's front end.
    fn record(&mut self, e: &Event) -> Vec<String> {
        if self.broken {
            return Vec::new();
        }
        let mut notes = Vec::new();
        if let Event::StageStarted(s) = e {
            if let Err(err) = self.hold(&s.run_dir) {
                notes.push(format!("=> this run cannot be attached to: {err:#}"));
            }
        }
        let Some((_, log)) = &mut self.job else {
            self.pending.push(e.clone());
            return notes;
        };
        let result = std::mem::take(&mut self.pending)
            .iter()
            .chain(std::iter::once(e))
            .try_for_each(|ev| log.append(ev));
        if let Err(err) = result {
            self.broken = true;
            let _ = self.controls.send(Control::Stop);
            notes.push(format!(
                "=> {err:#}: stopping the run (its checkpoint is saved) so that no event is lost"
            ));
        }
        notes
    }

    /// Takes `dir` for this process: the job folder on the first stage, a pointer to it after.
    fn hold(&mut self, dir: &Path) -> Result<()> {
        if let Some((job_dir, _)) = &self.job {
            if job_dir == dir {
                return Ok(());
            }
            let info = LiveInfo {
                pid: std::process::id(),
                job_dir: job_dir.clone(),
                events_offset: 0,
                stages: self.stages,
            };
            self.holders.push(Holder::take(dir, &info)?);
            return Ok(());
        }
        let log = EventLog::open(dir)?;
        let info = LiveInfo {
            pid: std::process::id(),
            job_dir: dir.to_path_buf(),
            events_offset: log.bytes()?,
            stages: self.stages,
        };
        let mut holder = Holder::take(dir, &info)?;
        self.job = Some((dir.to_path_buf(), log));
        let served = holder.serve(dir, self.controls.clone());
        self.holders.push(holder);
        if let Some(file) = std::env::var_os(ANNOUNCE_ENV) {
            fs::write(&file, dir.display().to_string())
                .with_context(|| format!("cannot write {}", Path::new(&file).display()))?;
        }
        served
    }
}

/// A followed run: its events and a way to control it, as a trainer thread's
/// [`crate::engine::RunHandle`] gives them.
#[derive(Debug)]
pub struct Remote {
    /// Events of the run, replayed from the start of its current session, then as they come.
    pub events: Receiver<Event>,
    /// Controls, sent over the run's socket.
    pub controls: Sender<Control>,
}

/// Attaches to the run whose job folder is `dir` (a stage-2 folder leads to its job folder):
/// replays `events.jsonl` from where this session began, then follows it. The channel ends
/// after [`Event::Finished`] or [`Event::Failed`]; when the process dies without one (kill -9,
/// a restart) or the folder is deleted, a last [`Event::Failed`] says so (with the checkpoint a
/// resume continues from).
///
/// # Errors
/// `dir` holds no run written by a process of this version (no `live.json`).
pub fn attach(dir: &Path) -> Result<Remote> {
    let info = read_info(dir)?;
    let dir = match info.job_dir != dir {
        true => info.job_dir.clone(),
        false => dir.to_path_buf(),
    };
    let info = read_info(&dir)?;
    let (etx, erx) = crossbeam_channel::unbounded();
    let (ctx, crx) = crossbeam_channel::unbounded::<Control>();
    let notes = etx.clone();
    let control_dir = dir.clone();
    std::thread::Builder::new()
        .name("mislas-controls".into())
        .spawn(move || {
            for c in crx.iter() {
                if let Err(e) = send_control(&control_dir, c) {
                    let _ = notes.send(Event::Log(format!("=> {e:#}")));
                }
            }
        })?;
    std::thread::Builder::new()
        .name("mislas-follow".into())
        .spawn(move || follow_file(&dir, info.events_offset, &etx))?;
    Ok(Remote {
        events: erx,
        controls: ctx,
    })
}

/// Reads `dir/events.jsonl` from `offset` into `tx` until the run's last event, its death, or
/// the folder's removal.
fn follow_file(dir: &Path, offset: u64, tx: &Sender<Event>) {
    let path = dir.join(EVENTS);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("cannot read {}: {e}", path.display());
            let _ = tx.send(Event::Failed(Failure::new(FailureKind::Io, msg)));
            return;
        }
    };
    let _ = file.seek(SeekFrom::Start(offset));
    if let Some(note) = remote_note(dir) {
        let _ = tx.send(Event::Log(format!(
            "=> the run is {note}: its process cannot be checked from this machine; \
             following its event file until the run ends"
        )));
    }
    let mut buf = Vec::new();
    loop {
        // Liveness first: a process that dies after this still has all its lines read below.
        let alive = is_alive(dir) == Some(true);
        let mut chunk = Vec::new();
        if file.read_to_end(&mut chunk).is_err() {
            return;
        }
        buf.extend(chunk);
        for e in take_events(&mut buf) {
            let last = matches!(e, Event::Finished | Event::Failed(_));
            if tx.send(e).is_err() || last {
                return;
            }
        }
        if !dir.is_dir() {
            let msg = format!("the run folder {} was deleted", dir.display());
            let _ = tx.send(Event::Failed(Failure::new(FailureKind::Io, msg)));
            return;
        }
        if !alive {
            let _ = tx.send(Event::Failed(died(dir)));
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// The failure of a run whose process ended without a last event.
pub fn died(dir: &Path) -> Failure {
    let pid = read_info(dir).map_or("?".into(), |i| i.pid.to_string());
    let ckpt = crate::config::Config::from_file(&dir.join("config.yaml"))
        .map(|l| dir.join(l.config.model_dir).join(crate::run_dir::CURRENT))
        .ok()
        .filter(|p| p.is_file());
    let mut f = Failure::new(
        FailureKind::Killed,
        format!(
            "the run's process (pid {pid}) ended without a last event: it was killed (kill -9) \
             or the machine restarted{}",
            match &ckpt {
                Some(p) => format!("; its last checkpoint is {}", p.display()),
                None => "; it wrote no checkpoint".to_owned(),
            }
        ),
    );
    f.resume_from = ckpt;
    f
}

/// Makes `cmd` start in a session of its own (`setsid`), without a controlling terminal, so that
/// the process outlives the terminal (and the process) that started it: a hang-up of that
/// terminal does not reach it.
pub fn detach_from_terminal(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent's memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `job` as a `mislas train` or `mislas pipeline` process of its own, in a session of
/// its own ([`detach_from_terminal`]), so that it outlives this process and its terminal, and
/// returns it as a [`Remote`]. Its configurations are written as YAML, and its output goes to
/// `output.log`, in `saved_root/.launch/<time>/`. Events flow once the process has its run
/// folder; a process that ends before (an unusable configuration) is reported as an
/// [`Event::Failed`] with its error lines. Controls sent before then wait.
///
/// # Errors
/// The files cannot be written or the process cannot be started.
pub fn launch(job: &crate::wire::Job, saved_root: &Path, project_root: &Path) -> Result<Remote> {
    use crate::wire::Job;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let launch_dir = saved_root.join(".launch").join(stamp.to_string());
    fs::create_dir_all(&launch_dir)
        .with_context(|| format!("cannot create {}", launch_dir.display()))?;
    let write = |name: &str, cfg: &crate::config::Config| -> Result<PathBuf> {
        let p = launch_dir.join(name);
        fs::write(&p, cfg.to_yaml()).with_context(|| format!("cannot write {}", p.display()))?;
        Ok(p)
    };
    let exe = match std::env::var_os(crate::distributed::launch::ENV_BIN) {
        Some(bin) => PathBuf::from(bin),
        None => std::env::current_exe().context("cannot find the mislas executable")?,
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--saved").arg(saved_root);
    match job {
        Job::Single(cfg) => cmd.arg("train").arg("--cfg").arg(write("stage.yaml", cfg)?),
        Job::Pipeline { stage1, stage2 } => {
            cmd.arg("pipeline")
                .arg("--stage1")
                .arg(write("stage1.yaml", stage1)?);
            for (i, c) in stage2.iter().enumerate() {
                let file = match i {
                    0 => "stage2.yaml".to_owned(),
                    _ => format!("stage2_{}.yaml", i + 1),
                };
                cmd.arg("--stage2").arg(write(&file, c)?);
            }
            &mut cmd
        }
    };
    let output = launch_dir.join("output.log");
    let out =
        File::create(&output).with_context(|| format!("cannot create {}", output.display()))?;
    let announce = launch_dir.join("run_dir");
    cmd.current_dir(project_root)
        .env(ANNOUNCE_ENV, &announce)
        .env(DETACHED_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    detach_from_terminal(&mut cmd);
    let child = cmd
        .spawn()
        .context("cannot start the run's mislas process")?;
    let ended = reap_when_ended(child)?;
    let (etx, erx) = crossbeam_channel::unbounded();
    let (ctx, crx) = crossbeam_channel::unbounded::<Control>();
    std::thread::Builder::new()
        .name("mislas-launch".into())
        .spawn(move || follow_launched(&ended, &announce, &output, &etx, crx))?;
    Ok(Remote {
        events: erx,
        controls: ctx,
    })
}

/// Waits for `child` in a thread of its own, so that it is reaped the moment it ends: no
/// `<defunct>` process is left while this process lives, however long its front end keeps
/// following the run. Its exit status comes on the returned channel.
///
/// # Errors
/// The thread cannot be started.
pub fn reap_when_ended(
    mut child: std::process::Child,
) -> Result<Receiver<std::process::ExitStatus>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("mislas-reaper".into())
        .spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        })
        .context("cannot start the thread that waits for the run's process")?;
    Ok(rx)
}

/// Waits for the launched process (its exit status comes on `ended`, [`reap_when_ended`]) to
/// announce its run folder (or to end before), then passes that run's events to `etx` and
/// `controls` to it.
fn follow_launched(
    ended: &Receiver<std::process::ExitStatus>,
    announce: &Path,
    output: &Path,
    etx: &Sender<Event>,
    controls: Receiver<Control>,
) {
    let dir = loop {
        if let Ok(text) = fs::read_to_string(announce) {
            break PathBuf::from(text);
        }
        if let Ok(status) = ended.try_recv() {
            let text = fs::read_to_string(output).unwrap_or_default();
            let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error")).collect();
            let msg = match errors.is_empty() {
                true => format!(
                    "the run's process ended ({status}) before it started: {}",
                    output.display()
                ),
                false => errors.join("; "),
            };
            let _ = etx.send(Event::Failed(Failure::new(FailureKind::Config, msg)));
            return;
        }
        std::thread::sleep(POLL);
    };
    let remote = match attach(&dir) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("cannot follow the run in {}: {e:#}", dir.display());
            let _ = etx.send(Event::Failed(Failure::new(FailureKind::Io, msg)));
            return;
        }
    };
    let to_run = remote.controls;
    std::thread::spawn(move || {
        for c in controls.iter() {
            let _ = to_run.send(c);
        }
    });
    for e in remote.events.iter() {
        if etx.send(e).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_events() {
        let a = serde_json::to_string(&Event::Paused).unwrap();
        let b = serde_json::to_string(&Event::Log("x".into())).unwrap();
        let mut buf = format!("{a}\n{b}\n{}", &a[..3]).into_bytes();
        assert_eq!(
            take_events(&mut buf),
            vec![Event::Paused, Event::Log("x".into())]
        );
        assert_eq!(buf, &a.as_bytes()[..3]);
        // The cut line closed by a later session is skipped, the next one read.
        buf.extend(format!("\n{a}\n").bytes());
        assert_eq!(take_events(&mut buf), vec![Event::Paused]);
        assert!(buf.is_empty());
    }

    #[test]
    fn event_log_closes_a_cut_line_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(EVENTS), b"{\"Log\":\"cut").unwrap();
        let mut log = EventLog::open(dir.path()).unwrap();
        log.append(&Event::Resumed).unwrap();
        let mut buf = fs::read(dir.path().join(EVENTS)).unwrap();
        assert_eq!(take_events(&mut buf), vec![Event::Resumed]);
    }

    #[test]
    fn lock_tells_live_from_dead_and_a_stale_one_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(is_alive(d), None);
        let info = LiveInfo {
            pid: std::process::id(),
            job_dir: d.to_path_buf(),
            events_offset: 0,
            stages: 1,
        };
        let mut h = Holder::take(d, &info).unwrap();
        assert_eq!(is_alive(d), Some(true));
        assert!(Holder::take(d, &info).is_err());
        let (tx, rx) = crossbeam_channel::unbounded();
        h.serve(d, tx).unwrap();
        let mode = fs::metadata(d.join(SOCKET)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        send_control(d, Control::Pause).unwrap();
        send_control(d, Control::Stop).unwrap();
        assert_eq!(rx.recv().unwrap(), Control::Pause);
        assert_eq!(rx.recv().unwrap(), Control::Stop);
        drop(h);
        assert_eq!(is_alive(d), Some(false));
        assert!(died_without_end(d), "no last event: died");
        // Said as a kill, not as an error inside mislas (issue 18).
        let f = died(d);
        assert_eq!(f.kind, FailureKind::Killed);
        assert_eq!(f.kind.to_string(), "process killed");
        assert!(f.message.contains("kill -9") && f.message.contains("no checkpoint"));
        EventLog::open(d).unwrap().append(&Event::Finished).unwrap();
        assert!(!died_without_end(d), "ended with Finished");
        // A socket file left behind (kill -9) is replaced by the next run.
        UnixListener::bind(d.join(SOCKET)).unwrap();
        let mut h = Holder::take(d, &info).unwrap();
        let (tx, _rx) = crossbeam_channel::unbounded();
        h.serve(d, tx).unwrap();
    }

    fn stage_started(dir: &Path) -> Event {
        Event::StageStarted(crate::events::StageStarted {
            stage: crate::config::Stage::Stage1,
            run_dir: dir.to_path_buf(),
            name: "x".into(),
            dataset: "Fashion-MNIST-LT".into(),
            device: crate::events::DeviceInfo {
                id: "cpu".into(),
                name: "CPU".into(),
                memory_total_bytes: None,
            },
            num_epochs: 1,
            start_epoch: 0,
            batches_per_epoch: 1,
            images_per_epoch: 1,
            class_counts: vec![1],
            head_class_idx: [0, 1],
            med_class_idx: [1, 1],
            tail_class_idx: [1, 1],
        })
    }

    #[test]
    fn a_full_disk_stops_the_run_and_tells_the_front_end() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", d.join(EVENTS)).unwrap();
        let (etx, erx) = crossbeam_channel::unbounded();
        let (ctx, crx) = crossbeam_channel::unbounded();
        let out = publish(erx, ctx, 1);
        etx.send(Event::Log("before the folder".into())).unwrap();
        etx.send(stage_started(d)).unwrap();
        drop(etx);
        let seen: Vec<Event> = out.iter().collect();
        assert_eq!(crx.try_recv(), Ok(Control::Stop), "the run is stopped");
        let note = seen
            .iter()
            .find_map(|e| match e {
                Event::Log(l) if l.contains("stopping the run") => Some(l.clone()),
                _ => None,
            })
            .expect("the front end is told");
        assert!(note.contains("events.jsonl"), "{note}");
        // This process's own front end still gets every event.
        assert_eq!(seen.last(), Some(&stage_started(d)));
    }

    #[test]
    fn a_folder_deleted_while_attached_ends_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("run");
        fs::create_dir(&d).unwrap();
        let info = LiveInfo {
            pid: 1,
            job_dir: d.clone(),
            events_offset: 0,
            stages: 1,
        };
        let _h = Holder::take(&d, &info).unwrap();
        EventLog::open(&d).unwrap().append(&Event::Paused).unwrap();
        let remote = attach(&d).unwrap();
        assert_eq!(
            remote.events.recv_timeout(Duration::from_secs(5)).unwrap(),
            Event::Paused
        );
        fs::remove_dir_all(&d).unwrap();
        match remote.events.recv_timeout(Duration::from_secs(5)).unwrap() {
            Event::Failed(f) => assert!(f.message.contains("was deleted"), "{}", f.message),
            other => panic!("expected the deletion, got {other:?}"),
        }
    }

    #[test]
    fn follower_replays_then_reports_a_dead_process() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let info = LiveInfo {
            pid: 4242,
            job_dir: d.to_path_buf(),
            events_offset: 0,
            stages: 1,
        };
        let h = Holder::take(d, &info).unwrap();
        let mut log = EventLog::open(d).unwrap();
        log.append(&Event::Log("one".into())).unwrap();
        let remote = attach(d).unwrap();
        assert_eq!(
            remote.events.recv_timeout(Duration::from_secs(5)).unwrap(),
            Event::Log("one".into())
        );
        log.append(&Event::Paused).unwrap();
        assert_eq!(
            remote.events.recv_timeout(Duration::from_secs(5)).unwrap(),
            Event::Paused
        );
        drop(h);
        match remote.events.recv_timeout(Duration::from_secs(5)).unwrap() {
            Event::Failed(f) => assert!(f.message.contains("pid 4242"), "{}", f.message),
            other => panic!("expected the death, got {other:?}"),
        }
        assert!(remote.events.recv_timeout(Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_run_on_another_node_is_followed_to_its_end_never_called_dead() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let info = LiveInfo {
            pid: 4242,
            job_dir: d.to_path_buf(),
            events_offset: 0,
            stages: 1,
        };
        let h = Holder::take(d, &info).unwrap();
        // This process's own node file names this machine: not remote.
        assert_eq!(remote_node(d), None);
        assert_eq!(
            fs::read_to_string(d.join(NODE)).unwrap().lines().next(),
            Some(this_host().as_str())
        );
        // As a Slurm job on another node writes it; its lock there is not seen here.
        fs::write(d.join(NODE), "gpu-node-07\n12_3\n").unwrap();
        drop(h);
        assert_eq!(
            remote_note(d).as_deref(),
            Some("on node gpu-node-07 (Slurm job 12_3)")
        );
        let mut log = EventLog::open(d).unwrap();
        log.append(&Event::Log("one".into())).unwrap();
        assert_eq!(
            is_alive(d),
            Some(true),
            "the lock is free, but it is elsewhere"
        );
        assert!(!died_without_end(d));
        let remote = attach(d).unwrap();
        let next = || remote.events.recv_timeout(Duration::from_secs(5)).unwrap();
        match next() {
            Event::Log(l) => assert!(l.contains("on node gpu-node-07 (Slurm job 12_3)"), "{l}"),
            other => panic!("expected the node note, got {other:?}"),
        }
        assert_eq!(next(), Event::Log("one".into()));
        // Still followed after the free lock's poll: no death reported.
        std::thread::sleep(POLL * 3);
        log.append(&Event::Finished).unwrap();
        assert_eq!(next(), Event::Finished);
        assert_eq!(is_alive(d), Some(false));
        assert!(!died_without_end(d));
    }
}
