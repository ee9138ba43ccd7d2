//! The list keys every screen shares: ↑/↓ or k/j, PgUp/PgDn by 10, Home/End or g/G.
use crossterm::event::KeyCode;

/// Rows PgUp/PgDn move by.
const PAGE: usize = 10;

/// Moves `selected` in a list of `len` rows for a navigation key and returns `true`; any other
/// key leaves it alone and returns `false`. The selection stays in `0..len` (0 when empty).
pub fn navigate(selected: &mut usize, len: usize, code: KeyCode) -> bool {
    let last = len.saturating_sub(1);
    *selected = match code {
        KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => (*selected + 1).min(last),
        KeyCode::PageUp => selected.saturating_sub(PAGE),
        KeyCode::PageDown => (*selected + PAGE).min(last),
        KeyCode::Home | KeyCode::Char('g') => 0,
        KeyCode::End | KeyCode::Char('G') => last,
        _ => return false,
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_within_bounds() {
        let mut s = 0;
        assert!(navigate(&mut s, 25, KeyCode::Down));
        assert_eq!(s, 1);
        navigate(&mut s, 25, KeyCode::PageDown);
        assert_eq!(s, 11);
        navigate(&mut s, 25, KeyCode::Char('G'));
        assert_eq!(s, 24);
        navigate(&mut s, 25, KeyCode::Char('j'));
        assert_eq!(s, 24);
        navigate(&mut s, 25, KeyCode::PageUp);
        assert_eq!(s, 14);
        navigate(&mut s, 25, KeyCode::Home);
        assert_eq!(s, 0);
        navigate(&mut s, 25, KeyCode::Up);
        assert_eq!(s, 0);
        assert!(!navigate(&mut s, 25, KeyCode::Enter));
        navigate(&mut s, 0, KeyCode::End);
        assert_eq!(s, 0);
    }
}
