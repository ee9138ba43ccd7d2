//! List-file data sets (ImageNet-LT, iNaturalist 2018, Places-LT): a folder of images named by
//! two text files, one `relative/path.jpg label` per line.
//!
//! Follows the reference's `LT_Dataset` / `LT_Dataset_Eval` (`datasets/places.py`,
//! `imagenet.py`, `ina2018.py` of the MiSLAS release): the path of an image is
//! `os.path.join(data_path, first_field)`, its label the second field; the classes are then
//! re-indexed by descending training count (`sorted_classes = np.argsort(-cls_num_list_old)`,
//! `class_map[sorted_classes[i]] = i`) and the same map is applied to the test list, so that the
//! presets' `head_class_idx`/`med_class_idx`/`tail_class_idx` ranges select the classes they
//! select in the reference.
//!
//! **Ties.** Classes with equal training counts are ordered here by their original id
//! (a stable sort). The reference's order among tied classes is whatever NumPy's default
//! `argsort` (an unstable introsort/quicksort) produces, so on a list with ties the two
//! programs may number tied classes differently; accuracies per index range are unaffected
//! only when a range boundary does not split a group of tied classes.
use crate::config::Config;
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The list files a configuration names: `train_list`/`test_list` when set (relative paths
/// under `data_path`), else [`DatasetName::reference_lists`] under `data_path`.
///
/// # Errors
/// The data set is not a list-file data set and no list is configured.
pub fn list_paths(cfg: &Config) -> Result<(PathBuf, PathBuf)> {
    let root = Path::new(&cfg.data_path);
    let defaults = cfg.dataset.reference_lists();
    let pick = |key: &Option<String>, default: Option<&str>, what: &str| -> Result<PathBuf> {
        match (key, default) {
            (Some(p), _) => Ok(root.join(p)),
            (None, Some(d)) => Ok(root.join(d)),
            (None, None) => bail!(
                "{} has no reference {what} list file; set the {what}_list key",
                cfg.dataset.display_name()
            ),
        }
    };
    Ok((
        pick(&cfg.train_list, defaults.map(|d| d.0), "train")?,
        pick(&cfg.test_list, defaults.map(|d| d.1), "test")?,
    ))
}

/// One parsed list file, labels as written (before re-indexing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntries {
    /// Image paths as written in the file (relative to `data_path`), `[N]`.
    pub paths: Vec<String>,
    /// Labels as written, `[N]`, each in `0..num_classes`.
    pub labels: Vec<i64>,
}

/// Parses list-file text: one `path label` per line, fields separated by white space (Python's
/// `line.split()`), blank lines ignored. `name` names the file in errors.
///
/// # Errors
/// A line without exactly two fields, a label that is not an integer, or a label outside
/// `0..num_classes`; the message gives `name:line` and what was expected.
pub fn parse_list(text: &str, name: &str, num_classes: usize) -> Result<ListEntries> {
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        ensure!(
            fields.len() == 2,
            "{name}:{}: expected 'relative/path.jpg label', found '{line}'",
            i + 1
        );
        let label: i64 = fields[1].parse().map_err(|_| {
            anyhow::anyhow!(
                "{name}:{}: the label '{}' is not an integer class id",
                i + 1,
                fields[1]
            )
        })?;
        ensure!(
            (0..num_classes as i64).contains(&label),
            "{name}:{}: label {label} is outside 0 to {} (num_classes is {num_classes})",
            i + 1,
            num_classes as i64 - 1
        );
        paths.push(fields[0].to_owned());
        labels.push(label);
    }
    Ok(ListEntries { paths, labels })
}

/// Reads and parses a list file (see [`parse_list`]).
///
/// # Errors
/// The file cannot be read (the message names it and the key that overrides it), or as
/// [`parse_list`]; an empty list.
pub fn read_list(path: &Path, num_classes: usize) -> Result<ListEntries> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the list file {} (expected one 'relative/path.jpg label' per line; \
             set train_list/test_list to use other files)",
            path.display()
        )
    })?;
    let entries = parse_list(&text, &path.display().to_string(), num_classes)?;
    ensure!(
        !entries.paths.is_empty(),
        "{}: the list names no image",
        path.display()
    );
    Ok(entries)
}

/// The reference's class map: `map[old] = new`, classes ordered by descending training count,
/// ties by ascending old id (see the module documentation for the reference's tie order).
///
/// `labels` are the training labels as written, each in `0..num_classes`; classes without a
/// training image come last.
///
/// # Panics
/// If a label is outside `0..num_classes` ([`parse_list`] never yields one).
pub fn class_map_by_count(labels: &[i64], num_classes: usize) -> Vec<i64> {
    let mut counts = vec![0usize; num_classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let mut sorted: Vec<usize> = (0..num_classes).collect();
    // Stable: equal counts keep ascending class ids.
    sorted.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
    let mut map = vec![0i64; num_classes];
    for (new, &old) in sorted.iter().enumerate() {
        map[old] = new as i64;
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetName;

    #[test]
    fn parses_paths_and_labels() {
        let e = parse_list("a/x.jpg 2\n\n  b/y.JPEG\t0  \r\n", "l.txt", 3).unwrap();
        assert_eq!(e.paths, ["a/x.jpg", "b/y.JPEG"]);
        assert_eq!(e.labels, [2, 0]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = parse_list("a.jpg 1\nb.jpg\n", "l.txt", 3).unwrap_err();
        assert!(err.to_string().starts_with("l.txt:2:"), "{err}");
        let err = parse_list("a.jpg one\n", "l.txt", 3).unwrap_err();
        assert!(err.to_string().contains("'one' is not an integer"), "{err}");
        let err = parse_list("a.jpg 3\n", "l.txt", 3).unwrap_err();
        assert!(
            err.to_string().contains("label 3 is outside 0 to 2"),
            "{err}"
        );
        let err = parse_list("a.jpg -1\n", "l.txt", 3).unwrap_err();
        assert!(err.to_string().contains("label -1"), "{err}");
    }

    #[test]
    fn class_map_orders_by_descending_count_ties_by_id() {
        // Counts per old class: 0 → 1, 1 → 3, 2 → 0, 3 → 3, 4 → 2.
        // Descending, ties by id: 1 (3), 3 (3), 4 (2), 0 (1), 2 (0).
        let labels = [1, 3, 0, 4, 1, 3, 4, 1, 3];
        let map = class_map_by_count(&labels, 5);
        assert_eq!(map, [3, 0, 4, 1, 2]);
    }

    #[test]
    fn reference_names_and_overrides() {
        let mut cfg = Config {
            dataset: DatasetName::Ina2018,
            data_path: "/d".into(),
            ..Config::default()
        };
        let (tr, te) = list_paths(&cfg).unwrap();
        assert_eq!(tr, Path::new("/d/iNaturalist18_train.txt"));
        assert_eq!(te, Path::new("/d/iNaturalist18_val.txt"));
        cfg.train_list = Some("lists/a.txt".into());
        cfg.test_list = Some("/abs/b.txt".into());
        let (tr, te) = list_paths(&cfg).unwrap();
        assert_eq!(tr, Path::new("/d/lists/a.txt"));
        assert_eq!(te, Path::new("/abs/b.txt"));
        cfg.dataset = DatasetName::Cifar10;
        cfg.train_list = None;
        assert!(list_paths(&cfg).is_err());
    }
}
