//! Key tables: each screen has one static table of [`Binding`]s that its key handler dispatches
//! through ([`lookup`]) and that its footer and the help overlay print, so that what a key does
//! and what the help says it does cannot drift apart.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A key (or keys) of a screen, the action it triggers and how the help describes it.
#[derive(Debug, Clone, Copy)]
pub struct Binding<A: 'static> {
    /// The key codes that trigger the action (with Ctrl held when `ctrl`).
    pub codes: &'static [KeyCode],
    /// Whether Ctrl must be held.
    pub ctrl: bool,
    /// The keys as the help shows them (`↑↓/jk`).
    pub keys: &'static str,
    /// What the handler does.
    pub action: A,
    /// A word or two for the footer.
    pub short: &'static str,
    /// A sentence for the help overlay.
    pub help: &'static str,
}

impl<A: Copy> Binding<A> {
    /// A binding of `codes` without Ctrl.
    pub const fn new(
        codes: &'static [KeyCode],
        keys: &'static str,
        action: A,
        short: &'static str,
        help: &'static str,
    ) -> Self {
        Binding {
            codes,
            ctrl: false,
            keys,
            action,
            short,
            help,
        }
    }

    /// The same binding with Ctrl held.
    pub const fn with_ctrl(mut self) -> Self {
        self.ctrl = true;
        self
    }

    /// Whether `key` triggers this binding.
    pub fn matches(&self, key: &KeyEvent) -> bool {
        self.ctrl == key.modifiers.contains(KeyModifiers::CONTROL) && self.codes.contains(&key.code)
    }
}

/// The action `key` triggers in `table`, if any.
pub fn lookup<A: Copy>(table: &[Binding<A>], key: &KeyEvent) -> Option<A> {
    table.iter().find(|b| b.matches(key)).map(|b| b.action)
}

/// A table's rows as the footer and the help print them: keys, short and long description.
pub type KeyHelp = (&'static str, &'static str, &'static str);

/// The printable rows of `table`.
pub fn help_rows<A: Copy>(table: &[Binding<A>]) -> Vec<KeyHelp> {
    table.iter().map(|b| (b.keys, b.short, b.help)).collect()
}

/// The list keys of [`super::list_nav::navigate`].
pub const NAV_CODES: &[KeyCode] = &[
    KeyCode::Up,
    KeyCode::Down,
    KeyCode::Char('k'),
    KeyCode::Char('j'),
    KeyCode::PageUp,
    KeyCode::PageDown,
    KeyCode::Home,
    KeyCode::End,
    KeyCode::Char('g'),
    KeyCode::Char('G'),
];

/// How the help shows [`NAV_CODES`].
pub const NAV_KEYS: &str = "↑↓ jk PgUp/Dn g/G";

/// The keys that scroll a text (the run screen's log, the help overlay).
pub const SCROLL_CODES: &[KeyCode] = &[
    KeyCode::Up,
    KeyCode::Char('k'),
    KeyCode::Down,
    KeyCode::Char('j'),
    KeyCode::PageUp,
    KeyCode::PageDown,
];

/// How the help shows [`SCROLL_CODES`].
pub const SCROLL_KEYS: &str = "↑↓ jk PgUp/Dn";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_matches_codes_and_ctrl() {
        const T: &[Binding<u8>] = &[
            Binding::new(&[KeyCode::Char('c')], "c", 1, "one", "one"),
            Binding::new(&[KeyCode::Char('c')], "Ctrl-C", 2, "two", "two").with_ctrl(),
        ];
        let k = |m| KeyEvent::new(KeyCode::Char('c'), m);
        assert_eq!(lookup(T, &k(KeyModifiers::NONE)), Some(1));
        assert_eq!(lookup(T, &k(KeyModifiers::CONTROL)), Some(2));
        assert_eq!(
            lookup(T, &KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
            None
        );
    }
}
