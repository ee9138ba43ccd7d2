//! Reading and writing configurations: yacs YAML over the table's defaults, `KEY VALUE`
//! overrides, and the errors in words that name the file, the key and what was expected.
use super::keys::{default_mapping, key_spec};
use super::{Config, ConfigError, LoadedConfig, IGNORED_KEYS};
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};
use std::path::Path;

fn f64_from_value<E: serde::de::Error>(v: Value) -> Result<Option<f64>, E> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| E::custom("expected a number")),
        // PyYAML (YAML 1.1) reads `2e-4` as a string and yacs users write it anyway.
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| E::custom(format!("expected a number, found '{s}'"))),
        other => Err(E::custom(format!(
            "expected a number, found {}",
            describe(&other)
        ))),
    }
}

pub(super) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    f64_from_value(Value::deserialize(d)?)
}

pub(super) fn f64_any<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    f64_from_value(Value::deserialize(d)?)?
        .ok_or_else(|| serde::de::Error::custom("expected a number, found null"))
}

pub(super) fn string_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string '{s}'"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

impl Config {
    /// Every key of the configuration, in declaration order.
    pub fn keys() -> Vec<String> {
        match serde_yaml::to_value(Config::default()) {
            Ok(Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Reads a yacs YAML file over the defaults.
    ///
    /// # Errors
    /// The file is unreadable or not YAML, a key is unknown, or a value has the wrong type; the
    /// message names the file and the key.
    pub fn from_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            message: format!(
                "cannot read the configuration file ({e}): expected a readable yacs YAML file"
            ),
        })?;
        let mut loaded = Self::from_yaml_str(&text, &name)?;
        loaded.path = Some(path.to_path_buf());
        Ok(loaded)
    }

    /// Parses YAML text over the defaults; `source_name` names it in errors.
    ///
    /// # Errors
    /// As [`Config::from_file`]; also an empty text (or one of comments only), which would
    /// otherwise load as the defaults and fail validation on `name`.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<LoadedConfig, ConfigError> {
        let err = |message: String| ConfigError {
            source_name: source_name.to_owned(),
            message,
        };
        let doc: Value = serde_yaml::from_str(text).map_err(|e| {
            err(format!(
                "not YAML ({e}): expected a yacs configuration of KEY: VALUE lines"
            ))
        })?;
        let file_map =
            match doc {
                Value::Mapping(m) => m,
                Value::Null => return Err(err(
                    "the file is empty: expected a yacs YAML configuration of KEY: VALUE lines \
                     (name: my_run, dataset: cifar10, …)"
                        .into(),
                )),
                other => {
                    return Err(err(format!(
                        "expected a mapping of KEY: VALUE lines, got {}",
                        describe(&other)
                    )))
                }
            };
        let (merged, ignored) = merge_over_defaults(file_map).map_err(err)?;
        let config = from_mapping(merged).map_err(err)?;
        Ok(LoadedConfig {
            config,
            ignored,
            path: None,
        })
    }

    /// Applies yacs-style `KEY VALUE` overrides (`resume saved/…/model_best.pth.tar`).
    ///
    /// # Errors
    /// An odd number of items, an unknown key or a value of the wrong type.
    pub fn apply_overrides(&mut self, pairs: &[String]) -> Result<(), ConfigError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(ConfigError {
                source_name: "command line".into(),
                message: format!(
                    "overrides come as KEY VALUE pairs; '{}' has no value",
                    pairs[pairs.len() - 1]
                ),
            });
        }
        for kv in pairs.chunks(2) {
            self.set(&kv[0], &kv[1]).map_err(|message| ConfigError {
                source_name: "command line".into(),
                message,
            })?;
        }
        Ok(())
    }

    /// Sets one key from its text, read as a YAML scalar (`0.1`, `true`, `null`, `[0, 3]`,
    /// `2e-4`, or a plain string).
    ///
    /// # Errors
    /// A message naming the key and the expected type.
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
        if IGNORED_KEYS.contains(&key) {
            return Ok(());
        }
        let mut map = match serde_yaml::to_value(&*self) {
            Ok(Value::Mapping(m)) => m,
            _ => return Err("internal: config is not a mapping".into()),
        };
        let k = Value::String(key.to_owned());
        if !map.contains_key(&k) {
            return Err(unknown_key(key));
        }
        let value = if text.trim().is_empty() {
            Value::String(String::new())
        } else {
            serde_yaml::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        };
        map.insert(k, value);
        *self = from_mapping(map)?;
        Ok(())
    }

    /// The value of one key as YAML text (`0.1`, `[0, 3]`, `null`), for display and editing.
    pub fn get(&self, key: &str) -> Option<String> {
        let map = match serde_yaml::to_value(self) {
            Ok(Value::Mapping(m)) => m,
            _ => return None,
        };
        map.get(Value::String(key.to_owned())).map(value_to_text)
    }

    /// The keys whose values differ from `other`'s, as `(key, other's value, this value)` in
    /// declaration order.
    pub fn changed_from(&self, other: &Config) -> Vec<(String, String, String)> {
        Self::keys()
            .into_iter()
            .filter_map(|k| {
                let (was, now) = (other.get(&k)?, self.get(&k)?);
                (was != now).then_some((k, was, now))
            })
            .collect()
    }

    /// The configuration as YAML, loadable by [`Config::from_file`].
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The configuration as YAML with each key's help from [`KEYS`](super::KEYS) as a comment
    /// (and "stage 1 only" / "stage 2 only" where one stage uses it), in declaration order;
    /// loadable by [`Config::from_file`]. `mislas config` prints it.
    pub fn to_commented_yaml(&self) -> String {
        let Ok(Value::Mapping(map)) = serde_yaml::to_value(self) else {
            return self.to_yaml();
        };
        let stage = match self.stage() {
            super::Stage::Stage1 => "stage 1",
            super::Stage::Stage2 => "stage 2",
        };
        let mut out = format!(
            "# {} ({stage} of MiSLAS): every key, its value and its meaning\n",
            if self.name.is_empty() {
                "(no name)"
            } else {
                &self.name
            },
        );
        for (k, v) in &map {
            let Some(name) = k.as_str() else { continue };
            let line = format!("{name}: {}", flow_yaml(v));
            match key_spec(name) {
                Some(spec) => {
                    let note = spec
                        .stages
                        .note()
                        .map(|n| format!("({n}) "))
                        .unwrap_or_default();
                    out.push_str(&format!("{line:<44} # {note}{}\n", spec.help));
                }
                None => out.push_str(&format!("{line}\n")),
            }
        }
        out
    }
}

