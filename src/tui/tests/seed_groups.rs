//! The runs screen's seed groups (`g`) on run folders made for the test, and the list's
//! filter keys.
use super::*;

/// A finished one-epoch run of `fm_s1` named `config_name` with `seed` and last top-1 `top1`
/// (or, without `top1`, stopped before its first evaluation), its `metrics.jsonl` written at
/// `age` seconds after a fixed old time (the runs list is newest first by that time).
fn seed_run(root: &Path, folder: &str, config_name: &str, seed: u64, top1: Option<f64>, age: u64) {
    let last = match top1 {
        Some(_) => "Best Prec@1: 1.000% ECE: 1.000%",
        None => "=> stopped at epoch 0 batch 3; resume with: resume x",
    };
    let dir = run_folder(root, folder, (0, 1), last, top1.is_none());
    let mut c = Config::from_file(&dir.join("config.yaml")).unwrap().config;
    c.seed = seed;
    c.name = config_name.into();
    fs::write(dir.join("config.yaml"), c.to_yaml()).unwrap();
    let metrics = top1.map_or(String::new(), |t| {
        serde_json::to_string(&epoch(Stage::Stage1, 0, 1, t, 5.0)).unwrap() + "\n"
    });
    fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    let when =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + age);
    fs::File::options()
        .write(true)
        .open(dir.join("metrics.jsonl"))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Issue 18's case: `--grid seed 0,1` (32.96 %, 18.19 %), the configuration run again with
/// seed 0 (32.97 %), and a stopped run without figures. The row reads n 2, 25.58±10.44
/// (NumPy: mean 25.575, std(ddof=1) 10.4437; see `seeds::tests`), 1 duplicate, 1 unfinished —
/// not n 4, 28.04±8.53 — and Enter lists the four runs with what each counts for.
#[test]
fn seed_groups_count_one_finished_run_per_seed_and_open_to_their_runs() {
    let (d, mut app) = project();
    let root = d.path();
    seed_run(
        root,
        "fm_s1_seed0_202612061000",
        "fm_s1_seed0",
        0,
        Some(32.96),
        0,
    );
    seed_run(
        root,
        "fm_s1_seed1_202612061010",
        "fm_s1_seed1",
        1,
        Some(18.19),
        10,
    );
    seed_run(root, "fm_s1_202612061100", "fm_s1", 0, Some(32.97), 20);
    seed_run(root, "fm_s1_202612061200", "fm_s1", 2, None, 30);
    load_runs(&mut app, root);
    send(&mut app, [ch('4'), ch('g')]);
    assert_eq!(app.runs.view, RunsView::Groups);
    let screen = render(&app, 80, 24);
    let row = screen
        .lines()
        .find(|l| l.contains("25.58±10.44"))
        .unwrap_or_else(|| panic!("{screen}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // ┃label n dup unf best last ECE NLL┃
    assert!(cells[0].ends_with("fm_s1"), "{row}");
    assert_eq!(
        &cells[1..6],
        ["2", "1", "1", "25.58±10.44", "25.58±10.44"],
        "{row}"
    );
    // Enter: the runs of the group, newest first, with what each counts for.
    send(&mut app, [key(KeyCode::Enter)]);
    assert_eq!(app.runs.view, RunsView::Group(0));
    let screen = render(&app, 100, 24);
    assert!(screen.contains("Seed group fm_s1 · seeds 0, 1"), "{screen}");
    let role = |folder: &str| {
        let line = screen.lines().find(|l| l.contains(folder)).unwrap();
        let line = line.trim_matches(|c| c == '┃' || c == '│');
        line.split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(role("fm_s1_202612061200"), "2 not finished –");
    assert_eq!(role("fm_s1_202612061100"), "0 duplicate seed 32.97");
    assert_eq!(role("fm_s1_seed1_"), "1 used 18.19 18.19");
    assert_eq!(role("fm_s1_seed0_"), "0 used 32.96 32.96");
    // Esc: the groups; Esc again: the list.
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(app.runs.view, RunsView::Groups);
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(app.runs.view, RunsView::List);
}

/// One finished run in a group: its std is undefined ("—"), not ±0.00.
#[test]
fn one_seed_shows_no_standard_deviation() {
    let (d, mut app) = project();
    let root = d.path();
    seed_run(root, "fm_s1_202612061000", "fm_s1", 0, Some(32.96), 0);
    load_runs(&mut app, root);
    send(&mut app, [ch('4'), ch('g')]);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("32.96±—"), "{screen}");
    assert!(!screen.contains("±0.00"), "{screen}");
}

/// The filter: Ctrl-U clears what is typed (it types no "u"), Esc in the list clears an
/// applied filter, and a filter that keeps nothing says so.
#[test]
fn the_filter_clears_with_ctrl_u_and_esc_and_says_when_nothing_matches() {
    let (d, mut app) = project();
    let root = d.path();
    seed_run(root, "fm_s1_202612061000", "fm_s1", 0, Some(32.96), 0);
    seed_run(root, "fm_s1_202612061100", "fm_s1", 1, Some(30.0), 10);
    load_runs(&mut app, root);
    send(&mut app, [ch('4'), ch('/')]);
    send(&mut app, typed("lr=0.7 x"));
    send(&mut app, [ctrl('w')]);
    assert_eq!(app.runs.filter_input.as_deref(), Some("lr=0.7 "));
    send(&mut app, [ctrl('u')]);
    assert_eq!(app.runs.filter_input.as_deref(), Some(""));
    send(&mut app, typed("seed=7"));
    send(&mut app, [key(KeyCode::Enter)]);
    assert_eq!(app.runs.filter, "seed=7");
    assert!(app.runs.runs.is_empty());
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("No run of the 2 in saved/ matches the filter seed=7"),
        "{screen}"
    );
    assert!(!screen.contains("No run folder in saved/ yet"), "{screen}");
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(app.runs.filter, "");
    assert_eq!(app.runs.runs.len(), 2);
    assert!(render(&app, 80, 24).contains("fm_s1_202612061100"));
}
