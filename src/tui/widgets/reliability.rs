//! The reliability diagram (Guo et al., 2017; MiSLAS Fig. 1): for each of the 15 confidence
//! bins, a bar of the accuracy of its samples against the diagonal of perfect calibration. The
//! gap between a bar and the diagonal — what ECE averages — is hatched: above the bar when the
//! model is over-confident, over the bar's top when it is under-confident.
use super::{centered_note, EIGHTHS};
use crate::metrics::ReliabilityBin;
use crate::tui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

/// Hatch of the calibration gap.
const GAP: &str = "░";
/// The diagonal where no bar covers it.
const DIAGONAL: &str = "·";

/// A reliability diagram of plain bins. Draw it inside a block; the title is the caller's.
#[derive(Debug, Clone)]
pub struct Reliability<'a> {
    bins: &'a [ReliabilityBin],
    theme: Theme,
}

impl<'a> Reliability<'a> {
    /// A diagram of `bins` (in confidence order).
    pub fn new(bins: &'a [ReliabilityBin], theme: Theme) -> Self {
        Reliability { bins, theme }
    }
}

impl Reliability<'_> {
    /// Draws the y axis with its labels and the x axis with its; returns the plot area (a
    /// column group per bin) and the width of a bin's columns.
    fn draw_axes(&self, area: Rect, plot_h: u16, buf: &mut Buffer) -> (Rect, u16) {
        let n = self.bins.len() as u16;
        let dim = self.theme.dim();
        let axis_x = area.x + 3;
        for row in 0..plot_h {
            buf.set_string(axis_x, area.y + row, "│", dim);
        }
        for (row, label) in [(0, "1.0"), (plot_h / 2, "0.5"), (plot_h - 1, "0.0")] {
            buf.set_string(area.x, area.y + row, label, dim);
            buf.set_string(axis_x, area.y + row, "┤", dim);
        }
        let cw = ((area.width - 4) / n).min(4);
        let plot = Rect {
            x: axis_x + 1,
            y: area.y,
            width: cw * n,
            height: plot_h,
        };
        let bottom = area.y + plot_h;
        buf.set_string(axis_x, bottom, "└", dim);
        buf.set_string(plot.x, bottom, "0", dim);
        buf.set_string(plot.right() - 1, bottom, "1", dim);
        let mid = "confidence";
        if plot.width as usize > mid.len() + 4 {
            buf.set_string(
                plot.x + (plot.width - mid.len() as u16) / 2,
                bottom,
                mid,
                dim,
            );
        }
        (plot, cw)
    }

    /// Draws the legend on row `y` of `area`, as many of its entries as fit.
    fn draw_legend(&self, area: Rect, y: u16, buf: &mut Buffer) {
        let dim = self.theme.dim();
        let bar = self.theme.fg(Color::Cyan);
        let mut x = area.x;
        for (sym, text, style) in [
            ("█", " accuracy  ", bar),
            (GAP, " gap  ", self.theme.fg(Color::Red)),
            (DIAGONAL, " ideal", dim),
        ] {
            if x + 1 + text.len() as u16 > area.right() {
                break;
            }
            buf.set_string(x, y, sym, style);
            buf.set_string(x + 1, y, text, dim);
            x += 1 + text.len() as u16;
        }
    }

    /// Draws each bin's bar in `cw` columns of `plot`, its calibration gap hatched and the
    /// diagonal where neither covers it.
    fn draw_bars(&self, plot: Rect, cw: u16, buf: &mut Buffer) {
        let plot_h = plot.height;
        let dim = self.theme.dim();
        let eighths = |v: f64| (v.clamp(0.0, 1.0) * f64::from(plot_h) * 8.0).round() as u16;
        let bar_style = self.theme.fg(Color::Cyan);
        let gap_style = self.theme.fg(Color::Red);
        for (i, bin) in self.bins.iter().enumerate() {
            let (acc, conf) = if bin.count > 0 {
                (eighths(bin.accuracy), eighths(bin.confidence))
            } else {
                (0, 0)
            };
            let solid = acc.min(conf);
            let gap_top = acc.max(conf);
            for c in 0..cw {
                let x = plot.x + i as u16 * cw + c;
                // The diagonal at this column's centre.
                let diag = (f64::from(x - plot.x) + 0.5) / f64::from(plot.width);
                let diag_row = ((diag * f64::from(plot_h)) as u16).min(plot_h - 1);
                for r in 0..plot_h {
                    let lo = r * 8;
                    let cell = &mut buf[(x, plot.bottom() - 1 - r)];
                    if solid >= lo + 8 {
                        cell.set_symbol(EIGHTHS[8]).set_style(bar_style);
                    } else if solid > lo {
                        cell.set_symbol(EIGHTHS[usize::from(solid - lo)])
                            .set_style(bar_style);
                    } else if lo + 4 < gap_top {
                        cell.set_symbol(GAP).set_style(gap_style);
                    } else if r == diag_row {
                        cell.set_symbol(DIAGONAL).set_style(dim);
                    }
                }
            }
        }
    }
}

