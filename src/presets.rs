//! Preset discovery for the terminal UI's presets screen and `mislas presets`.
//!
//! A preset is a YAML configuration. The release presets are `presets/<dataset>/*.yaml`: those
//! of the project folder when it has them (a clone), else the copy of the ones embedded in the
//! binary ([`release::RELEASE`]) that [`PresetPlaces::find`] installs in the per-user data
//! folder (`~/.local/share/mislas/presets/` on Linux), so that an installed `mislas` has them
//! in any folder. The user's own are under the user config dir (`~/.config/mislas/presets/` on
//! Linux), where the UI saves an edited configuration as a new preset. Each preset comes with
//! its loaded [`Config`] (or the error that stopped loading it) and whether its data set is
//! found at its `data_path` (relative paths resolve against the project folder).
use crate::config::{Config, DatasetName, Marker};
use anyhow::{bail, Context};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod release;

/// Where a preset comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetOrigin {
    /// Shipped with the project under `presets/<dataset>/`.
    Project,
    /// Saved by the user under the user config dir.
    User,
}

/// Whether a data set's files are where a configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStatus {
    /// Found: the file or folder that was found.
    Found(PathBuf),
    /// Not found: the path that was looked at (`data_path`, resolved).
    Missing(PathBuf),
}

impl DataStatus {
    /// Whether the data set was found.
    pub fn is_found(&self) -> bool {
        matches!(self, DataStatus::Found(_))
    }
}

/// One preset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// The YAML file.
    pub path: PathBuf,
    /// Project or user preset.
    pub origin: PresetOrigin,
    /// Its data set: the configuration's, else the one its folder names (`presets/cifar10/`).
    pub dataset: Option<DatasetName>,
    /// The loaded configuration, or why it could not be loaded.
    pub config: Result<Config, String>,
    /// Whether its data set is found; `None` when the configuration did not load.
    pub data: Option<DataStatus>,
}

