//! The comparison's figures, drawn with `plotters` as PNG and SVG: per method a reliability
//! diagram (accuracy per 15-bin confidence bin against the diagonal, the gap shaded) over its
//! confidence histogram; one overlay of every method's reliability curve; and per class
//! accuracy and over-confidence against the training frequency (log scale).
//!
//! Each figure is drawn once, as SVG; the PNG is that SVG rendered by `resvg` (text shaped
//! on its baseline, anti-aliased lines), so the two files show the same figure. Text layout
//! needs a TrueType font, for plotters' `ab_glyph` measurements and for `resvg`: DejaVu Sans
//! (Debian's `fonts-dejavu-core`, installed by `scripts/setup.sh`), or the file `MISLAS_FONT`
//! names. Without one no figure is drawn and the error says what to install; the tables are
//! written before the figures.
use super::report::Comparison;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Font files tried for PNG text, after `MISLAS_FONT`.
const FONT_FILES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Matplotlib's `tab20` in the order tab10's ten, then their light partners: twenty
/// methods get twenty different colours.
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

pub(super) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The figures' font: registered once with plotters (text measurements) and returned as
/// bytes for `resvg`.
fn font() -> Result<&'static [u8]> {
    static FONT: std::sync::OnceLock<Result<&'static [u8], String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("MISLAS_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_FILES.iter().map(PathBuf::from))
            .collect();
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            "no TrueType font for the figures: install fonts-dejavu-core or set MISLAS_FONT \
             to a .ttf file (the tables are written)"
                .to_owned()
        })?;
        let bytes: &'static [u8] = Box::leak(
            std::fs::read(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .into(),
        );
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a TrueType font", path.display()))?;
        Ok(bytes)
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Renders an SVG document to PNG bytes at its own size, with `font` as every family.
fn svg_to_png(svg: &str, font: &'static [u8]) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_font_data(font.to_vec());
    let family = db
        .faces()
        .next()
        .and_then(|f| f.families.first())
        .map(|f| f.0.clone());
    let family = family.ok_or_else(|| anyhow!("the figures' font has no family name"))?;
    db.set_sans_serif_family(family.clone());
    opt.font_family = family;
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| anyhow!("the figure's SVG: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("a figure of {}×{} pixels", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| anyhow!("PNG encoding: {e}"))
}

pub(super) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// A figure that draws on any backend.
pub(super) trait Figure {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `fig` into `<stem>.svg` and `<stem>.png` of `size` pixels; returns the files.
pub(super) fn both(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    fig: &impl Figure,
) -> Result<Vec<PathBuf>> {
    let font = font()?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    let svg = dir.join(format!("{stem}.svg"));
    std::fs::write(&svg, &text).with_context(|| format!("cannot write {}", svg.display()))?;
    let png = dir.join(format!("{stem}.png"));
    let bytes =
        svg_to_png(&text, font).with_context(|| format!("cannot draw {}", png.display()))?;
    std::fs::write(&png, bytes).with_context(|| format!("cannot write {}", png.display()))?;
    Ok(vec![svg, png])
}

struct Reliability<'a> {
    c: &'a Comparison,
    row: usize,
}

impl Figure for Reliability<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let r = &self.c.rows[self.row];
        let (f, i) = (&r.figures[0], &r.intervals[0]);
        let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 * 68 / 100);
        let title = format!(
            "{}: top-1 {:.2}%, ECE {:.2}% [{:.2}, {:.2}]",
            r.name, f.top1, f.ece, i.ece.lo, i.ece.hi
        );
        reliability_bars(&top, &title, &f.bins)?;
        confidence_histogram(&bottom, &f.bins)
    }
}

/// The reliability diagram: per bin, accuracy as a bar up to min(accuracy, confidence) and the
/// gap to the bin's mean confidence above it, red where confidence is higher (over-confident)
/// and green where accuracy is (under-confident), so each bar still ends at the bin's accuracy
/// and no two colours overlap; the diagonal of perfect calibration.
fn reliability_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    bins: &[crate::metrics::ReliabilityBin],
) -> Result<()> {
    let mut ch = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(err)?;
    ch.configure_mesh()
        .y_desc("accuracy")
        .x_desc("confidence")
        .draw()
        .map_err(err)?;
    let bar = |lo: f64, hi: f64, b: &crate::metrics::ReliabilityBin, c: RGBAColor| {
        Rectangle::new([(b.lo + 0.004, lo), (b.hi - 0.004, hi)], c.filled())
    };
    let legend = |c: RGBAColor| {
        move |(x, y): (i32, i32)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled())
    };
    let series = [
        ("accuracy of the bin", RGBColor(31, 119, 180).mix(0.8)),
        (
            "gap, over-confident (confidence > accuracy)",
            RGBColor(214, 39, 40).mix(0.45),
        ),
        (
            "gap, under-confident (accuracy > confidence)",
            RGBColor(44, 160, 44).mix(0.6),
        ),
    ];
    for (part, (label, c)) in series.into_iter().enumerate() {
        let parts = bins.iter().filter(|b| b.count > 0).filter_map(|b| {
            let (acc, conf) = (b.accuracy, b.confidence);
            match part {
                0 => Some(bar(0.0, acc.min(conf), b, c)),
                1 if conf > acc => Some(bar(acc, conf, b, c)),
                2 if acc > conf => Some(bar(conf, acc, b, c)),
                _ => None,
            }
        });
        ch.draw_series(parts)
            .map_err(err)?
            .label(label)
            .legend(legend(c));
    }
    ch.draw_series(LineSeries::new(
        [(0.0, 0.0), (1.0, 1.0)],
        BLACK.stroke_width(1),
    ))
    .map_err(err)?
    .label("perfect calibration")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK));
    ch.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)
}

