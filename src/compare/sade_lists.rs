//! SADE's list files of shifted test sets (Zhang et al., "Self-Supervised Aggregation of
//! Diverse Experts for Test-Agnostic Long-Tailed Recognition", NeurIPS 2022; repository
//! `Vanint/SADE-AgnosticLT`, folder `data_txt/`): for ImageNet-LT and Places-LT
//! `ImageNet_LT_forward50.txt` … `ImageNet_LT_uniform.txt` … `ImageNet_LT_backward50.txt`
//! (`Places_LT_…`; ρ ∈ {50, 25, 10, 5, 2}), for iNaturalist 2018 `iNaturalist18_forward2.txt`,
//! `…_forward3.txt`, `…_uniform.txt`, `…_backward2.txt`, `…_backward3.txt`. Each names test
//! images in the list-file format (`relative/path.jpg label`, labels as in the reference's
//! lists, before mislas re-indexes classes by training count).
//!
//! When such a file is under `data_path` (or under SADE's folder for it there:
//! `ImageNet_LT/`, `Places_LT_v2/`, `iNaturalist18/`), `compare` scores the images it names
//! instead of drawing the set ([`super::shift::subsample`]). Every image must be one of the
//! test list's, with the same label; where the scored split is a half of the test list
//! (iNaturalist 2018 under the held-out protocol), the images of the validation half, which
//! the methods were fitted on, are left out and counted.
use super::shift::{ShiftedSet, TestPrior};
use super::split::indices_digest;
use crate::config::DatasetName;
use crate::data::list_file::ListEntries;
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file name of SADE's list of `prior` for `dataset` (`ImageNet_LT_forward50.txt`), and
/// SADE's folder for the data set; `None` for a data set without SADE lists.
pub fn file_name(dataset: DatasetName, prior: TestPrior) -> Option<(String, &'static str)> {
    let (prefix, folder) = match dataset.reference_lists()?.1 {
        "ImageNet_LT_test.txt" => ("ImageNet_LT", "ImageNet_LT"),
        "Places_LT_test.txt" => ("Places_LT", "Places_LT_v2"),
        "iNaturalist18_val.txt" => ("iNaturalist18", "iNaturalist18"),
        _ => return None,
    };
    Some((format!("{prefix}_{}.txt", prior.name()), folder))
}

