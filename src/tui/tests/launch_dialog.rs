//! The launch dialog of the Methods screen: a trained method asks first, with its epochs and
//! device, before anything is trained or compared.
use super::methods::{on_runs, stage1_run};
use super::*;
use crate::tui::app::Overlay;
use crate::tui::methods::Item;

/// The app on the Methods screen of a finished stage-1 run with CE and LWS checked.
fn methods_with_lws(root: &Path) -> App {
    let mut app = App::new(root.to_path_buf(), discover(root, None), NO_COLOR);
    let s1 = stage1_run(root, "fm_s1_done", 3, true);
    on_runs(&mut app, vec![s1]);
    send(&mut app, [ch('m')]);
    let m = app.methods.as_mut().unwrap();
    m.checked = m
        .items
        .iter()
        .map(|i| matches!(i, Item::Trained(t) if t.name == "lws") || i.label() == "CE")
        .collect();
    app
}

/// Enter opens the dialog and starts nothing; Esc starts nothing; a bad value keeps it open
/// with the key and why; Enter with good values trains with them (and compares the rest).
#[test]
fn a_trained_method_asks_first_with_its_epochs_and_device() {
    let (d, _) = project();
    let mut app = methods_with_lws(d.path());
    assert!(
        send(&mut app, [key(KeyCode::Enter)]).is_empty(),
        "nothing yet"
    );
    let Some(Overlay::Launch(dialog)) = &app.overlay else {
        panic!("the dialog: {:?}", app.overlay);
    };
    assert_eq!(dialog.rows.len(), 1);
    let planned = dialog.rows[0].1.clone();
    assert_eq!(
        dialog.fields[0][0].text(),
        planned.num_epochs.to_string(),
        "the planned epochs first"
    );
    let screen = render(&app, 80, 24);
    for text in [
        "Train these methods?",
        "LWS",
        "Epochs",
        "Device",
        "Esc cancel",
    ] {
        assert!(screen.contains(text), "{text}: {screen}");
    }
    // Esc: nothing trained, nothing compared.
    assert!(send(&mut app, [key(KeyCode::Esc)]).is_empty());
    assert_eq!(app.overlay, None);
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("nothing trained"));
    assert_eq!(app.comparing, None);
    // 0 epochs: refused in words, the dialog stays.
    send(&mut app, [key(KeyCode::Enter), ctrl('u'), ch('0')]);
    assert!(send(&mut app, [key(KeyCode::Enter)]).is_empty());
    let Some(Overlay::Launch(dialog)) = &app.overlay else {
        panic!("the dialog stays: {:?}", app.overlay);
    };
    let why = dialog.error.clone().unwrap();
    assert!(why.starts_with("LWS: num_epochs"), "{why}");
    assert!(render(&app, 80, 24).contains("LWS: num_epochs"));
    // A CUDA device this machine lacks: refused too.
    send(&mut app, [ctrl('u'), ch('2'), key(KeyCode::Tab), ctrl('u')]);
    send(&mut app, typed("cuda:7"));
    assert!(send(&mut app, [key(KeyCode::Enter)]).is_empty());
    let Some(Overlay::Launch(dialog)) = &app.overlay else {
        panic!("the dialog stays: {:?}", app.overlay);
    };
    assert!(
        dialog.error.as_deref().unwrap().starts_with("LWS: device"),
        "{:?}",
        dialog.error
    );
    // 2 epochs on the CPU: trained with those, CE compared.
    send(&mut app, [ctrl('u')]);
    send(&mut app, typed("cpu"));
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    let [Effect::Compare(..), Effect::Launch(job)] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    let Job::Single(lws) = job.as_ref() else {
        panic!("{job:?}")
    };
    assert_eq!((lws.num_epochs, lws.device.as_str()), (2, "cpu"));
    assert_eq!(lws.resume, planned.resume, "from the same checkpoint");
    assert_eq!(app.overlay, None);
    assert_eq!(app.screen, Screen::Run);
}