/// The share of the scored images in each confidence bin.
fn confidence_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    bins: &[crate::metrics::ReliabilityBin],
) -> Result<()> {
    let total: usize = bins.iter().map(|b| b.count).sum::<usize>().max(1);
    let share = |b: &crate::metrics::ReliabilityBin| b.count as f64 / total as f64;
    let ymax = bins.iter().map(share).fold(0.0, f64::max).max(0.01) * 1.1;
    let mut h = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0f64..1f64, 0f64..ymax)
        .map_err(err)?;
    h.configure_mesh()
        .y_desc("fraction")
        .x_desc("confidence (15 bins)")
        .draw()
        .map_err(err)?;
    h.draw_series(bins.iter().map(|b| {
        Rectangle::new(
            [(b.lo + 0.004, 0.0), (b.hi - 0.004, share(b))],
            RGBColor(127, 127, 127).filled(),
        )
    }))
    .map_err(err)?;
    Ok(())
}

struct Overlay<'a> {
    c: &'a Comparison,
}

impl Figure for Overlay<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let mut ch = ChartBuilder::on(area)
            .caption(
                "Reliability: accuracy per confidence bin (15 bins)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        ch.configure_mesh()
            .y_desc("accuracy")
            .x_desc("mean confidence in bin")
            .draw()
            .map_err(err)?;
        ch.draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
        for (k, r) in self.c.rows.iter().enumerate() {
            let col = color(k);
            let pts: Vec<(f64, f64)> = r.figures[0]
                .bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.confidence, b.accuracy))
                .collect();
            ch.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                .map_err(err)?
                .label(format!("{} (ECE {:.2}%)", r.name, r.figures[0].ece))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                });
            ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.filled())))
                .map_err(err)?;
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        Ok(())
    }
}

struct PerClass<'a> {
    c: &'a Comparison,
}

impl Figure for PerClass<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let counts: Vec<f64> = self
            .c
            .train_class_counts
            .iter()
            .map(|&n| n.max(1) as f64)
            .collect();
        let (xmin, xmax) = counts
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &c| (a.min(c), b.max(c)));
        let x = (xmin / 1.5)..(xmax * 1.5);
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        let over: Vec<f64> = self
            .c
            .rows
            .iter()
            .flat_map(|r| r.per_class_overconfidence.iter().copied())
            .collect();
        let lim = over.iter().fold(5f64, |m, v| m.max(v.abs())) * 1.1;
        for (panel, (title, ylo, yhi, acc)) in [left, right].iter().zip([
            ("Accuracy per class, %", 0.0, 100.0, true),
            (
                "Mean confidence − accuracy per class, points",
                -lim,
                lim,
                false,
            ),
        ]) {
            let mut ch = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(x.clone().log_scale(), ylo..yhi)
                .map_err(err)?;
            ch.configure_mesh()
                .x_desc("training images of the class (log)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(err)?;
            if !acc {
                ch.draw_series(LineSeries::new(
                    [(x.start, 0.0), (x.end, 0.0)],
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?;
            }
            for (k, r) in self.c.rows.iter().enumerate() {
                let col = color(k);
                let ys = if acc {
                    &r.per_class_accuracy
                } else {
                    &r.per_class_overconfidence
                };
                let mut pts: Vec<(f64, f64)> =
                    counts.iter().copied().zip(ys.iter().copied()).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                ch.draw_series(LineSeries::new(pts.clone(), col.stroke_width(1)))
                    .map_err(err)?
                    .label(r.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.filled())))
                    .map_err(err)?;
            }
            if acc {
                ch.configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 12))
                    .draw()
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// A file-name-safe stem of a method spec: `ce+tau-norm` → `ce_tau-norm`.
pub fn stem(spec: &str) -> String {
    spec.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes every figure of `c` into `dir`: `reliability_<method>.{png,svg}` per method,
/// `reliability_overlay.*` and `per_class.*`. Returns the files written.
///
/// # Errors
/// A file cannot be written, or no font is found for the PNGs (the SVGs are written first).
pub fn write_all(c: &Comparison, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for (row, r) in c.rows.iter().enumerate() {
        let name = format!("reliability_{}", stem(&r.spec));
        files.extend(both(dir, &name, (640, 640), &Reliability { c, row })?);
    }
    files.extend(both(
        dir,
        "reliability_overlay",
        (760, 680),
        &Overlay { c },
    )?);
    files.extend(both(dir, "per_class", (1200, 520), &PerClass { c })?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Square;
    impl Figure for Square {
        fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
            area.draw(&Rectangle::new([(10, 10), (30, 30)], RED.filled()))
                .map_err(err)?;
            area.draw(&Text::new("1.5 τ", (40, 40), ("sans-serif", 13)))
                .map_err(err)
        }
    }

    #[test]
    fn the_png_is_the_svg_rendered_at_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let files = both(dir.path(), "square", (64, 48), &Square).unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("1.5 τ"), "the text is SVG text: {svg}");
        let png = image::open(&files[1]).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (64, 48));
        assert_eq!(png.get_pixel(20, 20).0, [255, 0, 0], "inside the square");
        assert_eq!(
            png.get_pixel(5, 5).0,
            [255, 255, 255],
            "the white background"
        );
        // The text was drawn: some dark pixels right of and below (40, 40)'s anchor.
        let dark = (40..64)
            .flat_map(|x| (30..48).map(move |y| (x, y)))
            .filter(|&(x, y)| png.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(dark > 10, "{dark} dark pixels of text");
    }
}
