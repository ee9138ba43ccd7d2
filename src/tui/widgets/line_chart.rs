//! Curves over a shared x axis (batches or epochs) in Braille, with a y axis, the x range, and
//! an optional dotted vertical mark (the stage boundary).
use super::centered_note;
use crate::tui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::widgets::canvas::{Canvas, Line, Points};
use ratatui::widgets::Widget;

/// One curve: points in x order and its colour.
#[derive(Debug, Clone, Copy)]
pub struct Curve<'a> {
    /// `(x, y)` in increasing x.
    pub points: &'a [(f64, f64)],
    /// Colour (ignored under `NO_COLOR`).
    pub color: Color,
}

/// A line chart of plain points. Draw it inside a block; the title is the caller's.
#[derive(Debug, Clone)]
pub struct LineChart<'a> {
    curves: Vec<Curve<'a>>,
    boundary: Option<(f64, &'a str)>,
    y_floor: Option<f64>,
    empty: &'a str,
    theme: Theme,
}

impl<'a> LineChart<'a> {
    /// A chart of `curves`; `empty` is written when no curve has a point.
    pub fn new(curves: Vec<Curve<'a>>, empty: &'a str, theme: Theme) -> Self {
        LineChart {
            curves,
            boundary: None,
            y_floor: None,
            empty,
            theme,
        }
    }

    /// Marks a vertical boundary at `x` with a dotted line and `label` under it.
    #[must_use]
    pub fn boundary(mut self, x: Option<f64>, label: &'a str) -> Self {
        self.boundary = x.map(|x| (x, label));
        self
    }

    /// Keeps the y axis from going below `floor` (0 for accuracies and errors).
    #[must_use]
    pub fn y_floor(mut self, floor: f64) -> Self {
        self.y_floor = Some(floor);
        self
    }

    fn bounds(&self) -> Option<([f64; 2], [f64; 2])> {
        let pts = || self.curves.iter().flat_map(|c| c.points.iter());
        let fold = |f: fn(&(f64, f64)) -> f64| {
            pts()
                .map(f)
                .filter(|v| v.is_finite())
                .fold(None, |acc: Option<[f64; 2]>, v| {
                    Some(acc.map_or([v, v], |[lo, hi]| [lo.min(v), hi.max(v)]))
                })
        };
        let [mut x0, mut x1] = fold(|p| p.0)?;
        let [mut y0, mut y1] = fold(|p| p.1)?;
        if let Some((b, _)) = self.boundary {
            x0 = x0.min(b);
            x1 = x1.max(b);
        }
        if x1 <= x0 {
            x0 -= 0.5;
            x1 += 0.5;
        }
        let pad = if y1 <= y0 {
            (y0.abs() * 0.1).max(0.5)
        } else {
            (y1 - y0) * 0.05
        };
        y0 -= pad;
        y1 += pad;
        if let Some(f) = self.y_floor {
            y0 = y0.max(f);
        }
        Some(([x0, x1], [y0, y1]))
    }
}