/// The table's defaults overlaid by a file's keys, and the ignored keys of the file.
fn merge_over_defaults(file_map: Mapping) -> Result<(Mapping, Vec<String>), String> {
    let mut merged = default_mapping();
    let mut ignored = Vec::new();
    for (k, v) in file_map {
        let key = k
            .as_str()
            .ok_or_else(|| format!("expected text keys (KEY: VALUE), got {}", describe(&k)))?
            .to_owned();
        if IGNORED_KEYS.contains(&key.as_str()) {
            ignored.push(key);
            continue;
        }
        if key_spec(&key).is_none() {
            return Err(unknown_key(&key));
        }
        merged.insert(Value::String(key), v);
    }
    Ok((merged, ignored))
}

fn unknown_key(key: &str) -> String {
    format!(
        "unknown key '{key}': expected one of {}",
        Config::keys().join(", ")
    )
}

/// Reads a complete mapping into a [`Config`]; a value of the wrong type is reported in words,
/// with its key: `batch_size: expected a whole number ≥ 1, got 'abc'`.
fn from_mapping(map: Mapping) -> Result<Config, String> {
    // Deserialise key by key first, so that a type error names its key.
    let defaults = default_mapping();
    for (k, v) in &map {
        let mut probe = defaults.clone();
        probe.insert(k.clone(), v.clone());
        if serde_yaml::from_value::<Config>(Value::Mapping(probe)).is_err() {
            let key = k.as_str().unwrap_or("?");
            let expected = key_spec(key).map_or_else(|| "a value".into(), |s| s.kind.expected());
            return Err(format!("{key}: expected {expected}, got {}", shown(v)));
        }
    }
    serde_yaml::from_value(Value::Mapping(map)).map_err(|e| e.to_string())
}

/// A value as a user typed it: `'abc'` for text, `-3`, `null`, `[1, 2]`.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Sequence(items) => {
            let inner: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Mapping(_) | Value::Tagged(_) => describe(v),
        other => value_to_text(other),
    }
}

/// A value as one line of YAML: flow sequences, quoted text where YAML needs it.
fn flow_yaml(v: &Value) -> String {
    match v {
        Value::Sequence(items) => {
            let inner: Vec<String> = items.iter().map(flow_yaml).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::String(s) if s.contains(['\n', '\r']) => {
            serde_json::to_string(s).unwrap_or_default()
        }
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    }
}

fn value_to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Sequence(items) => {
            let inner: Vec<String> = items.iter().map(value_to_text).collect();
            format!("[{}]", inner.join(", "))
        }
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}
