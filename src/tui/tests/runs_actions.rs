//! The runs screen's actions on a run folder (issue 18): `e` re-runs a run's configuration as a
//! new run.
use super::*;

/// Selects the listed run named `name`.
fn select_run(app: &mut App, name: &str) {
    app.runs.selected = app
        .runs
        .runs
        .iter()
        .position(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} is listed"));
}

/// `e` on a stopped run opens its configuration as a new run: a new name, `resume` empty (not
/// resumed), its keys as saved; one change and `r` launch a new run with that change, and the
/// form marks only that change as an edit.
#[test]
fn e_opens_a_runs_configuration_as_a_new_run_with_one_change() {
    let (d, mut app) = project();
    let root = d.path();
    let dir = run_folder(
        root,
        "fm_s1_202612061000",
        (1, 3),
        "=> stopped at epoch 1",
        true,
    );
    let mut c = Config::from_file(&dir.join("config.yaml")).unwrap().config;
    c.seed = 7;
    c.run_dir = dir.display().to_string();
    fs::write(dir.join("config.yaml"), c.to_yaml()).unwrap();
    load_runs(&mut app, root);
    send(&mut app, [ch('4')]);
    select_run(&mut app, "fm_s1_202612061000");
    assert!(send(&mut app, [ch('e')]).is_empty());
    assert_eq!(app.screen, Screen::Hyperparameters);
    let form = app.form.as_ref().unwrap();
    let tab = form.current();
    assert_eq!(tab.config.name, "fm_s1_rerun");
    assert_eq!(tab.config.resume, "", "a new run, not resumed");
    assert_eq!(tab.config.run_dir, "", "not in the old folder");
    assert_eq!((tab.config.seed, tab.config.num_epochs), (7, 3));
    assert_eq!(form.unsaved_edits(), 0);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("re-run of fm_s1_202612061000"), "{screen}");
    edit_field(&mut app, "lr", "0.05");
    assert_eq!(app.form.as_ref().unwrap().unsaved_edits(), 1);
    let fx = send(&mut app, [ch('r')]);
    let [Effect::Launch(job)] = fx.as_slice() else {
        panic!("r launches the new run: {fx:?} {:?}", app.status);
    };
    let Job::Single(new) = &**job else {
        panic!("one stage: {job:?}");
    };
    assert_eq!(new.name, "fm_s1_rerun");
    assert_eq!((new.lr, new.seed, new.resume.as_str()), (0.05, 7, ""));
    // The old run's folder is as it was.
    let old = Config::from_file(&dir.join("config.yaml")).unwrap().config;
    assert_eq!((old.name.as_str(), old.lr), ("fm_s1", 0.1));
}

/// A queue in `root/queue` with one entry per folder of `dirs` (its run folder recorded, as
/// the scheduler records it), in state `state`.
fn queue_with_entries(root: &Path, dirs: &[(&Path, &str)]) -> crate::queue::Queue {
    let q = crate::queue::Queue::open(&root.join("queue")).unwrap();
    let db = rusqlite::Connection::open(root.join("queue/queue.sqlite")).unwrap();
    for (dir, state) in dirs {
        let args = ["train".to_owned()];
        let id = q.add("x", &args, root, &root.join("saved")).unwrap();
        db.execute(
            "UPDATE jobs SET run_dir = ?2, state = ?3 WHERE id = ?1",
            rusqlite::params![id, dir.display().to_string(), state],
        )
        .unwrap();
    }
    q
}