/// An axis tick with as many decimals as the span needs.
fn fmt_tick(v: f64, span: f64) -> String {
    if span >= 20.0 {
        format!("{v:.0}")
    } else if span >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An x position (batch or epoch count): `950`, `12k`, `1.5M`.
fn fmt_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

impl LineChart<'_> {
    /// Draws the y axis and its ticks for the range `yb` along the left of `area`, leaving the
    /// bottom row to the x axis; returns the plot area right of it.
    fn draw_y_axis(&self, area: Rect, yb: [f64; 2], buf: &mut Buffer) -> Rect {
        let span = yb[1] - yb[0];
        let mut ticks = vec![(0u16, fmt_tick(yb[1], span))];
        let plot_h = area.height - 1;
        if plot_h >= 5 {
            ticks.push((plot_h / 2, fmt_tick((yb[0] + yb[1]) / 2.0, span)));
        }
        ticks.push((plot_h - 1, fmt_tick(yb[0], span)));
        let label_w = ticks.iter().map(|(_, t)| t.len()).max().unwrap_or(1) as u16;
        let axis_x = area.x + label_w;
        let dim = self.theme.dim();
        for row in 0..plot_h {
            buf.set_string(axis_x, area.y + row, "│", dim);
        }
        for (row, t) in &ticks {
            let x = axis_x - t.len() as u16;
            buf.set_string(x, area.y + row, t, dim);
            buf.set_string(axis_x, area.y + row, "┤", dim);
        }
        Rect {
            x: axis_x + 1,
            y: area.y,
            width: area.width.saturating_sub(label_w + 1),
            height: plot_h,
        }
    }

    /// Draws the x axis under `plot`: the range `xb` at both ends. Returns the column after the
    /// left end's label and the column where the right end's starts (`plot`'s right edge when it
    /// did not fit).
    fn draw_x_axis(&self, plot: Rect, xb: [f64; 2], buf: &mut Buffer) -> (u16, u16) {
        let dim = self.theme.dim();
        let bottom = plot.bottom();
        buf.set_string(plot.x - 1, bottom, "└", dim);
        let (left, right) = (fmt_count(xb[0]), fmt_count(xb[1]));
        buf.set_stringn(plot.x, bottom, &left, usize::from(plot.width), dim);
        let left_end = plot.x + left.len() as u16;
        let mut rx = plot.right().saturating_sub(right.len() as u16);
        if rx > left_end {
            buf.set_string(rx, bottom, &right, dim);
        } else {
            rx = plot.right();
        }
        (left_end, rx)
    }

    /// Draws the curves in Braille over `plot`, scaled to the bounds `xb` and `yb`.
    fn draw_curves(&self, plot: Rect, xb: [f64; 2], yb: [f64; 2], buf: &mut Buffer) {
        let theme = self.theme;
        let curves = &self.curves;
        Canvas::default()
            .marker(Marker::Braille)
            .x_bounds(xb)
            .y_bounds(yb)
            .paint(|ctx| {
                for c in curves {
                    let color = theme.shape(c.color);
                    if c.points.len() == 1 {
                        ctx.draw(&Points {
                            coords: c.points,
                            color,
                        });
                    }
                    for w in c.points.windows(2) {
                        ctx.draw(&Line {
                            x1: w[0].0,
                            y1: w[0].1,
                            x2: w[1].0,
                            y2: w[1].1,
                            color,
                        });
                    }
                }
            })
            .render(plot, buf);
    }

    /// Draws the boundary, if any, as a dotted column over the free cells of `plot`, its label
    /// on the x axis between `left_end` and `rx` when it fits there.
    fn draw_boundary(
        &self,
        plot: Rect,
        xb: [f64; 2],
        (left_end, rx): (u16, u16),
        buf: &mut Buffer,
    ) {
        if let Some((bx, label)) = self.boundary {
            let frac = (bx - xb[0]) / (xb[1] - xb[0]);
            let col = plot.x + (frac * f64::from(plot.width - 1)).round() as u16;
            let style = self.theme.warn();
            for row in plot.y..plot.bottom() {
                let cell = &mut buf[(col, row)];
                if cell.symbol() == " " {
                    cell.set_symbol("┊").set_style(style);
                }
            }
            // Under the mark, moved aside so as not to cover the range's ends (`1s2` for `132`).
            let w = label.len() as u16;
            if left_end + 1 + w < rx {
                let lx = col.clamp(left_end + 1, rx - 1 - w);
                buf.set_string(lx, plot.bottom(), label, style);
            }
        }
    }
}