impl Preset {
    /// The preset's name: its file name without `.yaml`.
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The user's preset folder: `<config dir of directories' ProjectDirs("", "", "mislas")>/presets`.
pub fn user_presets_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "mislas").map(|d| d.config_dir().join("presets"))
}

/// Where the presets are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetPlaces {
    /// The project folder: relative `data_path`s resolve against it.
    pub project_root: PathBuf,
    /// The folder of the release presets (`<dataset>/*.yaml` in it).
    pub release: PathBuf,
    /// Whether `release` is the installed copy of the embedded presets (no `presets/` in the
    /// project folder).
    pub installed: bool,
    /// The user's preset folder, when the system has a config folder.
    pub user: Option<PathBuf>,
    /// Why the embedded presets could not be installed, if they could not.
    pub problem: Option<String>,
}

impl PresetPlaces {
    /// The places for a `mislas` started in `project_root`: its `presets/` when it is a
    /// folder, else the embedded presets installed under the per-user data folder
    /// ([`install_release`]); the user's folder is [`user_presets_dir`].
    pub fn find(project_root: &Path) -> PresetPlaces {
        let user = user_presets_dir();
        let in_project = project_root.join("presets");
        let mut places = PresetPlaces {
            project_root: project_root.to_path_buf(),
            release: in_project.clone(),
            installed: false,
            user,
            problem: None,
        };
        if in_project.is_dir() {
            return places;
        }
        match crate::config::user_data_dir() {
            Some(data) => match install_release(&data.join("presets")) {
                Ok(dir) => {
                    places.release = dir;
                    places.installed = true;
                }
                Err(e) => places.problem = Some(format!("{e:#}")),
            },
            None => {
                places.problem =
                    Some("no per-user data folder on this system (set MISLAS_DATA_DIR)".into())
            }
        }
        places
    }

    /// The presets of these places ([`discover_in`]).
    pub fn discover(&self) -> Vec<Preset> {
        discover_in(&self.release, &self.project_root, self.user.as_deref())
    }

    /// Where the presets are looked for, in words (one line), with the install problem if any.
    pub fn describe(&self) -> String {
        let release = if self.installed {
            format!("{} (release, built in)", self.release.display())
        } else {
            format!("{} (project)", self.release.display())
        };
        let user = self.user.as_ref().map_or_else(
            || "no user folder on this system".to_owned(),
            |u| format!("{} (yours)", u.display()),
        );
        match &self.problem {
            Some(p) => format!("{release} · {user} · built-in presets not installed: {p}"),
            None => format!("{release} · {user}"),
        }
    }
}

/// Writes the embedded release presets ([`release::RELEASE`]) to `dir/<dataset>/*.yaml`,
/// rewriting a file whose text differs (they belong to the binary: save your own as user
/// presets), and returns `dir`.
///
/// # Errors
/// A folder or file cannot be written; the message names it.
pub fn install_release(dir: &Path) -> anyhow::Result<PathBuf> {
    for (rel, text) in release::RELEASE {
        let path = dir.join(rel);
        if fs::read_to_string(&path).is_ok_and(|t| t == *text) {
            continue;
        }
        let parent = path.parent().unwrap_or(dir);
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        // Written aside, then renamed: a reader never sees half a preset.
        let tmp = path.with_extension(format!("yaml.{}.tmp", std::process::id()));
        fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// The path of release preset `rel` (`fashion_mnist/….yaml`) for a `mislas` started in
/// `project_root`: the project's when it has it, else the installed copy ([`PresetPlaces`]).
pub fn release_preset(project_root: &Path, rel: &str) -> PathBuf {
    let in_project = project_root.join("presets").join(rel);
    if in_project.is_file() {
        return in_project;
    }
    PresetPlaces::find(project_root).release.join(rel)
}

/// Finds the presets: `presets/<dataset>/*.yaml` under `project_root`, then `*.yaml` in
/// `user_dir`, each list sorted by file name. Relative `data_path`s are resolved against
/// `project_root`.
pub fn discover(project_root: &Path, user_dir: Option<&Path>) -> Vec<Preset> {
    discover_in(&project_root.join("presets"), project_root, user_dir)
}

/// Finds the presets: `<dataset>/*.yaml` under `release_dir`, then `*.yaml` in `user_dir`, each
/// list sorted by file name. Relative `data_path`s are resolved against `base`.
pub fn discover_in(release_dir: &Path, base: &Path, user_dir: Option<&Path>) -> Vec<Preset> {
    let mut presets = Vec::new();
    for folder in sorted_entries(release_dir) {
        if !folder.is_dir() {
            continue;
        }
        let folder_dataset = folder
            .file_name()
            .and_then(|n| serde_yaml::from_str::<DatasetName>(&n.to_string_lossy()).ok());
        for file in yaml_files(&folder) {
            presets.push(load(file, PresetOrigin::Project, folder_dataset, base));
        }
    }
    if let Some(dir) = user_dir {
        for file in yaml_files(dir) {
            presets.push(load(file, PresetOrigin::User, None, base));
        }
    }
    presets
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    sorted_entries(dir)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
        })
        .collect()
}

fn load(
    path: PathBuf,
    origin: PresetOrigin,
    folder_dataset: Option<DatasetName>,
    base: &Path,
) -> Preset {
    match Config::from_file(&path) {
        Ok(loaded) => Preset {
            dataset: Some(loaded.config.dataset),
            data: Some(dataset_status(&loaded.config, base)),
            config: Ok(loaded.config),
            path,
            origin,
        },
        Err(e) => Preset {
            dataset: folder_dataset,
            data: None,
            config: Err(e.message),
            path,
            origin,
        },
    }
}

/// Resolves `data_path` against `base` when it is relative.
pub fn resolve_data_path(config: &Config, base: &Path) -> PathBuf {
    let p = Path::new(&config.data_path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p.strip_prefix(".").unwrap_or(p))
    }
}

/// Whether the configuration's data set is at its `data_path` (resolved against `base`):
/// Fashion-MNIST's `train-images-idx3-ubyte[.gz]` in it; CIFAR's `cifar-10-batches-{py,bin}` or
/// `cifar-100-{python,binary}` in it or at it; the large-scale sets' training list file in it.
pub fn dataset_status(config: &Config, base: &Path) -> DataStatus {
    let root = resolve_data_path(config, base);
    let found = match config.dataset.spec().marker {
        Marker::FileIn(names) => names.iter().map(|n| root.join(n)).find(|p| p.is_file()),
        Marker::FolderInOrAt(names) => {
            let at = root
                .file_name()
                .is_some_and(|f| names.iter().any(|n| f == *n))
                && root.is_dir();
            if at {
                Some(root.clone())
            } else {
                names.iter().map(|n| root.join(n)).find(|p| p.is_dir())
            }
        }
    };
    match found {
        Some(p) => DataStatus::Found(p),
        None => DataStatus::Missing(root),
    }
}

/// Saves `config` as the user preset `<dir>/<name>.yaml` (YAML of [`Config::to_yaml`]),
/// creating `dir` if needed, and returns the file.
///
/// # Errors
/// The name is empty or holds characters other than letters, digits, `_`, `-` and `.`; a preset
/// of that name exists already (a preset is never overwritten); the file cannot be written.
pub fn save_user_preset(dir: &Path, name: &str, config: &Config) -> anyhow::Result<PathBuf> {
    let name = name.trim();
    let name = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name);
    if name.is_empty() || name.starts_with('.') {
        bail!("a preset needs a name (letters, digits, _ - .)");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        bail!("'{c}' is not allowed in a preset name (letters, digits, _ - .)");
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.yaml"));
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("a preset named '{name}' exists already; pick another name")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    file.write_all(config.to_yaml().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The preset of the other stage that goes with preset `i` for a "both stages" launch: same data
/// set, imbalance factor and origin, the other stage; among several, the one with the same
/// `classifier` (a stage 2 must build the stage-1 classifier: LDAM's normed one), then the one
/// whose method after `_stage1_`/`_stage2_` in the file name is the same (`…_stage1_wb` with
/// `…_stage2_wb`), then MiSLAS's stage 2 before the other classifier-stage recipes (cRT, LWS),
/// then the one whose file name shares the longest prefix with preset `i`'s, then the first.
pub fn partner(presets: &[Preset], i: usize) -> Option<usize> {
    let me = presets.get(i)?;
    let cfg = me.config.as_ref().ok()?;
    let name = me.name();
    presets
        .iter()
        .enumerate()
        .filter(|(_, p)| p.origin == me.origin)
        .filter_map(|(j, p)| p.config.as_ref().ok().map(|c| (j, p, c)))
        .filter(|(_, _, c)| {
            c.dataset == cfg.dataset && c.imb_factor == cfg.imb_factor && c.stage() != cfg.stage()
        })
        .max_by_key(|(j, p, c)| {
            let common = p
                .name()
                .chars()
                .zip(name.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let mislas = c.recipe == crate::config::ClassifierRecipe::Mislas;
            let same_classifier = c.classifier == cfg.classifier;
            let same_method = method_tag(&p.name()) == method_tag(&name);
            (
                same_classifier,
                same_method,
                mislas,
                common,
                std::cmp::Reverse(*j),
            )
        })
        .map(|(j, _, _)| j)
}

/// The method part of a preset's name, after its last `_stage1_` or `_stage2_` (`wb` of
/// `fashion_mnist_imb001_stage1_wb`); empty when there is none.
fn method_tag(name: &str) -> &str {
    let at = name
        .rfind("_stage1_")
        .into_iter()
        .chain(name.rfind("_stage2_"))
        .max();
    at.map_or("", |i| &name[i + "_stage1_".len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn fmnist(name: &str, mode: &str, data: &str) -> String {
        format!(
            "name: {name}\ndataset: fashion_mnist\ndata_path: '{data}'\nnum_classes: 10\n\
             imb_factor: 0.01\nmode: {mode}\nsmooth_head: 0.3\nsmooth_tail: 0.0\nlr_factor: 0.5\n"
        )
    }

    #[test]
    fn discovers_project_and_user_presets_with_data_status() {
        let root = tempfile::tempdir().unwrap();
        let user = tempfile::tempdir().unwrap();
        let data = root.path().join("data/fmnist");
        write(&data.join("train-images-idx3-ubyte.gz"), "");
        write(
            &root.path().join("presets/fashion_mnist/a_stage1.yaml"),
            &fmnist("a1", "stage1", "./data/fmnist"),
        );
        write(
            &root.path().join("presets/fashion_mnist/a_stage2.yaml"),
            &fmnist("a2", "stage2", "/nonexistent/fm"),
        );
        write(&root.path().join("presets/cifar10/broken.yaml"), "lr: [\n");
        write(
            &user.path().join("mine.yaml"),
            &fmnist("m", "stage1", "./nope"),
        );
        let p = discover(root.path(), Some(user.path()));
        let names: Vec<_> = p.iter().map(Preset::name).collect();
        assert_eq!(names, ["broken", "a_stage1", "a_stage2", "mine"]);
        assert_eq!(p[0].dataset, Some(DatasetName::Cifar10));
        assert!(p[0].config.is_err());
        assert_eq!(p[0].data, None);
        assert_eq!(
            p[1].data,
            Some(DataStatus::Found(data.join("train-images-idx3-ubyte.gz")))
        );
        assert_eq!(
            p[2].data,
            Some(DataStatus::Missing(PathBuf::from("/nonexistent/fm")))
        );
        assert_eq!(p[3].origin, PresetOrigin::User);
        assert_eq!(
            p[3].data,
            Some(DataStatus::Missing(root.path().join("nope")))
        );
        assert_eq!(partner(&p, 1), Some(2));
        assert_eq!(partner(&p, 2), Some(1));
        assert_eq!(
            partner(&p, 3),
            None,
            "a user preset pairs with user presets"
        );
        assert_eq!(partner(&p, 0), None);
    }

    #[test]
    fn the_embedded_list_is_the_presets_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
        let mut on_disk: Vec<String> = sorted_entries(&root)
            .iter()
            .flat_map(|d| yaml_files(d))
            .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = release::RELEASE
            .iter()
            .map(|(r, _)| r.to_string())
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "src/presets/release.rs lists every file of presets/"
        );
        for (rel, text) in release::RELEASE {
            assert_eq!(fs::read_to_string(root.join(rel)).unwrap(), *text);
        }
    }

    #[test]
    fn outside_a_clone_the_release_presets_are_installed_and_found() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("presets");
        install_release(&dir).unwrap();
        // A stale copy of an older version is rewritten; the install is idempotent.
        let first = release::RELEASE[0].0;
        fs::write(dir.join(first), "lr: [\n").unwrap();
        install_release(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(first)).unwrap(),
            release::RELEASE[0].1
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let p = discover_in(&dir, elsewhere.path(), None);
        assert_eq!(p.len(), release::RELEASE.len());
        assert!(
            p.iter().all(|p| p.config.is_ok()),
            "every release preset loads"
        );
        assert!(p
            .iter()
            .any(|p| p.name() == "fashion_mnist_imb001_stage1_mixup"));
    }

    #[test]
    fn cifar_folder_in_or_at_data_path() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("c10/cifar-10-batches-bin")).unwrap();
        let mut c = Config {
            dataset: DatasetName::Cifar10,
            data_path: root.path().join("c10").display().to_string(),
            ..Config::default()
        };
        assert!(dataset_status(&c, root.path()).is_found());
        c.data_path = root
            .path()
            .join("c10/cifar-10-batches-bin")
            .display()
            .to_string();
        assert!(dataset_status(&c, root.path()).is_found());
        c.dataset = DatasetName::Cifar100;
        assert!(!dataset_status(&c, root.path()).is_found());
        c.dataset = DatasetName::Places;
        c.data_path = "plc".into();
        write(&root.path().join("plc/Places_LT_train.txt"), "");
        assert!(dataset_status(&c, root.path()).is_found());
    }

    #[test]
    fn saving_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("presets");
        let c = Config {
            name: "x".into(),
            ..Config::default()
        };
        let p = save_user_preset(&sub, "fast_test", &c).unwrap();
        assert_eq!(p, sub.join("fast_test.yaml"));
        let back = Config::from_file(&p).unwrap().config;
        assert_eq!(back, c);
        let e = save_user_preset(&sub, "fast_test.yaml", &c).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        assert!(save_user_preset(&sub, "a/b", &c).is_err());
        assert!(save_user_preset(&sub, "  ", &c).is_err());
    }
}
