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