/// SADE's list file of `prior` under `data_path` (directly, or in SADE's folder there), if
/// there is one.
pub fn find(data_path: &Path, dataset: DatasetName, prior: TestPrior) -> Option<PathBuf> {
    let (file, folder) = file_name(dataset, prior)?;
    [data_path.join(&file), data_path.join(folder).join(&file)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The test list's images and where each lies in the scored split.
#[derive(Debug)]
pub struct TestImages<'a> {
    /// The test list as parsed (labels as written), `[N]` in the order of the cached outputs.
    pub test: &'a ListEntries,
    /// The test list's file, for messages.
    pub test_file: &'a Path,
    /// The test-list index of each scored image, in the scored split's order.
    pub scored: &'a [usize],
    /// The scored split's labels (mislas's class indices), `[n]`.
    pub scored_labels: &'a [i64],
    /// K.
    pub num_classes: usize,
}

/// The shifted set that SADE's list `file` names, as positions into the scored split, and the
/// number of its images left out because they are in the validation split.
///
/// # Errors
/// The file cannot be read; a line that is not `path label`; a label outside the model's
/// classes; an image that is not in the test list, or whose label differs from the test
/// list's. Each message names the file and line.
pub fn read_set(file: &Path, prior: TestPrior, images: &TestImages) -> Result<(ShiftedSet, usize)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read SADE's list file {}", file.display()))?;
    let name = file.display().to_string();
    let k = images.num_classes;
    let entries = crate::data::list_file::parse_list(&text, &name, k)
        .context("SADE's list files name test images and classes of the model")?;
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i + 1)
        .collect();
    let by_path: HashMap<&str, usize> = images
        .test
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let mut position = vec![None; images.test.paths.len()];
    for (pos, &t) in images.scored.iter().enumerate() {
        position[t] = Some(pos);
    }
    let mut indices = Vec::with_capacity(entries.paths.len());
    let mut left_out = 0;
    for ((path, &label), line) in entries.paths.iter().zip(&entries.labels).zip(lines) {
        let Some(&t) = by_path.get(path.as_str()) else {
            bail!(
                "{name}:{line}: the image '{path}' is not in the test list {}",
                images.test_file.display()
            );
        };
        let want = images.test.labels[t];
        ensure!(
            want == label,
            "{name}:{line}: '{path}' has label {label} here but {want} in the test list {}",
            images.test_file.display()
        );
        match position[t] {
            Some(p) => indices.push(p),
            None => left_out += 1,
        }
    }
    ensure!(!entries.paths.is_empty(), "{name}: the list names no image");
    indices.sort_unstable();
    let mut class_counts = vec![0usize; k];
    for &p in &indices {
        class_counts[images.scored_labels[p] as usize] += 1;
    }
    Ok((
        ShiftedSet {
            name: prior.name(),
            prior,
            class_counts,
            sha256: indices_digest(&indices),
            indices,
            source: Some(name),
        },
        left_out,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::list_file::parse_list;

    /// A test list of 12 images, 3 classes (as written: 0, 1, 2), four each.
    fn test_list() -> ListEntries {
        let text: String = (0..12)
            .map(|i| format!("test/{}/img{i}.jpg {}\n", i % 3, i % 3))
            .collect();
        parse_list(&text, "ImageNet_LT_test.txt", 3).unwrap()
    }

    #[test]
    fn file_names_follow_sades_repository() {
        let f = |d, p| file_name(d, p).unwrap();
        assert_eq!(
            f(DatasetName::Imagenet, TestPrior::Forward(50)),
            ("ImageNet_LT_forward50.txt".into(), "ImageNet_LT")
        );
        assert_eq!(
            f(DatasetName::Places, TestPrior::Uniform),
            ("Places_LT_uniform.txt".into(), "Places_LT_v2")
        );
        assert_eq!(
            f(DatasetName::Ina2018, TestPrior::Backward(3)),
            ("iNaturalist18_backward3.txt".into(), "iNaturalist18")
        );
        assert!(file_name(DatasetName::Cifar10, TestPrior::Uniform).is_none());
    }

    /// Written list files: found directly under `data_path` or in SADE's folder; their images
    /// become positions into the scored split (here the second half), images of the validation
    /// half are counted and left out; an unknown image, a wrong label or a class the model does
    /// not have is an error naming the file and line.
    #[test]
    fn list_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("ImageNet_LT")).unwrap();
        let write = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::write(&p, text).unwrap();
            p
        };
        let f50 = write(
            "ImageNet_LT_forward50.txt",
            "test/0/img0.jpg 0\ntest/0/img9.jpg 0\n\ntest/1/img7.jpg 1\ntest/2/img11.jpg 2\n",
        );
        write("ImageNet_LT/ImageNet_LT_uniform.txt", "test/0/img6.jpg 0\n");
        let found = |p| find(root, DatasetName::Imagenet, p);
        assert_eq!(found(TestPrior::Forward(50)), Some(f50.clone()));
        assert_eq!(
            found(TestPrior::Uniform),
            Some(root.join("ImageNet_LT/ImageNet_LT_uniform.txt"))
        );
        assert_eq!(found(TestPrior::Backward(50)), None);

        let test = test_list();
        let scored: Vec<usize> = (6..12).collect();
        // mislas's classes reverse the written ids here (re-indexed by training count).
        let labels: Vec<i64> = scored.iter().map(|&i| 2 - (i % 3) as i64).collect();
        let images = TestImages {
            test: &test,
            test_file: Path::new("ImageNet_LT_test.txt"),
            scored: &scored,
            scored_labels: &labels,
            num_classes: 3,
        };
        let (set, left_out) = read_set(&f50, TestPrior::Forward(50), &images).unwrap();
        // img0 is in the validation half; img9, img7, img11 are scored positions 3, 1, 5.
        assert_eq!(left_out, 1);
        assert_eq!(set.indices, vec![1, 3, 5]);
        assert_eq!(set.class_counts, vec![1, 1, 1]);
        assert_eq!(set.sha256, indices_digest(&[1, 3, 5]));
        assert_eq!(set.source.as_deref(), Some(f50.to_str().unwrap()));

        let bad = |text: &str| {
            let p = write("bad.txt", text);
            format!(
                "{:#}",
                read_set(&p, TestPrior::Uniform, &images).unwrap_err()
            )
        };
        let e = bad("test/0/img6.jpg 0\ntest/9/other.jpg 0\n");
        assert!(
            e.contains("bad.txt:2: the image 'test/9/other.jpg' is not in the test list"),
            "{e}"
        );
        let e = bad("\ntest/0/img6.jpg 2\n");
        assert!(
            e.contains("bad.txt:2: 'test/0/img6.jpg' has label 2 here but 0 in the test list"),
            "{e}"
        );
        let e = bad("test/0/img6.jpg 0\ntest/0/img3.jpg 7\n");
        assert!(
            e.contains("bad.txt:2: label 7 is outside 0 to 2 (num_classes is 3)"),
            "{e}"
        );
    }
}
