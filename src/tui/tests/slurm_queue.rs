//! The queue view of runs handed to Slurm: job id, Slurm's state and reason, restarts and why
//! the last attempt ended, as `mislas queue ls` shows them.
use super::*;
use crate::queue::{slurm::SlurmJob, Job as Queued};

pub(super) fn queued(id: i64, name: &str, state: &str) -> Queued {
    Queued {
        id,
        name: name.into(),
        args: vec!["train".into()],
        project: "/p".into(),
        saved: "/p/saved".into(),
        state: state.into(),
        device: None,
        run_dir: None,
        pid: None,
        restarts: 0,
        ends: Vec::new(),
        resume: None,
        slurm: None,
    }
}

#[test]
fn the_queue_view_shows_each_runs_slurm_job_state_and_restarts() {
    let (_d, mut app) = project();
    let slurm = |id: i64, job: &str, state: &str, reason: Option<&str>| SlurmJob {
        id,
        job_id: job.into(),
        state: state.into(),
        reason: reason.map(str::to_owned),
        exit_code: None,
    };
    let mut killed = queued(1, "killed", "submitted");
    killed.device = Some("slurm:20".into());
    killed.restarts = 1;
    killed.ends = vec!["killed (signal 9, SIGKILL): restart 1 of 2, from /x".into()];
    killed.slurm = Some(slurm(1, "20", "RUNNING", None));
    let mut task = queued(2, "sw_seed2", "submitted");
    task.slurm = Some(slurm(2, "12_2", "PENDING", Some("JobHeldUser")));
    let mut refused = queued(3, "acct", "failed");
    refused.slurm = Some(slurm(3, "", "REFUSED", Some("Invalid account")));
    let here = queued(4, "local", "queued");
    send(&mut app, [ch('4'), ch('Q')]);
    send(
        &mut app,
        [Msg::Queue(Ok(vec![killed, task, refused, here]))],
    );
    let s = render(&app, 160, 24);
    assert!(s.contains("killed (1 restart)"), "{s}");
    assert!(
        s.contains("20 RUNNING · attempt 1: killed (signal 9, SIGKILL): restart 1 of 2"),
        "{s}"
    );
    assert!(s.contains("12_2 PENDING (JobHeldUser)"), "{s}");
    assert!(s.contains("REFUSED (Invalid account)"), "{s}");
    let row = s.lines().find(|l| l.contains("local")).unwrap();
    assert!(
        !row.contains("attempt") && !row.contains("PENDING"),
        "{row}"
    );
}
