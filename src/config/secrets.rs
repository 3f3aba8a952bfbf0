//! Secrets in the configuration: where one comes from (`file:PATH` or `env:NAME`) and the
//! value once read, which is never printed. Reading happens once, at start-up.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where a secret comes from: `file:PATH` (the file's content without its trailing line
/// break) or `env:NAME` (an environment variable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretSource {
    /// Read from this file.
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
}

impl TryFrom<String> for SecretSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("file", p)) if !p.is_empty() => Ok(Self::File(p.into())),
            Some(("env", n)) if !n.is_empty() => Ok(Self::Env(n.to_owned())),
            _ => Err(format!(
                "{s:?} is not a secret source; write file:PATH or env:NAME"
            )),
        }
    }
}

impl From<SecretSource> for String {
    fn from(s: SecretSource) -> String {
        match s {
            SecretSource::File(p) => format!("file:{}", p.display()),
            SecretSource::Env(n) => format!("env:{n}"),
        }
    }
}

impl SecretSource {
    /// The secret, or why it cannot be read (`key` names the setting in the error).
    pub fn read(&self, key: &str) -> Result<Secret, ConfigError> {
        let value = match self {
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", p.display())))?,
            SecretSource::Env(n) => std::env::var(n)
                .map_err(|_| ConfigError(format!("{key}: environment variable {n} is not set")))?,
        };
        let value = value.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(ConfigError(format!("{key}: the secret is empty")));
        }
        Ok(Secret(value.to_owned()))
    }
}

/// A secret value: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for handing to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\r\n").unwrap();
        let s = SecretSource::try_from(format!("file:{}", f.display())).unwrap();
        assert_eq!(s.read("k").unwrap().expose(), "hunter2");
        assert_eq!(format!("{:?}", s.read("k").unwrap()), "Secret(..)");
        let home = std::env::var("PATH").unwrap();
        let s = SecretSource::try_from("env:PATH".to_owned()).unwrap();
        assert_eq!(s.read("k").unwrap().expose(), home.trim_end());
        let unset = SecretSource::Env("MPR_TEST_NEVER_SET_7f3a".into());
        assert!(
            unset
                .read("kafka.client_secrets.x")
                .unwrap_err()
                .to_string()
                .contains("kafka.client_secrets.x")
        );
        std::fs::write(&f, "\n").unwrap();
        let s = SecretSource::File(f);
        assert!(s.read("k").unwrap_err().to_string().contains("empty"));
        assert!(SecretSource::try_from("plain".to_owned()).is_err());
        assert_eq!(String::from(SecretSource::Env("N".into())), "env:N");
    }
}