/// `d` asks first; `y` archives the run to `saved/.archive/` with its queue entry, `D` then `y`
/// deletes one for good, `n` keeps it; a live run and a run the queue has running are refused
/// with nothing touched.
#[test]
fn d_archives_or_deletes_a_run_with_its_queue_entry_after_asking() {
    let (d, mut app) = project();
    let root = d.path();
    let stopped = run_folder(root, "b_stopped", (1, 3), "=> stopped at epoch 1", true);
    let done = run_folder(
        root,
        "c_done",
        (3, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    let queued_running = run_folder(root, "d_queued", (1, 3), "Epoch: [1][ 40/118]", true);
    let live = run_folder(root, "a_live", (1, 3), "Epoch: [1][ 40/118]", true);
    let lock = fs::File::create(live.join(crate::live::LOCK)).unwrap();
    lock.lock().unwrap();
    let q = queue_with_entries(root, &[(&stopped, "stopped"), (&queued_running, "running")]);
    let places = crate::tui::loader::Places {
        root: root.to_path_buf(),
        saved_root: root.join("saved"),
        queue_dir: Some(root.join("queue")),
    };
    // What the loop does with an effect: the loader's answer, applied.
    let perform = |app: &mut App, fx: Vec<Effect>| {
        for e in fx {
            let Effect::RemoveRun(dir, how) = e else {
                panic!("only a removal: {e:?}");
            };
            let msg = Msg::Removed(crate::tui::loader::remove_run(&places, &dir, how));
            send(app, [msg]);
            load_runs(app, root);
        }
    };
    load_runs(&mut app, root);
    send(&mut app, [ch('4')]);
    // A live run: refused, no question.
    select_run(&mut app, "a_live");
    assert!(send(&mut app, [ch('d')]).is_empty());
    assert_eq!(app.overlay, None);
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("a_live is running"));
    // n keeps it.
    select_run(&mut app, "b_stopped");
    send(&mut app, [ch('d')]);
    assert_eq!(
        app.overlay,
        Some(Overlay::Confirm(Confirm::Remove(stopped.clone())))
    );
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Archive b_stopped?"), "{screen}");
    assert!(screen.contains("D delete for good"), "{screen}");
    assert!(send(&mut app, [ch('n')]).is_empty());
    assert!(stopped.is_dir());
    // Enter, which confirms other dialogs, moves nothing here: the dialog stays open.
    send(&mut app, [ch('d')]);
    assert!(send(&mut app, [key(KeyCode::Enter)]).is_empty());
    assert_eq!(
        app.overlay,
        Some(Overlay::Confirm(Confirm::Remove(stopped.clone())))
    );
    assert!(send(&mut app, [key(KeyCode::Esc)]).is_empty());
    assert!(stopped.is_dir());
    // y archives it, with its queue entry; the list no longer has it.
    let fx = send(&mut app, [ch('d'), ch('y')]);
    perform(&mut app, fx);
    let archived = root.join("saved/.archive/b_stopped");
    assert!(!stopped.exists() && archived.join("ckps/current.safetensors").is_file());
    let status = app.status.clone().unwrap();
    assert!(!status.error, "{}", status.text);
    assert!(
        status.text.contains("removed queue entry 1"),
        "{}",
        status.text
    );
    assert_eq!(
        q.list().unwrap().iter().map(|j| j.id).collect::<Vec<_>>(),
        [2]
    );
    assert!(app.runs.find(&stopped).is_none());
    // D, then y, deletes for good; any other key on the second question keeps asking.
    select_run(&mut app, "c_done");
    send(&mut app, [ch('d'), ch('D')]);
    assert_eq!(
        app.overlay,
        Some(Overlay::Confirm(Confirm::Delete(done.clone())))
    );
    assert!(render(&app, 80, 24).contains("cannot be undone"));
    assert!(
        send(&mut app, [key(KeyCode::Enter)]).is_empty(),
        "only y deletes"
    );
    let fx = send(&mut app, [ch('y')]);
    perform(&mut app, fx);
    assert!(!done.exists());
    assert!(app.status.as_ref().unwrap().text.starts_with("deleted "));
    // A run the queue has running: refused, its folder and entry kept.
    select_run(&mut app, "d_queued");
    let fx = send(&mut app, [ch('d'), ch('y')]);
    perform(&mut app, fx);
    let status = app.status.clone().unwrap();
    assert!(
        status.error && status.text.contains("queue entry 2 is running"),
        "{}",
        status.text
    );
    assert!(queued_running.join("config.yaml").is_file());
}

/// `H` hides runs that ended without finishing (stopped, failed, killed, unfinished) and says
/// how many; `H` again shows them.
#[test]
fn h_hides_stopped_and_failed_runs_and_shows_them_again() {
    let (d, mut app) = project();
    let root = d.path();
    run_folder(
        root,
        "a_failed",
        (0, 3),
        "unusable image /x.jpg (epoch 0 batch 3)",
        false,
    );
    run_folder(root, "b_stopped", (1, 3), "=> stopped at epoch 1", true);
    run_folder(
        root,
        "c_done",
        (3, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    load_runs(&mut app, root);
    send(&mut app, [ch('4')]);
    assert_eq!(app.runs.runs.len(), 3);
    send(&mut app, [ch('H')]);
    let names: Vec<&str> = app.runs.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["c_done"]);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("2 ended hidden (H)"), "{screen}");
    assert!(!screen.contains("b_stopped"), "{screen}");
    // Nothing was touched: a new listing keeps them hidden, H shows them.
    load_runs(&mut app, root);
    assert_eq!(app.runs.runs.len(), 1);
    send(&mut app, [ch('H')]);
    assert_eq!(app.runs.runs.len(), 3);
    assert!(render(&app, 80, 24).contains("b_stopped"));
}

/// The bells among `fx`.
fn bells(fx: &[Effect]) -> usize {
    fx.iter().filter(|e| matches!(e, Effect::Bell)).count()
}

/// The run watched on the run screen rings the bell once when it ends or fails, not when its
/// stop was asked for here; Ctrl-G turns the bell off and on; `MISLAS_BELL=off` starts it off.
#[test]
fn the_bell_rings_once_when_a_watched_run_ends_or_fails() {
    let (_d, mut app) = app_with_run();
    assert!(app.bell);
    let fx = send(
        &mut app,
        [
            Msg::Engine(finished(Stage::Stage2, false)),
            Msg::Engine(Event::Finished),
        ],
    );
    assert_eq!(bells(&fx), 1, "{fx:?}");
    // Nothing more once it ended (a closed channel after the end is no failure).
    assert_eq!(bells(&send(&mut app, [Msg::EngineClosed(None)])), 0);
    // A failure rings; the trainer's channel closing without a last event too.
    let (_d, mut app) = app_with_run();
    let failure = Failure::new(FailureKind::Io, "disk full");
    assert_eq!(
        bells(&send(&mut app, [Msg::Engine(Event::Failed(failure))])),
        1
    );
    let (_d, mut app) = app_with_run();
    assert_eq!(bells(&send(&mut app, [Msg::EngineClosed(None)])), 1);
    // A stop asked here: no bell.
    let (_d, mut app) = app_with_run();
    send(&mut app, [ch('s'), ch('y')]);
    let fx = send(
        &mut app,
        [
            Msg::Engine(finished(Stage::Stage2, true)),
            Msg::Engine(Event::Finished),
        ],
    );
    assert_eq!(bells(&fx), 0, "{fx:?}");
    // Ctrl-G: off, said; the end of the run rings nothing.
    let (_d, mut app) = app_with_run();
    send(&mut app, [ctrl('g')]);
    assert!(!app.bell);
    assert!(app.status.as_ref().unwrap().text.starts_with("bell off"));
    assert_eq!(bells(&send(&mut app, [Msg::Engine(Event::Finished)])), 0);
    send(&mut app, [ctrl('g')]);
    assert!(app.bell);
    use crate::tui::app::bell_from_env;
    for (value, on) in [(None, true), (Some("off"), false), (Some(" 0"), false)] {
        assert_eq!(bell_from_env(value), on, "{value:?}");
    }
    assert!(bell_from_env(Some("on")) && !bell_from_env(Some("No")));
}

/// A queued run shown in the queue view rings the bell when a read finds it ended (once), and
/// the status line says which; the first read, and a run still going, ring nothing.
#[test]
fn the_bell_rings_when_a_queued_run_ends() {
    let (d, mut app) = project();
    let root = d.path();
    let (a, b) = (root.join("saved/a"), root.join("saved/b"));
    let q = queue_with_entries(root, &[(&a, "running"), (&b, "queued")]);
    let db = rusqlite::Connection::open(root.join("queue/queue.sqlite")).unwrap();
    let set = |id: i64, state: &str| {
        db.execute(
            "UPDATE jobs SET state = ?2 WHERE id = ?1",
            rusqlite::params![id, state],
        )
        .unwrap();
    };
    let read = |app: &mut App| send(app, [Msg::Queue(Ok(q.list().unwrap()))]);
    send(&mut app, [ch('4'), ch('Q')]);
    assert_eq!(bells(&read(&mut app)), 0, "the first read");
    set(1, "done");
    set(2, "running");
    assert_eq!(bells(&read(&mut app)), 1);
    let status = app.status.clone().unwrap();
    assert_eq!(status.text, "queued run 1 (x) done");
    assert!(!status.error);
    assert_eq!(bells(&read(&mut app)), 0, "once");
    set(2, "failed");
    assert_eq!(bells(&read(&mut app)), 1);
    assert!(app.status.as_ref().unwrap().error);
    // Off: said, not rung.
    set(2, "queued");
    read(&mut app);
    set(2, "done");
    app.bell = false;
    assert_eq!(bells(&read(&mut app)), 0);
    assert!(app.status.as_ref().unwrap().text.contains("queued run 2"));
    // A run that ended since a read older than QUEUE_FRESH (the view was away) is not news:
    // neither rung nor said, minutes late.
    app.bell = true;
    set(2, "queued");
    read(&mut app);
    set(2, "done");
    app.status = None;
    app.runs.queue_read_at = Some(std::time::Instant::now() - 2 * super::super::runs::QUEUE_FRESH);
    assert_eq!(bells(&read(&mut app)), 0);
    assert!(app.status.is_none());
}

/// Whitespace runs made one space.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At 120 columns the help's two columns wrap each description under its start: every
/// description of the Runs screen reads whole (it was cut at the column's edge); at 80×24 the
/// help scrolls down to its last line and no further.
#[test]
fn the_help_wraps_its_descriptions_at_120_columns_and_scrolls_to_its_end() {
    let (_d, mut app) = project();
    send(&mut app, [ch('4'), Msg::Resize(120, 40), ch('?')]);
    let screen = render(&app, 120, 40);
    // The two text columns (inside the border, 59 wide each), the left one first.
    let column = |from: usize| -> String {
        let text: Vec<String> = screen
            .lines()
            .map(|l| l.chars().skip(from).take(59).collect())
            .collect();
        text.join(" ")
    };
    let both = squeeze(&(column(1) + " " + &column(60)));
    for b in super::super::runs::KEYS {
        assert!(
            both.contains(&squeeze(b.help)),
            "{:?} whole:\n{screen}",
            b.help
        );
    }
    // A column's text ends before the next one starts (rows 2 to 36 hold the text).
    assert!(
        screen
            .lines()
            .skip(2)
            .take(35)
            .all(|l| l.chars().nth(59) == Some(' ')),
        "a gap between the columns:\n{screen}"
    );
    // 80×24: PageDown goes as far as the last line, which shows; Up then moves at once.
    send(&mut app, [key(KeyCode::Esc), Msg::Resize(80, 24), ch('?')]);
    send(&mut app, (0..30).map(|_| key(KeyCode::PageDown)));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("close this help"), "{screen}");
    let bottom = app.help_scroll;
    send(&mut app, [key(KeyCode::Up)]);
    assert_eq!(app.help_scroll, bottom - 1);
    assert!(!render(&app, 80, 24).contains("close this help"));
}

