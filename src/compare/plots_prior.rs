//! The figure of the shifted test priors: top-1 and ECE of every method against the test prior
//! (forward 50 … uniform … backward 50 on the x axis, in the order scored), one line per
//! method with its 95 % bootstrap band, as PNG and SVG (`test_priors.{png,svg}`).
use super::plots::{both, color, err, Figure};
use super::test_priors::TestPriorComparison;
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A method's name and, per set, (value, interval low, interval high).
type Series = (String, Vec<(f64, f64, f64)>);

struct AgainstPrior<'a> {
    c: &'a TestPriorComparison,
}

impl AgainstPrior<'_> {
    /// Per method: its name and, per set, (value, lo, hi) of top-1 (`top1`) or ECE.
    fn series(&self, top1: bool) -> Vec<Series> {
        let Some(first) = self.c.sets.first() else {
            return Vec::new();
        };
        (0..first.rows.len())
            .map(|m| {
                let pts = self
                    .c
                    .sets
                    .iter()
                    .map(|t| {
                        let f = &t.rows[m].figures;
                        if top1 {
                            (f.top1, f.top1_ci.lo, f.top1_ci.hi)
                        } else {
                            (f.ece, f.ece_ci.lo, f.ece_ci.hi)
                        }
                    })
                    .collect();
                (first.rows[m].name.clone(), pts)
            })
            .collect()
    }

    fn panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, top1: bool) -> Result<()> {
        let series = self.series(top1);
        let n = self.c.sets.len();
        let y = y_range(&series);
        let names: Vec<String> = self.c.sets.iter().map(|t| t.set.name.clone()).collect();
        let what = if top1 { "top-1 %" } else { "ECE %" };
        let mut ch = ChartBuilder::on(area)
            .caption(format!("{what} against the test prior"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.3f64..(n as f64 - 0.7).max(0.3), y)
            .map_err(err)?;
        ch.configure_mesh()
            .x_labels(n.max(2))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(what)
            .x_desc("test prior")
            .draw()
            .map_err(err)?;
        for (m, (name, pts)) in series.iter().enumerate() {
            let col = color(m);
            let band: Vec<(f64, f64)> = pts
                .iter()
                .enumerate()
                .map(|(i, p)| (i as f64, p.1))
                .chain(pts.iter().enumerate().rev().map(|(i, p)| (i as f64, p.2)))
                .collect();
            ch.draw_series(std::iter::once(Polygon::new(band, col.mix(0.12).filled())))
                .map_err(err)?;
            let line: Vec<(f64, f64)> = pts
                .iter()
                .enumerate()
                .map(|(i, p)| (i as f64, p.0))
                .collect();
            ch.draw_series(LineSeries::new(line.clone(), col.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
            ch.draw_series(line.into_iter().map(|p| Circle::new(p, 3, col.filled())))
                .map_err(err)?;
        }
        if top1 {
            ch.configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The y range of every band, padded by 8 % (at least half a point), not below 0.
fn y_range(series: &[Series]) -> std::ops::Range<f64> {
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
            (l.min(p.1), h.max(p.2))
        });
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad).max(0.0)..(hi + pad)
}

impl Figure for AgainstPrior<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        self.panel(&left, true)?;
        self.panel(&right, false)
    }
}

/// Writes `test_priors.{png,svg}` into `dir` when at least one shifted set was scored;
/// returns the files written.
///
/// # Errors
/// A file cannot be written, or no font is found for the PNG.
pub fn write_all(c: &TestPriorComparison, dir: &Path) -> Result<Vec<PathBuf>> {
    if c.sets.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    both(dir, "test_priors", (1400, 560), &AgainstPrior { c })
}
