//! Widgets fed plain data: curves with a marked stage boundary, the reliability diagram and
//! per-class accuracy bars. They know nothing of the app's state.
mod class_bars;
mod line_chart;
mod reliability;

pub use class_bars::{Band, ClassBar, ClassBars};
pub use line_chart::{Curve, LineChart};
pub use reliability::Reliability;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

/// Lower eighth blocks, index = eighths filled (0 = empty).
const EIGHTHS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

/// Writes `text` centred on the middle row of `area`, clipped to its width.
fn centered_note(area: Rect, buf: &mut Buffer, text: &str, style: Style) {
    if area.is_empty() {
        return;
    }
    let w = text.chars().count().min(usize::from(area.width)) as u16;
    let x = area.x + (area.width - w) / 2;
    buf.set_stringn(
        x,
        area.y + area.height / 2,
        text,
        usize::from(area.width),
        style,
    );
}
