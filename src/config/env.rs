//! The environment as the configuration reads it: typed accessors that name
//! the variable in every error, and a record of every name asked for (so a
//! test can hold the documentation to what the server reads).

use super::ConfigError;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// The variables, with typed accessors that name the variable in every error.
pub struct Env {
    vars: HashMap<String, String>,
    /// Every name looked up, so a test can hold the documentation to it.
    pub asked: RefCell<BTreeSet<&'static str>>,
}

impl Env {
    pub fn new(vars: HashMap<String, String>) -> Env {
        Env {
            vars,
            asked: RefCell::default(),
        }
    }

    pub fn text(&self, name: &'static str) -> Option<&str> {
        self.asked.borrow_mut().insert(name);
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn number<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.text(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: raw.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.text(name).map(str::to_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name,
                value: other.to_owned(),
                reason: "expected 1/0, true/false, yes/no or on/off".into(),
            }),
        }
    }

    pub fn list(&self, name: &'static str, default: &[&str]) -> Vec<String> {
        match self.text(name) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(raw) => raw
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}
