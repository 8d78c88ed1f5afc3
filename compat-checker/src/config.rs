//! Configuration from `[workspace.metadata.compat-check]`:
//!
//! ```toml
//! [workspace.metadata.compat-check]
//! baseline-dir = "compat"          # default
//!
//! [workspace.metadata.compat-check.rules]
//! priority-changed = "deny"        # allow | warn | deny
//! ```

use std::collections::BTreeMap;

use crate::error::Error;
use crate::rules::{self, Level, Rule};

/// Rule levels and the baseline directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    levels: BTreeMap<&'static str, Level>,
    /// Baseline directory relative to the workspace root (default `compat`).
    pub baseline_dir: Option<String>,
}

impl Config {
    /// The effective level of `rule`.
    #[must_use]
    pub fn level(&self, rule: &Rule) -> Level {
        self.levels.get(rule.id).copied().unwrap_or(rule.level)
    }

    /// Overrides the level of rule `id`.
    ///
    /// # Errors
    /// [`Error::BadInput`] for an unknown rule id.
    pub fn set_level(&mut self, id: &str, level: Level) -> Result<(), Error> {
        let rule = rules::find(id).ok_or_else(|| {
            Error::BadInput(format!(
                "[workspace.metadata.compat-check.rules]: unknown rule `{id}` (valid: {})",
                rules::ids().join(", ")
            ))
        })?;
        self.levels.insert(rule.id, level);
        Ok(())
    }

    /// Reads `[workspace.metadata]` (the whole table; only `compat-check` is looked at).
    ///
    /// # Errors
    /// [`Error::BadInput`] for unknown keys, rule ids or levels.
    pub fn from_workspace_metadata(meta: &serde_json::Value) -> Result<Self, Error> {
        let mut cfg = Config::default();
        let Some(table) = meta.get("compat-check") else {
            return Ok(cfg);
        };
        let bad = |m: String| Error::BadInput(format!("[workspace.metadata.compat-check]: {m}"));
        let table = table
            .as_object()
            .ok_or_else(|| bad("expected a table".into()))?;
        for (k, v) in table {
            match k.as_str() {
                "baseline-dir" => {
                    cfg.baseline_dir = Some(
                        v.as_str()
                            .ok_or_else(|| bad("`baseline-dir` must be a string".into()))?
                            .to_owned(),
                    );
                }
                "rules" => {
                    let rules = v
                        .as_object()
                        .ok_or_else(|| bad("`rules` must be a table".into()))?;
                    for (id, level) in rules {
                        let level = level.as_str().and_then(Level::parse).ok_or_else(|| {
                            bad(format!(
                                "rule `{id}`: level must be \"allow\", \"warn\" or \"deny\""
                            ))
                        })?;
                        cfg.set_level(id, level)?;
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}` (expected `baseline-dir`, `rules`)"
                    )))
                }
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_levels() {
        let meta = serde_json::json!({"compat-check": {"rules": {"priority-changed": "deny"}, "baseline-dir": "b"}});
        let c = Config::from_workspace_metadata(&meta).unwrap();
        assert_eq!(c.level(&rules::priority_changed::RULE), Level::Deny);
        assert_eq!(c.baseline_dir.as_deref(), Some("b"));
        let bad = serde_json::json!({"compat-check": {"rules": {"nope": "deny"}}});
        assert!(Config::from_workspace_metadata(&bad).is_err());
        let bad = serde_json::json!({"compat-check": {"rules": {"priority-changed": "loud"}}});
        assert!(Config::from_workspace_metadata(&bad).is_err());
        assert_eq!(
            Config::from_workspace_metadata(&serde_json::json!({})).unwrap(),
            Config::default()
        );
    }
}
