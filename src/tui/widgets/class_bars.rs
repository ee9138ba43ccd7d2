//! Per-class accuracy as vertical bars, classes ordered by training frequency (head on the
//! left), coloured and labelled by their head/medium/tail band (the preset's class-index ranges). When there are more classes than
//! columns, consecutive classes share a column showing their mean.
use super::{centered_note, EIGHTHS};
use crate::tui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::Widget;

/// The band of a class by the preset's class-index ranges (`head_class_idx`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    /// Head classes.
    Head,
    /// Medium classes.
    Medium,
    /// Tail classes.
    Tail,
}

impl Band {
    /// Short label under the bars.
    pub fn label(self) -> &'static str {
        match self {
            Band::Head => "head",
            Band::Medium => "med",
            Band::Tail => "tail",
        }
    }

    fn color(self) -> Color {
        match self {
            Band::Head => Color::Green,
            Band::Medium => Color::Yellow,
            Band::Tail => Color::Magenta,
        }
    }
}

/// One class's bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassBar {
    /// Test accuracy of the class, percent.
    pub accuracy: f64,
    /// Its band.
    pub band: Band,
}

/// Bars of plain per-class figures, already in training-frequency order.
#[derive(Debug, Clone)]
pub struct ClassBars<'a> {
    bars: &'a [ClassBar],
    theme: Theme,
}

impl<'a> ClassBars<'a> {
    /// Bars of `bars` (head first).
    pub fn new(bars: &'a [ClassBar], theme: Theme) -> Self {
        ClassBars { bars, theme }
    }
}

/// A column: mean accuracy of its classes and the band of its first class.
fn columns(bars: &[ClassBar], width: u16) -> (Vec<(f64, Band)>, u16) {
    let n = bars.len();
    let w = usize::from(width.max(1));
    if n * 2 <= w {
        // Room for a gap between bars: up to 3 columns of bar and 1 of gap per class.
        let cw = (w / n).min(4) as u16;
        (bars.iter().map(|b| (b.accuracy, b.band)).collect(), cw)
    } else {
        let per = n.div_ceil(w);
        let cols = bars
            .chunks(per)
            .map(|c| {
                let mean = c.iter().map(|b| b.accuracy).sum::<f64>() / c.len() as f64;
                (mean, c[0].band)
            })
            .collect();
        (cols, 1)
    }
}

impl Widget for ClassBars<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if self.bars.is_empty() {
            centered_note(area, buf, "no evaluation yet", self.theme.dim());
            return;
        }
        if area.width < 8 || area.height < 4 {
            return;
        }
        let dim = self.theme.dim();
        let plot_h = area.height - 1;
        let axis_x = area.x + 3;
        for row in 0..plot_h {
            buf.set_string(axis_x, area.y + row, "│", dim);
        }
        for (row, label) in [(0, "100"), (plot_h / 2, " 50"), (plot_h - 1, "  0")] {
            buf.set_string(area.x, area.y + row, label, dim);
            buf.set_string(axis_x, area.y + row, "┤", dim);
        }
        let plot = Rect {
            x: axis_x + 1,
            y: area.y,
            width: area.width - 4,
            height: plot_h,
        };
        let (cols, cw) = columns(self.bars, plot.width);
        let bar_w = if cw > 1 { cw - 1 } else { 1 };
        let bottom = area.y + plot_h;
        buf.set_string(axis_x, bottom, "└", dim);
        let style = |band: Band| -> Style { self.theme.fg(band.color()) };
        let mut band_start = 0usize;
        for (i, &(acc, band)) in cols.iter().enumerate() {
            let x0 = plot.x + i as u16 * cw;
            let units = (acc.clamp(0.0, 100.0) / 100.0 * f64::from(plot_h) * 8.0).round() as u16;
            for c in 0..bar_w {
                for r in 0..plot_h {
                    let fill = units.saturating_sub(r * 8).min(8);
                    if fill > 0 {
                        buf[(x0 + c, plot.bottom() - 1 - r)]
                            .set_symbol(EIGHTHS[usize::from(fill)])
                            .set_style(style(band));
                    }
                }
            }
            let last = i + 1 == cols.len();
            if last || cols[i + 1].1 != band {
                // Label the band under its columns, and separate it from the next band.
                let x_start = plot.x + band_start as u16 * cw;
                let span = (i + 1 - band_start) as u16 * cw;
                let label = band.label();
                let text = if usize::from(span) >= label.len() {
                    label
                } else {
                    &label[..1]
                };
                if span >= 1 {
                    let lx = x_start + (span.saturating_sub(text.len() as u16)) / 2;
                    buf.set_stringn(lx, bottom, text, usize::from(span), style(band));
                }
                if !last && cw > 1 {
                    let sx = x0 + bar_w;
                    for row in plot.y..plot.bottom() {
                        buf[(sx, row)].set_symbol("┊").set_style(dim);
                    }
                }
                band_start = i + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(bars: &[ClassBar], w: u16, h: u16) -> Buffer {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        ClassBars::new(bars, Theme { color: false }).render(buf.area, &mut buf);
        buf
    }

    fn ten() -> Vec<ClassBar> {
        (0..10)
            .map(|i| ClassBar {
                accuracy: 100.0 - 10.0 * i as f64,
                band: match i {
                    0..=2 => Band::Head,
                    3..=6 => Band::Medium,
                    _ => Band::Tail,
                },
            })
            .collect()
    }

    #[test]
    fn bars_in_frequency_order_with_bands() {
        // 4 + 10 classes × 3 columns: bar of 2 and a gap.
        let buf = render(&ten(), 34, 9);
        let col = |x: u16| -> String { (0..8).map(|y| buf[(x, y)].symbol()).collect() };
        assert_eq!(col(4), "████████", "class 0 at 100 %");
        assert_eq!(col(5), "████████");
        // Class 5 at 50 %: 4 of 8 rows.
        assert_eq!(col(4 + 5 * 3), "    ████");
        // Band separators in the gap after classes 2 and 6, not after class 0.
        assert_eq!(col(4 + 2 * 3 + 2), "┊┊┊┊┊┊┊┊");
        assert_eq!(col(4 + 6 * 3 + 2), "┊┊┊┊┊┊┊┊");
        assert_eq!(col(4 + 2), "        ");
        let labels: String = (0..34).map(|x| buf[(x, 8)].symbol()).collect();
        assert_eq!(
            labels.split_whitespace().collect::<Vec<_>>(),
            ["└", "head", "med", "tail"]
        );
    }

    #[test]
    fn many_classes_share_columns() {
        let bars: Vec<ClassBar> = (0..100)
            .map(|i| ClassBar {
                accuracy: if i < 50 { 100.0 } else { 0.0 },
                band: if i < 50 { Band::Head } else { Band::Tail },
            })
            .collect();
        let buf = render(&bars, 24, 6);
        // 20 plot columns, 5 classes each: 10 full, 10 empty.
        let full = (4..24).filter(|&x| buf[(x, 0)].symbol() == "█").count();
        assert_eq!(full, 10);
    }

    #[test]
    fn empty() {
        let buf = render(&[], 30, 5);
        let mid: String = (0..30).map(|x| buf[(x, 2)].symbol()).collect();
        assert!(mid.contains("no evaluation yet"));
    }
}
