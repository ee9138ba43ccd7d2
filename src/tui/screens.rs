//! The catalogue of screens: one row per screen with its number key, its name in the header
//! and the help, what it shows, and its key table. The header's tabs, the number keys, the
//! footer's hints and the help are read from it; a new screen is its file, a variant of
//! [`Screen`] and a row of [`SCREENS`] (a test checks that every variant has one row and the
//! global number keys are the rows' keys).
use super::keys::{help_rows, KeyHelp};
use super::{hyperparameters, methods, presets, run, runs};
use crossterm::event::KeyCode;

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Presets by data set.
    Presets,
    /// The hyperparameter form.
    Hyperparameters,
    /// The live run.
    Run,
    /// Runs in `saved/`.
    Runs,
    /// Methods compared on a finished stage-1 run (`m` on the runs screen).
    Methods,
}

/// One screen of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct ScreenRow {
    /// The screen.
    pub screen: Screen,
    /// The key that shows it.
    pub key: char,
    /// Its name in the header and the help.
    pub name: &'static str,
    /// A shorter name for a narrow header (80 columns with a run's state beside it).
    pub short: &'static str,
    /// What it shows, for the help.
    pub about: &'static str,
    /// Its keys, for the footer and the help.
    pub keys: fn() -> Vec<KeyHelp>,
}

/// Every screen, in the order of the header and the number keys.
pub const SCREENS: &[ScreenRow] = &[
    ScreenRow {
        screen: Screen::Presets,
        key: '1',
        name: "Presets",
        short: "Presets",
        about: "presets by data set",
        keys: || help_rows(presets::KEYS),
    },
    ScreenRow {
        screen: Screen::Hyperparameters,
        key: '2',
        name: "Hyperparameters",
        short: "Hyperparams",
        about: "the form of the preset opened",
        keys: || help_rows(hyperparameters::KEYS),
    },
    ScreenRow {
        screen: Screen::Run,
        key: '3',
        name: "Run",
        short: "Run",
        about: "the run launched or attached to",
        keys: || help_rows(run::KEYS),
    },
    ScreenRow {
        screen: Screen::Runs,
        key: '4',
        name: "Runs",
        short: "Runs",
        about: "runs in saved/, seed groups, the queue",
        keys: || help_rows(runs::KEYS),
    },
    ScreenRow {
        screen: Screen::Methods,
        key: '5',
        name: "Methods",
        short: "Methods",
        about: "methods compared on a finished stage-1 run (m on the runs screen)",
        keys: || help_rows(methods::KEYS),
    },
];

/// The catalogue's row of `screen`.
pub fn row(screen: Screen) -> &'static ScreenRow {
    SCREENS
        .iter()
        .find(|r| r.screen == screen)
        .unwrap_or(&SCREENS[0])
}

/// The screen whose number key is `code`.
pub fn by_key(code: KeyCode) -> Option<Screen> {
    SCREENS
        .iter()
        .find(|r| code == KeyCode::Char(r.key))
        .map(|r| r.screen)
}

/// `1 Presets`: the screen's key and name, as the header and the help title it.
pub fn title(screen: Screen) -> String {
    let r = row(screen);
    format!("{} {}", r.key, r.name)
}
