//! JPEG decoding (libjpeg-turbo through `mislas::data::jpeg`) against the venv's PIL
//! `Image.open(f).convert("RGB")` on files PIL writes: every chroma subsampling, progressive,
//! restart markers, grey, CMYK. The pixels must be PIL's exactly, and any box decoded alone
//! must equal that box of the full decode.
mod common;

use common::python;
use mislas::data::files::decode_rgb;
use mislas::data::jpeg;
use mislas::data::transforms::{Rect, RgbImage};
use std::path::Path;

/// Writes `NAME.jpg` and PIL's decoding `NAME.raw` (`[H, W, 3]` bytes) for each kind of JPEG.
const WRITE: &str = r#"
import sys, numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.RandomState(5)
h, w = 157, 203
yy, xx = np.mgrid[0:h, 0:w]
base = np.stack([xx * 255 / w, yy * 255 / h, 128 + 100 * np.sin(xx / 7.0 + yy / 11.0)], -1)
img = np.clip(base + rng.randint(-30, 31, size=(h, w, 3)), 0, 255).astype(np.uint8)
rgb = Image.fromarray(img, 'RGB')
kinds = {
    's444': (rgb, dict(quality=90, subsampling=0)),
    's422': (rgb, dict(quality=85, subsampling=1)),
    's420': (rgb, dict(quality=75, subsampling=2)),
    'progressive': (rgb, dict(quality=80, subsampling=2, progressive=True)),
    'restart': (rgb, dict(quality=80, subsampling=2, restart_marker_blocks=3)),
    'grey': (rgb.convert('L'), dict(quality=90)),
    'cmyk': (rgb.convert('CMYK'), dict(quality=90)),
}
for name, (im, opts) in kinds.items():
    im.save(f'{out}/{name}.jpg', **opts)
    dec = Image.open(f'{out}/{name}.jpg').convert('RGB')
    open(f'{out}/{name}.raw', 'wb').write(np.asarray(dec, dtype=np.uint8).tobytes())
"#;

const KINDS: [&str; 7] = [
    "s444",
    "s422",
    "s420",
    "progressive",
    "restart",
    "grey",
    "cmyk",
];

fn write_files(dir: &Path) {
    python(WRITE, &[dir.to_str().unwrap()]);
}

#[test]
fn decoding_equals_pil_and_boxes_equal_the_full_decode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(d);
    let (w, h) = (203, 157);
    for kind in KINDS {
        let data = std::fs::read(d.join(format!("{kind}.jpg"))).unwrap();
        let pil = std::fs::read(d.join(format!("{kind}.raw"))).unwrap();
        let full = decode_rgb(&d.join(format!("{kind}.jpg"))).unwrap();
        assert_eq!((full.width, full.height), (w, h), "{kind}");
        let diffs = full.data.iter().zip(&pil).filter(|(a, b)| a != b).count();
        assert_eq!(diffs, 0, "{kind}: {diffs} values differ from PIL's");
        if kind == "grey" {
            assert!(full
                .data
                .chunks_exact(3)
                .all(|p| p[0] == p[1] && p[1] == p[2]));
        }
        // Boxes: all corners and edges, iMCU-aligned and not, tiny and whole.
        let mut state = 9u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as usize) % n
        };
        let mut boxes = vec![
            Rect { x: 0, y: 0, w, h },
            Rect {
                x: 16,
                y: 16,
                w: 32,
                h: 32,
            },
            Rect {
                x: 15,
                y: 17,
                w: 1,
                h: 1,
            },
            Rect {
                x: w - 1,
                y: h - 1,
                w: 1,
                h: 1,
            },
            Rect {
                x: 8,
                y: 24,
                w: w - 8,
                h: h - 24,
            },
        ];
        for _ in 0..60 {
            let x = next(w);
            let y = next(h);
            boxes.push(Rect {
                x,
                y,
                w: 1 + next(w - x),
                h: 1 + next(h - y),
            });
        }
        for b in boxes {
            let part: RgbImage = jpeg::decode_box(&data, b).unwrap();
            for r in 0..b.h {
                let want = &full.data[((b.y + r) * w + b.x) * 3..((b.y + r) * w + b.x + b.w) * 3];
                assert_eq!(
                    &part.data[r * b.w * 3..(r + 1) * b.w * 3],
                    want,
                    "{kind}: box {b:?}, row {r}"
                );
            }
        }
    }
}
