//! The layers of `src/lib.rs`'s module comment, ground first: no module imports one above it
//! (`use crate::…` or a `crate::…` path outside `#[cfg(test)]` code). A port of
//! `shared/tools/layers.py`, so that the order stays true in every `cargo test`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The layers, ground first; the modules of one layer may use each other.
const LAYERS: &[&[&str]] = &[
    &["config"],
    &["data", "model", "metrics", "events", "wire"],
    &[
        "method",
        "checkpoint",
        "run_dir",
        "dist",
        "distributed",
        "presets",
    ],
    &["engine"],
    &[
        "compare", "live", "headless", "bench", "seeds", "runs", "export", "hooks",
    ],
    &["queue"],
    &["tui"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Upward imports as `file:line module -> module`.
fn upward_imports(src: &Path) -> Vec<String> {
    let level: HashMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let me = first.trim_end_matches(".rs").to_owned();
        let Some(&mine) = level.get(me.as_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break; // test modules may reach anywhere
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let other: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if level.get(other.as_str()).is_some_and(|&l| l > mine) {
                    bad.push(format!("{}:{} {me} -> {other}", rel.display(), n + 1));
                }
            }
        }
    }
    bad
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = upward_imports(&src);
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/mod.rs"),
        "use crate::engine::Job;\n#[cfg(test)]\nmod t { use crate::tui::X; }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("engine.rs"), "use crate::config::Config;\n").unwrap();
    assert_eq!(
        upward_imports(dir.path()),
        vec!["config/mod.rs:1 config -> engine".to_owned()]
    );
}