/// The queue view reads the queue by itself every two seconds while it is shown (on the
/// loader thread: an effect, never a wait), and not on other screens.
#[test]
fn the_queue_view_refreshes_by_itself() {
    let (_d, mut app) = project();
    send(&mut app, [ch('4'), ch('Q')]);
    let loads = |fx: Vec<Effect>| fx.iter().filter(|e| matches!(e, Effect::LoadQueue)).count();
    let ticks: Vec<usize> = (0..4).map(|_| loads(send(&mut app, [Msg::Tick]))).collect();
    assert_eq!(ticks, [0, 1, 0, 1]);
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(loads(send(&mut app, [Msg::Tick, Msg::Tick])), 0, "the list");
    send(&mut app, [ch('Q'), ch('1')]);
    assert_eq!(
        loads(send(&mut app, [Msg::Tick, Msg::Tick])),
        0,
        "another screen"
    );
}

/// `t` on the second queued run moves it to the front and the cursor with it.
#[test]
fn t_in_the_queue_view_takes_the_cursor_along() {
    let (d, mut app) = project();
    let root = d.path();
    let q = queue_with_entries(
        root,
        &[(&root.join("a"), "queued"), (&root.join("b"), "queued")],
    );
    send(
        &mut app,
        [ch('4'), ch('Q'), Msg::Queue(Ok(q.list().unwrap()))],
    );
    let fx = send(&mut app, [key(KeyCode::Down), ch('t')]);
    for e in fx {
        let Effect::QueueOp(op) = e else {
            panic!("{e:?}")
        };
        crate::tui::queue_op(&q, op, root, &root.join("saved")).unwrap();
    }
    send(&mut app, [Msg::Queue(Ok(q.list().unwrap()))]);
    assert_eq!(app.runs.queue[0].id, 2);
    assert_eq!(app.runs.queue_selected, 0, "the cursor is on run 2");
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Queue"), "{screen}");
}

/// A run stopped by another front end (its stage ends stopped, then the run): the header says
/// stopped, never a green "run ended", and no ETA is left.
#[test]
fn a_run_stopped_elsewhere_shows_stopped_without_an_eta() {
    let (_d, mut app) = app_with_run();
    send(
        &mut app,
        [
            Msg::Engine(finished(Stage::Stage2, true)),
            Msg::Engine(Event::Finished),
        ],
    );
    let screen = render(&app, 80, 24);
    assert!(screen.contains("■ run stopped"), "{screen}");
    assert!(!screen.contains("run ended"), "{screen}");
    assert!(screen.contains("ETA –"), "{screen}");
}
