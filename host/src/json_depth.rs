//! The one JSON depth rule. JSON that enters sluice (API, webhook and trigger bodies) may
//! nest [`MAX_DEPTH`] levels; what a plugin hands the host (event and message payloads,
//! states, action output) may nest [`WRAPPING`] levels more, since a plugin may wrap what it
//! received. Both stay below the 128 levels the JSON reader takes, so whatever sluice
//! accepts and stores reads back with the shape it had. The check runs where JSON enters,
//! before anything is parsed or run, and a refusal names the rule.

/// How deep JSON entering sluice may nest (an object or array is one level).
pub const MAX_DEPTH: usize = 64;

/// How many levels a plugin may add around what it received.
pub const WRAPPING: usize = 8;

/// How deep JSON a plugin hands the host may nest.
pub const RECORDED_MAX_DEPTH: usize = MAX_DEPTH + WRAPPING;

/// The deepest nesting of objects and arrays in `text`, read as JSON (brackets inside
/// strings do not count). Text that is not JSON gets a number too; parsing it tells what
/// is wrong.
pub fn depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `what` (for example "the body") as a refusal when it nests deeper than `limit`.
pub fn check(text: &[u8], limit: usize, what: &str) -> Result<(), String> {
    // Text cannot nest deeper than it has opening brackets; counting them is one
    // vectorised pass, and almost every body has fewer than the limit.
    if opening_brackets(text) <= limit {
        return Ok(());
    }
    let found = depth(text);
    if found > limit {
        return Err(format!(
            "{what} nests JSON {found} levels deep; sluice takes at most {limit} (its JSON depth rule)"
        ));
    }
    Ok(())
}

/// How many `{` and `[` bytes `text` holds, inside strings or not.
fn opening_brackets(text: &[u8]) -> usize {
    // Counted in byte-wide sums over chunks that cannot overflow one: the compiler then
    // compares and adds 16 bytes at a time (a `usize` count widens every byte first).
    text.chunks(u8::MAX as usize)
        .map(|chunk| {
            let in_chunk: u8 = chunk
                .iter()
                .map(|&byte| u8::from(byte == b'{') | u8::from(byte == b'['))
                .sum();
            usize::from(in_chunk)
        })
        .sum()
}

/// The same refusal for JSON handed in already parsed (the embedding API's calls).
pub fn check_value(value: &serde_json::Value, limit: usize, what: &str) -> Result<(), String> {
    /// Whether `value` nests deeper than `room` levels; looks no deeper than that.
    fn deeper_than(value: &serde_json::Value, room: usize) -> bool {
        match value {
            serde_json::Value::Array(items) => room == 0 || items.iter().any(|item| deeper_than(item, room - 1)),
            serde_json::Value::Object(fields) => room == 0 || fields.values().any(|field| deeper_than(field, room - 1)),
            _ => false,
        }
    }
    if deeper_than(value, limit) {
        return Err(format!(
            "{what} nests JSON more than {limit} levels deep; sluice takes at most {limit} (its JSON depth rule)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_objects_and_arrays_outside_strings() {
        assert_eq!(depth(b"1"), 0);
        assert_eq!(depth(b"{}"), 1);
        assert_eq!(depth(br#"{"a":[{"b":1}],"c":{}}"#), 3);
        assert_eq!(depth(br#"{"a":"[[[{{{\"]]]"}"#), 1, "brackets in strings do not count");
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(depth(deep.as_bytes()), 100);
        assert!(
            check(deep.as_bytes(), MAX_DEPTH, "the body")
                .unwrap_err()
                .contains("100 levels")
        );
        assert!(check(b"[[1]]", MAX_DEPTH, "the body").is_ok());
    }

    #[test]
    fn many_brackets_shallow_or_in_strings_pass_and_deep_ones_do_not() {
        assert_eq!(
            opening_brackets("{[".repeat(700).as_bytes()),
            1400,
            "counted across chunks"
        );
        let wide = format!("[{}1]", "[1],".repeat(500));
        assert!(opening_brackets(wide.as_bytes()) > MAX_DEPTH);
        assert!(check(wide.as_bytes(), MAX_DEPTH, "the body").is_ok());
        let quoted = format!(r#"{{"a":"{}"}}"#, "[".repeat(500));
        assert!(check(quoted.as_bytes(), MAX_DEPTH, "the body").is_ok());
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check(at_limit.as_bytes(), MAX_DEPTH, "the body").is_ok());
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(check(over.as_bytes(), MAX_DEPTH, "the body").is_err());
    }

    #[test]
    fn parsed_json_takes_the_same_rule() {
        let nested = |levels: usize| -> serde_json::Value {
            let text = format!("{}1{}", "[{\"a\":".repeat(levels / 2), "}]".repeat(levels / 2));
            assert_eq!(depth(text.as_bytes()), levels);
            serde_json::from_str(&text).unwrap()
        };
        assert!(check_value(&nested(MAX_DEPTH), MAX_DEPTH, "the input").is_ok());
        assert!(
            check_value(&nested(MAX_DEPTH + 2), MAX_DEPTH, "the input")
                .unwrap_err()
                .contains("the input nests JSON more than 64 levels")
        );
        assert!(check_value(&serde_json::json!(1), 0, "the input").is_ok());
        assert!(check_value(&serde_json::json!([]), 0, "the input").is_err());
    }

    #[test]
    fn what_is_accepted_reads_back() {
        let deepest = format!("{}{}", "[".repeat(RECORDED_MAX_DEPTH), "]".repeat(RECORDED_MAX_DEPTH));
        let value: serde_json::Value = serde_json::from_str(&deepest).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&value.to_string()).unwrap(),
            value
        );
    }
}
