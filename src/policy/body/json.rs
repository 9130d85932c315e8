//! A JSON (RFC 8259) structure check without recursion: syntax, UTF-8, duplicate member
//! names and nesting depth. Its memory is bounded by the body size and its stack use is
//! constant, so a body nested 100,000 deep is refused as too deep without touching the wasm
//! stack. serde_json (recursive, limit 128, last duplicate wins silently) only parses bodies
//! that passed this check.

use serde_json::{Map, Number, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not UTF-8 (RFC 8259 section 8.1).
    Utf8,
    /// Not JSON text (or a number out of the range of a double).
    Syntax,
    /// An object names the same member twice.
    DuplicateKey,
    /// Objects and arrays nested deeper than allowed.
    TooDeep,
}

impl JsonError {
    /// A fixed, safe description (never the input).
    pub fn detail(self) -> &'static str {
        match self {
            JsonError::Utf8 => "the body is not valid UTF-8",
            JsonError::Syntax => "the body is not valid JSON",
            JsonError::DuplicateKey => "the body has an object with a duplicate member name",
            JsonError::TooDeep => "the body nests objects and arrays too deeply",
        }
    }
}

/// An open array or object. When only checking, arrays keep nothing and objects keep their
/// member names (with `null` values) to find duplicates.
enum Frame {
    Array(Vec<Value>),
    Object {
        members: Map<String, Value>,
        /// The name whose value is being read.
        name: String,
    },
}

/// Checks `bytes` as one JSON text whose objects and arrays nest at most `max_depth` deep
/// (`[]` is depth 1). Every member name and string value is passed, decoded, to `on_string`.
pub fn check(
    bytes: &[u8],
    max_depth: usize,
    on_string: &mut dyn FnMut(&str),
) -> Result<(), JsonError> {
    Parser::new(bytes, false)?
        .run(max_depth, on_string)
        .map(drop)
}

/// As [`check`], and returns the document: one pass does both, so a body validated against
/// a schema is not parsed twice. Nesting is bounded by `max_depth`, never by the stack.
pub fn parse(
    bytes: &[u8],
    max_depth: usize,
    on_string: &mut dyn FnMut(&str),
) -> Result<Value, JsonError> {
    Parser::new(bytes, true)?.run(max_depth, on_string)
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    /// The string being decoded (reused).
    buffer: String,
    /// Whether to build the document (else only check it).
    build: bool,
}

