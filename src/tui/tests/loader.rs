//! The loader thread: runs, metrics and the queue are read off the UI thread, answered as
//! messages; repeated reads are merged; the screens say "loading…" until the answer comes.
use super::*;
use crate::tui::app::{Loading, QueueOp};
use crate::tui::loader::{merged, Load, Loader, Places};
use std::time::Duration;

fn places(root: &Path) -> Places {
    Places {
        root: root.to_path_buf(),
        saved_root: root.join("saved"),
        queue_dir: Some(root.join("queue")),
    }
}

#[test]
fn repeated_reads_are_merged_and_queue_changes_kept() {
    let batch = vec![
        Load::Metrics("a".into()),
        Load::Runs,
        Load::Metrics("b".into()),
        Load::Metrics("a".into()),
        Load::Runs,
        Load::QueueOp(QueueOp::Remove(1)),
        Load::QueueOp(QueueOp::Remove(1)),
        Load::Queue,
        Load::Queue,
    ];
    let names: Vec<String> = merged(batch)
        .iter()
        .map(|l| match l {
            Load::Runs => "runs".to_owned(),
            Load::Metrics(d) => format!("metrics {}", d.display()),
            Load::Queue => "queue".to_owned(),
            Load::QueueOp(_) => "op".to_owned(),
            Load::Remove(..) => "remove".to_owned(),
        })
        .collect();
    assert_eq!(
        names,
        ["metrics a", "runs", "metrics b", "op", "op", "queue"]
    );
}

#[test]
fn the_loader_thread_answers_runs_metrics_and_the_queue() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let dir = run_folder(
        root,
        "a_done",
        (3, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    let loader = Loader::spawn(places(root)).unwrap();
    let next = || {
        loader
            .answers
            .recv_timeout(Duration::from_secs(20))
            .unwrap()
    };
    loader.ask(Load::Runs);
    match next() {
        Msg::Runs(runs, facts) => {
            assert_eq!(runs.len(), 1);
            assert_eq!(runs[0].epochs.len(), 3);
            assert!(facts[&dir].current_checkpoint.is_some());
        }
        m => panic!("{m:?}"),
    }
    loader.ask(Load::Metrics(dir.clone()));
    assert!(matches!(next(), Msg::Facts(d, _) if d == dir));
    match next() {
        Msg::Metrics(d, Ok(epochs)) => assert_eq!((d, epochs.len()), (dir.clone(), 3)),
        m => panic!("{m:?}"),
    }
    // Unchanged since: the facts only.
    loader.ask(Load::Metrics(dir.clone()));
    assert!(matches!(next(), Msg::Facts(..)));
    loader.ask(Load::Queue);
    assert!(matches!(next(), Msg::Queue(Ok(jobs)) if jobs.is_empty()));
    // A change to a job that is not there: said in words, then the queue again.
    loader.ask(Load::QueueOp(QueueOp::Remove(7)));
    assert!(matches!(next(), Msg::QueueChanged(Err(e)) if e.contains('7')));
    assert!(matches!(next(), Msg::Queue(Ok(_))));
    assert!(loader.answers.try_recv().is_err());
}

#[test]
fn the_runs_screen_says_loading_until_the_runs_come() {
    let (d, mut app) = project();
    send(&mut app, [ch('4'), Msg::Loading(Loading::Runs)]);
    let s = render(&app, 80, 24);
    assert!(s.contains("loading the runs of saved/…"), "{s}");
    assert!(s.contains("Runs in saved/ · loading…"), "{s}");
    send(&mut app, [Msg::Runs(fake_runs(d.path()), HashMap::new())]);
    let s = render(&app, 80, 24);
    assert!(!s.contains("loading"), "{s}");
    assert!(s.contains("fm_s1_202501010000"), "{s}");
    // The queue: loading, then its answer.
    send(&mut app, [ch('Q'), Msg::Loading(Loading::Queue)]);
    assert!(render(&app, 80, 24).contains("loading the queue…"));
    send(&mut app, [Msg::Queue(Ok(Vec::new()))]);
    assert!(render(&app, 80, 24).contains("The queue is empty"));
}
