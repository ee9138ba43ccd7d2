//! Styles of the UI: a few named ANSI colours that read on dark and light backgrounds, and only
//! modifiers (bold, dim, reversed) when `NO_COLOR` is set.
use ratatui::style::{Color, Modifier, Style};

/// The UI's styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Whether colours are used (`false` under `NO_COLOR`).
    pub color: bool,
}

impl Theme {
    /// Colours unless the `NO_COLOR` environment variable is set to a non-empty value
    /// (<https://no-color.org>).
    pub fn from_env() -> Self {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// A foreground colour, or nothing under `NO_COLOR`.
    pub fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// The colour for a canvas shape: `c`, or the terminal's default under `NO_COLOR`.
    pub fn shape(self, c: Color) -> Color {
        if self.color {
            c
        } else {
            Color::Reset
        }
    }

    /// Titles and headings.
    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Secondary text: units, hints, axis labels.
    pub fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    /// The selected row or focused item.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// A value the user changed.
    pub fn edited(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// Good news: data found, run finished.
    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    /// Problems: validation failures, missing data, errors.
    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Warnings and transient states (pausing, stopping).
    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    /// Border of the focused panel.
    pub fn focus(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Keys in the footer and help.
    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
}
