//! HuJSON ("human JSON", Tailscale's policy format) → standard JSON.
//!
//! HuJSON is JSON plus `//` line comments, `/* */` block comments and a trailing comma after the
//! last member of an object or array. Nothing else: unquoted keys, single quotes or hex numbers
//! stay invalid and serde_json refuses them afterwards. Every removed byte is replaced by a space
//! (newlines inside block comments are kept), so the output has exactly the input's byte layout
//! and a serde_json error position is also the right line:column in the user's text.

use super::{PolicyError, Position};

/// Turns HuJSON text into JSON text of the same length and line layout.
pub fn to_json(text: &str) -> Result<String, PolicyError> {
    let mut bytes = text.as_bytes().to_vec();
    strip_comments(&mut bytes)
        .map_err(|offset| PolicyError::at(Some(Position::of_offset(text, offset)), "unterminated /* comment"))?;
    strip_trailing_commas(&mut bytes);
    // Only whole comments (all their bytes) and ASCII commas were replaced by ASCII spaces, so
    // the result is still UTF-8; the check is kept rather than an unchecked conversion.
    String::from_utf8(bytes).map_err(|_| PolicyError::new("policy is not valid UTF-8"))
}

/// Replaces comments outside strings with spaces. Err(offset) for an unterminated block comment.
fn strip_comments(b: &mut [u8]) -> Result<(), usize> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_string(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    b[i] = b' ';
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                let end = find_block_end(b, i + 2).ok_or(start)?;
                for c in &mut b[start..end] {
                    if *c != b'\n' && *c != b'\r' {
                        *c = b' ';
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the `*/` that closes a block comment whose body starts at `from`.
fn find_block_end(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?.windows(2).position(|w| w == b"*/").map(|p| from + p + 2)
}

/// Index just past the string starting at `start` (a `"`); the end of input if unterminated,
/// which serde_json then reports with its own position.
fn skip_string(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Replaces a comma that follows a value and is followed (after whitespace) by `]` or `}` with
/// a space. Runs after comments are gone, so "whitespace" covers them too. A comma right after
/// `[`, `{` or another comma is not a trailing comma and stays, for serde_json to refuse.
fn strip_trailing_commas(b: &mut [u8]) {
    let mut i = 0;
    let mut prev = b' ';
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => i = skip_string(b, i),
            b',' => {
                let next = b[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                let after_value = !matches!(prev, b'[' | b'{' | b',');
                if after_value && matches!(next, Some(b']') | Some(b'}')) {
                    b[i] = b' ';
                }
                i += 1;
            }
            _ => i += 1,
        }
        if !c.is_ascii_whitespace() {
            prev = c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<serde_json::Value, String> {
        let json = to_json(text).map_err(|e| e.to_string())?;
        serde_json::from_str(&json).map_err(|e| e.to_string())
    }

    #[test]
    fn keeps_length_and_lines() {
        let text = "{ // c\n \"a\": [1, 2,], /* x\n y */ \"b\": 1, }";
        let json = to_json(text).unwrap();
        assert_eq!(json.len(), text.len());
        assert_eq!(json.matches('\n').count(), 2);
        assert_eq!(parse(text).unwrap(), serde_json::json!({"a": [1, 2], "b": 1}));
    }

    #[test]
    fn comment_markers_inside_strings_stay() {
        let v = parse(r#"{"url": "http://x/*y*/", "q": "a\"//b",}"#).unwrap();
        assert_eq!(v["url"], "http://x/*y*/");
        assert_eq!(v["q"], "a\"//b");
    }

    #[test]
    fn comma_before_comment_then_bracket_is_trailing() {
        assert_eq!(parse("[1, // last\n]").unwrap(), serde_json::json!([1]));
        assert_eq!(parse("[1, /* x */ ]").unwrap(), serde_json::json!([1]));
    }

    #[test]
    fn non_ascii_comments_keep_valid_utf8() {
        assert_eq!(parse("{\"a\": 1 // héllo ✓\n}").unwrap(), serde_json::json!({"a": 1}));
    }

    #[test]
    fn refuses_what_hujson_refuses() {
        assert!(parse("{a: 1}").is_err(), "unquoted key");
        assert!(parse("{'a': 1}").is_err(), "single quotes");
        assert!(parse("[1,,]").is_err(), "double comma");
        assert!(parse("[,]").is_err(), "lone comma");
        assert!(parse("{,}").is_err(), "lone comma in object");
        assert!(parse("{\"a\": 0x10}").is_err(), "hex");
    }

    #[test]
    fn unterminated_block_comment_has_position() {
        let err = to_json("{\n  /* open\n}").unwrap_err();
        assert_eq!(err.to_string(), "line 2, column 3: unterminated /* comment");
    }

    #[test]
    fn serde_error_points_at_original_line_and_column() {
        // The error is on line 4 (the missing comma); comments before it must not shift it.
        let text = "{\n  /* a\n  b */ \"x\": 1 // c\n  \"y\": 2\n}";
        let err = serde_json::from_str::<serde_json::Value>(&to_json(text).unwrap()).unwrap_err();
        assert_eq!((err.line(), err.column()), (4, 3));
    }
}