enum State {
    Value,
    /// After `{` or `,` in an object: a member name must follow (`}` allowed after `{`).
    Key {
        first: bool,
    },
    After,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8], build: bool) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Utf8)?;
        Ok(Parser {
            bytes: text.as_bytes(),
            text,
            pos: 0,
            buffer: String::new(),
            build,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn run(
        mut self,
        max_depth: usize,
        on_string: &mut dyn FnMut(&str),
    ) -> Result<Value, JsonError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut document: Option<Value> = None;
        let mut state = State::Value;
        loop {
            self.skip_ws();
            state = match state {
                State::Value => {
                    let value = match self.peek() {
                        Some(b'{') | Some(b'[') if stack.len() >= max_depth => {
                            return Err(JsonError::TooDeep);
                        }
                        Some(b'{') => {
                            self.pos += 1;
                            stack.push(Frame::Object {
                                members: Map::new(),
                                name: String::new(),
                            });
                            state = State::Key { first: true };
                            continue;
                        }
                        Some(b'[') => {
                            self.pos += 1;
                            self.skip_ws();
                            if self.peek() != Some(b']') {
                                stack.push(Frame::Array(Vec::new()));
                                state = State::Value;
                                continue;
                            }
                            self.pos += 1;
                            Value::Array(Vec::new())
                        }
                        Some(b'"') => {
                            self.string()?;
                            on_string(&self.buffer);
                            self.string_value()
                        }
                        Some(b't') => self.literal("true", Value::Bool(true))?,
                        Some(b'f') => self.literal("false", Value::Bool(false))?,
                        Some(b'n') => self.literal("null", Value::Null)?,
                        Some(b'-' | b'0'..=b'9') => self.number()?,
                        _ => return Err(JsonError::Syntax),
                    };
                    self.complete(&mut stack, &mut document, value);
                    State::After
                }
                State::Key { first } => match self.peek() {
                    Some(b'}') if first => {
                        self.pos += 1;
                        let value = self.close(&mut stack)?;
                        self.complete(&mut stack, &mut document, value);
                        State::After
                    }
                    Some(b'"') => {
                        self.string()?;
                        on_string(&self.buffer);
                        let Some(Frame::Object { members, name }) = stack.last_mut() else {
                            return Err(JsonError::Syntax);
                        };
                        if members.contains_key(self.buffer.as_str()) {
                            return Err(JsonError::DuplicateKey);
                        }
                        name.clone_from(&self.buffer);
                        self.skip_ws();
                        if self.peek() != Some(b':') {
                            return Err(JsonError::Syntax);
                        }
                        self.pos += 1;
                        State::Value
                    }
                    _ => return Err(JsonError::Syntax),
                },
                State::After => match (stack.last(), self.peek()) {
                    (None, None) => return document.ok_or(JsonError::Syntax),
                    (None, Some(_)) => return Err(JsonError::Syntax),
                    (Some(Frame::Array(_)), Some(b',')) => {
                        self.pos += 1;
                        State::Value
                    }
                    (Some(Frame::Array(_)), Some(b']'))
                    | (Some(Frame::Object { .. }), Some(b'}')) => {
                        self.pos += 1;
                        let value = self.close(&mut stack)?;
                        self.complete(&mut stack, &mut document, value);
                        State::After
                    }
                    (Some(Frame::Object { .. }), Some(b',')) => {
                        self.pos += 1;
                        State::Key { first: false }
                    }
                    _ => return Err(JsonError::Syntax),
                },
            };
        }
    }

    /// Pops the innermost frame as a value.
    fn close(&self, stack: &mut Vec<Frame>) -> Result<Value, JsonError> {
        match stack.pop() {
            Some(Frame::Array(items)) => Ok(Value::Array(items)),
            Some(Frame::Object { members, .. }) if self.build => Ok(Value::Object(members)),
            Some(Frame::Object { .. }) => Ok(Value::Null),
            None => Err(JsonError::Syntax),
        }
    }

    /// Puts a finished value where it belongs: in the open array or object, or as the
    /// document. When only checking, an object keeps the member's name and nothing else.
    fn complete(&self, stack: &mut [Frame], document: &mut Option<Value>, value: Value) {
        match stack.last_mut() {
            None => *document = Some(value),
            Some(Frame::Array(items)) => {
                if self.build {
                    items.push(value);
                }
            }
            Some(Frame::Object { members, name }) => {
                let value = if self.build { value } else { Value::Null };
                members.insert(std::mem::take(name), value);
            }
        }
    }

    fn string_value(&self) -> Value {
        if self.build {
            Value::String(self.buffer.clone())
        } else {
            Value::Null
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, JsonError> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(value)
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number, as serde_json reads it (u64, i64, else f64; out of range is refused).
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        self.number_syntax()?;
        if !self.build {
            return Ok(Value::Null);
        }
        let text = self.text.get(start..self.pos).ok_or(JsonError::Syntax)?;
        text.parse::<Number>()
            .map(Value::Number)
            .map_err(|_| JsonError::Syntax)
    }

    fn number_syntax(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(JsonError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or(JsonError::Syntax)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JsonError::Syntax);
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| JsonError::Syntax)
    }

    /// Decodes the string starting at the opening quote into `self.buffer`.
    fn string(&mut self) -> Result<(), JsonError> {
        self.buffer.clear();
        self.pos += 1;
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The run ends at an ASCII byte, so it is a whole UTF-8 sequence.
            let run = self.text.get(start..self.pos).ok_or(JsonError::Syntax)?;
            self.buffer.push_str(run);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().ok_or(JsonError::Syntax)?;
                    self.pos += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(JsonError::Syntax),
                    };
                    self.buffer.push(c);
                }
                // A control character or the end of the input.
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    /// `\uXXXX` (already past `\u`), with surrogate pairs; a lone surrogate is refused.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(JsonError::Syntax);
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(JsonError::Syntax);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(JsonError::Syntax),
            other => other,
        };
        char::from_u32(code).ok_or(JsonError::Syntax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], depth: usize) -> Result<Vec<String>, JsonError> {
        let mut strings = Vec::new();
        check(input, depth, &mut |s| strings.push(s.to_string()))?;
        Ok(strings)
    }

    #[test]
    fn accepts_json_texts() {
        for input in [
            "{}",
            "[]",
            " [ ] ",
            "0",
            "-0.5e+10",
            "1E3",
            "\"x\"",
            "true",
            "null",
            r#"{"a":[1,2,{"b":null}],"c":"d"}"#,
            r#"[[[]]]"#,
            "\t\r\n{ \"a\" : 1 }\n",
            r#"{"a":{"a":1}}"#,
        ] {
            assert_eq!(run(input.as_bytes(), 3).map(|_| ()), Ok(()), "{input}");
        }
    }

    #[test]
    fn refuses_bad_json_with_a_reason() {
        let table: &[(&[u8], JsonError)] = &[
            (b"", JsonError::Syntax),
            (b"{", JsonError::Syntax),
            (b"[1,]", JsonError::Syntax),
            (b"[,1]", JsonError::Syntax),
            (b"{\"a\":1,}", JsonError::Syntax),
            (b"{,}", JsonError::Syntax),
            (b"{\"a\"}", JsonError::Syntax),
            (b"{\"a\":}", JsonError::Syntax),
            (b"{1:1}", JsonError::Syntax),
            (b"[01]", JsonError::Syntax),
            (b"[1.]", JsonError::Syntax),
            (b"[.5]", JsonError::Syntax),
            (b"[1e]", JsonError::Syntax),
            (b"[-]", JsonError::Syntax),
            (b"[+1]", JsonError::Syntax),
            (b"[NaN]", JsonError::Syntax),
            (b"[tru]", JsonError::Syntax),
            (b"[nulls]", JsonError::Syntax),
            (b"{} {}", JsonError::Syntax),
            (b"[\"a\tb\"]", JsonError::Syntax),
            (b"[\"\\x\"]", JsonError::Syntax),
            (b"[\"\\u12\"]", JsonError::Syntax),
            (b"[\"\\uD800\"]", JsonError::Syntax),
            (b"[\"\\uDC00\\uD800\"]", JsonError::Syntax),
            (b"['a']", JsonError::Syntax),
            (b"[\"unterminated]", JsonError::Syntax),
            (b"\xef\xbb\xbf{}", JsonError::Syntax),
            (b"[\"\xff\"]", JsonError::Utf8),
            (b"[\"\xc0\xae\"]", JsonError::Utf8),
            (b"{\"a\":1,\"a\":2}", JsonError::DuplicateKey),
            (b"{\"a\":1,\"\\u0061\":2}", JsonError::DuplicateKey),
            (b"[[[[1]]]]", JsonError::TooDeep),
            (b"{\"a\":{\"b\":{\"c\":{}}}}", JsonError::TooDeep),
        ];
        for (input, want) in table {
            assert_eq!(
                run(input, 3).map(|_| ()),
                Err(*want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn parses_as_serde_json_does() {
        for input in [
            "{}",
            "[]",
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5e300",
            "2.2250738585072014e-308",
            "0.1",
            "123456789012345678901234567890",
            r#""\u00e9\ud83d\ude00 \"x\" \\ \/ \b\f\n\r\t""#,
            r#"{"a":[1,2,{"b":null,"c":true,"d":false}],"c":"d","":{"":[]}}"#,
            r#"[[[]],[{}],[1,[2,[3]]]]"#,
        ] {
            let ours = parse(input.as_bytes(), 8, &mut |_| {}).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(input).unwrap();
            assert_eq!(ours, theirs, "{input}");
            assert_eq!(ours.to_string(), theirs.to_string(), "{input}");
        }
        // serde_json refuses a number beyond a double's range; so do we.
        assert!(serde_json::from_str::<serde_json::Value>("[1e400]").is_err());
        assert_eq!(parse(b"[1e400]", 8, &mut |_| {}), Err(JsonError::Syntax));
    }

    #[test]
    fn parse_refuses_what_check_refuses() {
        for input in [
            &b"{\"a\":1,\"a\":2}"[..],
            b"[[[[1]]]]",
            b"[1,]",
            b"[\"\xff\"]",
        ] {
            assert_eq!(
                parse(input, 3, &mut |_| {}).map(drop),
                check(input, 3, &mut |_| {}),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert!(check(input, 3, &mut |_| {}).is_err());
        }
    }

    #[test]
    fn decodes_strings_for_the_screen() {
        let got = run(br#"{"k\n":["a\"b","\u00e9\ud83d\ude00", "x"]}"#, 4).unwrap();
        assert_eq!(got, vec!["k\n", "a\"b", "é😀", "x"]);
    }

    /// Why this check exists: serde_json alone keeps the last of duplicate names, and
    /// refuses deep nesting only by its recursion limit (128).
    #[test]
    fn serde_json_alone_accepts_duplicates() {
        let v: serde_json::Value = serde_json::from_str(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(v["a"], 2);
        let deep = "[".repeat(100_000);
        let e = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_without_recursion() {
        let deep = "[".repeat(100_000);
        assert_eq!(run(deep.as_bytes(), 32), Err(JsonError::TooDeep));
        let mut ok = "[".repeat(10_000);
        ok.push_str(&"]".repeat(10_000));
        assert_eq!(run(ok.as_bytes(), 10_000).map(|_| ()), Ok(()));
    }
}
