//! A one-line text input: the preset filter, a field being edited, a preset name.
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

/// Text and a cursor (a char index).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineInput {
    text: String,
    cursor: usize,
}

impl LineInput {
    /// An input holding `text`, the cursor at its end.
    pub fn new(text: &str) -> Self {
        LineInput {
            text: text.to_owned(),
            cursor: text.chars().count(),
        }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn byte_at(&self, char_idx: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_idx)
            .map_or(self.text.len(), |(b, _)| b)
    }

    /// Applies an editing key (characters, ←/→, Home/End, Backspace/Delete, Ctrl-U, Ctrl-W);
    /// returns whether the key was one.
    pub fn handle(&mut self, key: KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let len = self.text.chars().count();
        match key.code {
            KeyCode::Char('u') if ctrl => {
                self.text.clear();
                self.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => {
                let chars: Vec<char> = self.text.chars().collect();
                let mut start = self.cursor;
                while start > 0 && chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && chars[start - 1] != ' ' {
                    start -= 1;
                }
                let (a, b) = (self.byte_at(start), self.byte_at(self.cursor));
                self.text.replace_range(a..b, "");
                self.cursor = start;
            }
            KeyCode::Char(c) if !ctrl => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            KeyCode::Backspace | KeyCode::Delete => {}
            _ => return false,
        }
        true
    }

    /// The text with the cursor drawn as a reversed cell.
    pub fn line(&self, style: Style, cursor: Style) -> Line<'static> {
        let at = self.byte_at(self.cursor);
        let (before, rest) = self.text.split_at(at);
        let mut chars = rest.chars();
        let under = chars.next().map_or(" ".to_owned(), String::from);
        Line::from(vec![
            Span::styled(before.to_owned(), style),
            Span::styled(under, cursor),
            Span::styled(chars.as_str().to_owned(), style),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn edits() {
        let mut i = LineInput::new("0.1");
        assert!(i.handle(key(KeyCode::Backspace)));
        assert!(i.handle(key(KeyCode::Char('5'))));
        assert_eq!(i.text(), "0.5");
        i.handle(key(KeyCode::Home));
        i.handle(key(KeyCode::Delete));
        i.handle(key(KeyCode::Char('é')));
        assert_eq!(i.text(), "é.5");
        i.handle(key(KeyCode::Right));
        i.handle(key(KeyCode::Char('x')));
        assert_eq!(i.text(), "é.x5");
        i.handle(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(i.text(), "");
        assert!(!i.handle(key(KeyCode::Enter)));
        let mut i = LineInput::new("a bc  de");
        i.handle(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(i.text(), "a bc  ");
        i.handle(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(i.text(), "a ");
        let l = i.line(Style::new(), Style::new());
        assert_eq!(l.to_string(), "a  ");
    }
}