impl Widget for Reliability<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let n = self.bins.len() as u16;
        if n == 0 {
            centered_note(area, buf, "no evaluation yet", self.theme.dim());
            return;
        }
        // y labels (4 columns with the axis), x axis row, legend row when there is room.
        let legend = area.height >= 8;
        let rows_below = 1 + u16::from(legend);
        if area.width < 4 + n || area.height < rows_below + 3 {
            centered_note(area, buf, "too small", self.theme.dim());
            return;
        }
        let plot_h = area.height - rows_below;
        let (plot, cw) = self.draw_axes(area, plot_h, buf);
        if legend {
            self.draw_legend(area, area.y + plot_h + 1, buf);
        }
        self.draw_bars(plot, cw, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins(f: impl Fn(usize) -> (usize, f64, f64)) -> Vec<ReliabilityBin> {
        (0..15)
            .map(|i| {
                let (count, confidence, accuracy) = f(i);
                ReliabilityBin {
                    lo: i as f64 / 15.0,
                    hi: (i + 1) as f64 / 15.0,
                    count,
                    confidence,
                    accuracy,
                }
            })
            .collect()
    }

    fn render(b: &[ReliabilityBin], w: u16, h: u16) -> Buffer {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        Reliability::new(b, Theme { color: false }).render(buf.area, &mut buf);
        buf
    }

    fn column(buf: &Buffer, x: u16, rows: u16) -> String {
        (0..rows).map(|y| buf[(x, y)].symbol()).collect()
    }

    #[test]
    fn perfect_bin_is_a_full_bar_and_overconfidence_is_hatched() {
        // Bin 14: confidence 1, accuracy 1. Bin 7: confidence 0.5, accuracy 0.
        let b = bins(|i| match i {
            14 => (10, 1.0, 1.0),
            7 => (10, 0.5, 0.0),
            _ => (0, 0.0, 0.0),
        });
        // 4 + 15×2 columns, 8 plot rows + axis + legend.
        let buf = render(&b, 34, 10);
        let plot_x = 4;
        assert_eq!(column(&buf, plot_x + 14 * 2, 8), "████████");
        assert_eq!(column(&buf, plot_x + 14 * 2 + 1, 8), "████████");
        // Bin 7: no bar, the gap hatched up to half height.
        let c7 = column(&buf, plot_x + 7 * 2, 8);
        assert_eq!(c7, "    ░░░░", "{c7:?}");
        // An empty bin shows the diagonal: bin 0 at the bottom, bin 12 near the top.
        assert_eq!(buf[(plot_x, 7)].symbol(), DIAGONAL);
        assert_eq!(buf[(plot_x + 12 * 2, 1)].symbol(), DIAGONAL);
        let axis: String = (0..34).map(|x| buf[(x, 8)].symbol()).collect();
        assert!(axis.contains("confidence"), "{axis:?}");
        let legend: String = (0..34).map(|x| buf[(x, 9)].symbol()).collect();
        assert!(legend.contains("accuracy"), "{legend:?}");
        assert_eq!(buf[(0, 0)].symbol(), "1");
    }

    #[test]
    fn underconfidence_hatches_the_top_of_the_bar() {
        // Confidence 0.25, accuracy 1: solid up to a quarter, hatched above.
        let b = bins(|i| {
            if i == 3 {
                (5, 0.25, 1.0)
            } else {
                (0, 0.0, 0.0)
            }
        });
        let buf = render(&b, 34, 10);
        let c = column(&buf, 4 + 3 * 2, 8);
        assert_eq!(c, "░░░░░░██", "{c:?}");
    }

    #[test]
    fn partial_bar_uses_eighths() {
        // Accuracy 0.3, confidence 0.3 over 8 rows = 19.2 eighths: 2 full cells and a ▃.
        let b = bins(|i| if i == 4 { (5, 0.3, 0.3) } else { (0, 0.0, 0.0) });
        let buf = render(&b, 34, 10);
        let c = column(&buf, 4 + 4 * 2, 8);
        assert_eq!(c, "     ▃██", "{c:?}");
    }

    #[test]
    fn small_or_empty() {
        let buf = render(&[], 20, 5);
        let mid: String = (0..20).map(|x| buf[(x, 2)].symbol()).collect();
        assert!(mid.contains("no evaluation yet"));
        let b = bins(|_| (1, 0.5, 0.5));
        let buf = render(&b, 12, 5);
        let mid: String = (0..12).map(|x| buf[(x, 2)].symbol()).collect();
        assert!(mid.contains("too small"));
    }
}
