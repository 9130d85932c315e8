//! Configuration errors: every refusal names the JSON path it is about and what to do.

use std::fmt;

/// A configuration the filter refuses, with the JSON path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path in the dotted form users write, e.g. `rules[0].match.prefix`; empty for the root.
    pub path: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same refusal with how to fix it appended: `expected 1 to 10 requests; <fix>`.
    pub fn with_fix(mut self, fix: &str) -> Self {
        self.message = format!("{}; {fix}", self.message);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(root): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Builds JSON paths while walking a raw config during compilation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath(String::new())
    }

    /// The path of an object member.
    pub fn key(&self, key: &str) -> Self {
        if self.0.is_empty() {
            JsonPath(key.to_string())
        } else {
            JsonPath(format!("{}.{}", self.0, key))
        }
    }

    /// The path of an array element.
    pub fn index(&self, index: usize) -> Self {
        JsonPath(format!("{}[{}]", self.0, index))
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.0.clone(), message)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Rewrites a serde error message so that it never repeats the offending value (a config may
/// hold secrets such as HMAC keys) and reads as an instruction: `expected a string`.
pub(crate) fn describe_serde_error(message: &str) -> String {
    // serde_json appends " at line L column C"; the path already locates the problem.
    let message = match message.rfind(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message),
        None => message,
    };
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let found_kind = found.split_whitespace().next().unwrap_or("value");
            return format!("expected {expected}, found {found_kind}");
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compose_like_users_write_them() {
        let p = JsonPath::root()
            .key("rules")
            .index(0)
            .key("match")
            .key("prefix");
        assert_eq!(p.as_str(), "rules[0].match.prefix");
        assert_eq!(
            p.error("expected a string").to_string(),
            "rules[0].match.prefix: expected a string"
        );
        assert_eq!(JsonPath::root().error("x").to_string(), "(root): x");
    }

    #[test]
    fn serde_messages_never_echo_values() {
        let table = [
            (
                "invalid type: integer `5`, expected a string at line 1 column 30",
                "expected a string, found integer",
            ),
            (
                "invalid type: string \"s3cret\", expected u64",
                "expected u64, found string",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "expected u32, found integer",
            ),
            ("missing field `match`", "missing field `match`"),
        ];
        for (input, want) in table {
            assert_eq!(describe_serde_error(input), want, "{input}");
        }
    }
}
