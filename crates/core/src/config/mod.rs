//! Configuration files: TOML parsed with serde into raw structs (`deny_unknown_fields`), then
//! checked into ready-to-use values. Every error names the file, the key path and the line and
//! column, and says what was expected.

pub(crate) mod checks;
pub mod site;
pub mod train;
pub mod url;

use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use site::SiteConfig;
pub use train::TrainConfig;

/// A configuration error located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// Dotted key path, e.g. `cameras[1].visible.path`; empty for the document itself.
    pub key: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() { "(document)" } else { &self.key };
        write!(
            f,
            "{}:{}:{}: key `{}`: {}",
            self.file.display(),
            self.line,
            self.column,
            key,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Turns byte offsets of one source text into line/column positions and errors.
pub(crate) struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text }
    }

    /// The directory relative paths in this file are resolved against.
    pub(crate) fn base_dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// An error at a byte span of this file.
    pub(crate) fn error(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Resolves a path from this file: absolute paths stay, relative ones join the file's directory.
    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir().join(p)
        }
    }
}

/// 1-based line and column of a byte offset (clamped to the text).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Reads a configuration file and deserializes it into `T`, with located errors.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: String::new(),
        line: 0,
        column: 0,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(path, &bytes).map(|value| {
        // `parse` has already checked the bytes are UTF-8.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (value, text)
    })
}

/// Deserializes TOML bytes into `T`; `path` only names the file in errors.
pub(crate) fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, ConfigError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Err(invalid_utf8(path, bytes, e.valid_up_to())),
    };
    let source = Source::new(path, text);
    if text.trim().is_empty() {
        return Err(source.error(
            "",
            0..0,
            "the file is empty; see config/site.toml for a complete example",
        ));
    }
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| toml_error(&source, "", &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `Spanned` values show up as an internal path segment; drop it.
        let key = e.path().to_string().replace(".$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        toml_error(&source, &key, e.inner())
    })
}

fn toml_error(source: &Source<'_>, key: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim_end().to_owned();
    source.error(key, e.span().unwrap_or(0..0), message)
}

/// Error for a file that is not UTF-8, naming the key on the line where decoding failed.
fn invalid_utf8(path: &Path, bytes: &[u8], valid_up_to: usize) -> ConfigError {
    let valid = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let (line, column) = line_column(&valid, valid.len());
    let line_text = valid.rsplit('\n').next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .unwrap_or_default();
    ConfigError {
        file: path.to_path_buf(),
        key,
        line,
        column,
        message: format!("invalid UTF-8 at byte {valid_up_to}; configuration files must be UTF-8"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 1000), (3, 1));
    }
}