impl Widget for LineChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let Some((xb, yb)) = self.bounds() else {
            centered_note(area, buf, self.empty, self.theme.dim());
            return;
        };
        if area.height < 3 || area.width < 10 {
            return;
        }
        let plot = self.draw_y_axis(area, yb, buf);
        if plot.width < 2 {
            return;
        }
        let x_labels = self.draw_x_axis(plot, xb, buf);
        self.draw_curves(plot, xb, yb, buf);
        self.draw_boundary(plot, xb, x_labels, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(chart: LineChart<'_>, w: u16, h: u16) -> Buffer {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        chart.render(buf.area, &mut buf);
        buf
    }

    fn is_braille(s: &str) -> bool {
        s.chars()
            .next()
            .is_some_and(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
    }

    fn row(buf: &Buffer, y: u16) -> String {
        (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect()
    }

    #[test]
    fn axes_ranges_and_boundary() {
        let pts = [(1.0, 10.0), (2.0, 30.0), (3.0, 50.0), (4.0, 40.0)];
        let chart = LineChart::new(
            vec![Curve {
                points: &pts,
                color: Color::Cyan,
            }],
            "no data",
            Theme { color: false },
        )
        .boundary(Some(2.5), "s2")
        .y_floor(0.0);
        let buf = render(chart, 30, 8);
        // y ticks: top is 50 + 5 % padding, bottom 10 − 5 % padding.
        assert!(row(&buf, 0).starts_with("52┤"), "{:?}", row(&buf, 0));
        assert!(row(&buf, 6).starts_with(" 8┤"), "{:?}", row(&buf, 6));
        let bottom = row(&buf, 7);
        assert!(bottom.starts_with("  └1"), "{bottom:?}");
        assert!(bottom.trim_end().ends_with('4'), "{bottom:?}");
        assert!(bottom.contains("s2"), "{bottom:?}");
        // The boundary column is dotted where the curve does not cross it.
        let col = (0..30).find(|&x| buf[(x, 7)].symbol() == "s").unwrap();
        let dotted = (0..7).filter(|&y| buf[(col, y)].symbol() == "┊").count();
        assert!(dotted >= 4, "{dotted}");
        // Braille drawn in the plot.
        let braille = (0..7)
            .flat_map(|y| (3..30).map(move |x| (x, y)))
            .filter(|&(x, y)| is_braille(buf[(x, y)].symbol()))
            .count();
        assert!(braille > 10, "{braille}");
    }

    #[test]
    fn boundary_label_leaves_the_range_ends_whole() {
        let pts: Vec<(f64, f64)> = (1..=132).map(|x| (f64::from(x), 1.0)).collect();
        for b in [131.0, 1.5, 60.0] {
            let chart = LineChart::new(
                vec![Curve {
                    points: &pts,
                    color: Color::Cyan,
                }],
                "",
                Theme { color: false },
            )
            .boundary(Some(b), "s2");
            let buf = render(chart, 30, 6);
            let bottom = row(&buf, 5);
            let words: Vec<&str> = bottom.split_whitespace().collect();
            assert_eq!(words.first(), Some(&"└1"), "{bottom:?}");
            assert_eq!(words.last(), Some(&"132"), "{bottom:?}");
            assert!(words.contains(&"s2"), "{bottom:?}");
        }
    }

    #[test]
    fn empty_and_single_point() {
        let buf = render(
            LineChart::new(vec![], "waiting", Theme { color: true }),
            20,
            5,
        );
        assert_eq!(row(&buf, 2).trim(), "waiting");
        let pts = [(1.0, 0.5)];
        let c = LineChart::new(
            vec![Curve {
                points: &pts,
                color: Color::Red,
            }],
            "",
            Theme { color: true },
        );
        let buf = render(c, 20, 5);
        let drawn = (0..4)
            .flat_map(|y| (0..20).map(move |x| (x, y)))
            .filter(|&(x, y)| is_braille(buf[(x, y)].symbol()))
            .count();
        assert_eq!(drawn, 1);
    }

    #[test]
    fn tick_formats() {
        assert_eq!(fmt_tick(87.456, 40.0), "87");
        assert_eq!(fmt_tick(2.345, 3.0), "2.3");
        assert_eq!(fmt_tick(0.1234, 0.5), "0.12");
        assert_eq!(fmt_count(950.0), "950");
        assert_eq!(fmt_count(12_345.0), "12k");
        assert_eq!(fmt_count(1_500_000.0), "1.5M");
    }
}
