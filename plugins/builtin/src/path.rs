//! Dotted paths into a JSON payload (`data.lead.email`, `items.0.id`), as the transforms
//! write them. Reading goes through `Event::lookup`; this module validates paths at build
//! time and writes or removes at run time.

use std::fmt;

use serde_json::{Map, Value};

/// A validated, non-empty dotted path. Array elements are addressed by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Refuses empty paths and empty segments (`a..b`, `.a`, `a.`), which could only be typos.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field path must not be empty".into());
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("field path `{text}` has an empty segment"));
        }
        Ok(FieldPath {
            text: text.to_string(),
            segments,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `other` lies at or below this path (`a.b` contains `a.b.c`). Segments that
    /// name the same array index in different spellings (`0`, `00`, `+0`) count as one, as
    /// they do where a path is walked; on objects they are different keys, so this errs
    /// towards "contains".
    pub(crate) fn contains(&self, other: &FieldPath) -> bool {
        other.segments.len() >= self.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a == b || index(a).is_some_and(|i| index(b) == Some(i)))
    }

    /// Whether a segment could be read as an array index (`0`, `00`, `+0`).
    pub(crate) fn has_index(&self) -> bool {
        self.segments.iter().any(|s| index(s).is_some())
    }

    fn prefix(&self, len: usize) -> String {
        self.segments[..len].join(".")
    }
}

/// A segment as an array index, read as the walk reads it.
fn index(segment: &str) -> Option<usize> {
    segment.parse().ok()
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Sets `path` to `value`, creating missing intermediate objects. An intermediate that exists
/// but is neither an object nor an array with that index is an error: overwriting it would
/// silently destroy data.
pub(crate) fn set(root: &mut Value, path: &FieldPath, value: Value) -> Result<(), String> {
    let mut current = root;
    for (depth, segment) in path.segments.iter().enumerate() {
        let last = depth + 1 == path.segments.len();
        current = match current {
            Value::Object(map) if last => {
                map.insert(segment.clone(), value);
                return Ok(());
            }
            Value::Object(map) => map
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => match index(segment).filter(|i| *i < items.len()) {
                Some(index) if last => {
                    items[index] = value;
                    return Ok(());
                }
                Some(index) => &mut items[index],
                None => return Err(no_index(path, depth, items.len(), segment)),
            },
            other => return Err(not_an_object(path, depth, other)),
        };
    }
    // Only reached for an empty path, which `FieldPath::parse` refuses.
    Err(format!("cannot set `{path}`: empty path"))
}

/// Whether [`set`] of `path` would succeed on `root`, without changing it: the same walk and
/// the same error.
pub(crate) fn settable(root: &Value, path: &FieldPath) -> Result<(), String> {
    let mut current = root;
    for (depth, segment) in path.segments.iter().enumerate() {
        let last = depth + 1 == path.segments.len();
        current = match current {
            Value::Object(_) if last => return Ok(()),
            Value::Object(map) => match map.get(segment) {
                Some(next) => next,
                // Created as an empty object by `set`: everything below it is too.
                None => return Ok(()),
            },
            Value::Array(items) => match index(segment).filter(|i| *i < items.len()) {
                Some(_) if last => return Ok(()),
                Some(index) => &items[index],
                None => return Err(no_index(path, depth, items.len(), segment)),
            },
            other => return Err(not_an_object(path, depth, other)),
        };
    }
    Err(format!("cannot set `{path}`: empty path"))
}

/// Removes and returns the value at `path`; `None` when any step is missing. Array elements
/// are removed (later ones shift down); object keys keep the order of the others.
pub(crate) fn remove(root: &mut Value, path: &FieldPath) -> Option<Value> {
    let (last, parents) = path.segments.split_last()?;
    let mut current = root;
    for segment in parents {
        current = match current {
            Value::Object(map) => map.get_mut(segment)?,
            Value::Array(items) => items.get_mut(index(segment)?)?,
            _ => return None,
        };
    }
    match current {
        Value::Object(map) => map.shift_remove(last),
        Value::Array(items) => {
            let index = index(last).filter(|i| *i < items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

fn no_index(path: &FieldPath, depth: usize, len: usize, segment: &str) -> String {
    format!(
        "cannot set `{path}`: `{}` is an array of {len} without index `{segment}`",
        display_prefix(path, depth)
    )
}

fn not_an_object(path: &FieldPath, depth: usize, found: &Value) -> String {
    format!(
        "cannot set `{path}`: `{}` is {}, not an object",
        display_prefix(path, depth),
        kind(found)
    )
}

fn display_prefix(path: &FieldPath, depth: usize) -> String {
    if depth == 0 {
        "the payload".to_string()
    } else {
        path.prefix(depth)
    }
}

/// "an object", "a string"… for error messages (never the value itself).
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> FieldPath {
        FieldPath::parse(text).expect("valid path")
    }

    #[test]
    fn parse_refuses_empty_segments() {
        for bad in ["", ".a", "a.", "a..b"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(p("a").contains(&p("a.b")));
        assert!(!p("a.b").contains(&p("a")));
        assert!(!p("a").contains(&p("ab")));
    }

    #[test]
    fn set_creates_intermediates_and_indexes_arrays() {
        let mut v = json!({"items": [{"id": 1}]});
        set(&mut v, &p("meta.source.name"), json!("x")).expect("set");
        set(&mut v, &p("items.0.id"), json!(2)).expect("set");
        assert_eq!(
            v,
            json!({"items": [{"id": 2}], "meta": {"source": {"name": "x"}}})
        );
    }

    #[test]
    fn set_refuses_to_overwrite_non_objects() {
        let v = json!({"data": {"automation": null, "name": "x"}, "items": []});
        let refused = |v: &Value, path: &str| {
            let e = settable(v, &p(path)).expect_err("refused");
            let mut changed = v.clone();
            assert_eq!(set(&mut changed, &p(path), json!(1)), Err(e.clone()));
            e
        };
        let e = refused(&v, "data.name.first");
        assert!(e.contains("`data.name` is a string"), "{e}");
        let e = refused(&v, "data.automation.id");
        assert!(e.contains("is null"), "{e}");
        let e = refused(&v, "items.3");
        assert!(e.contains("array of 0"), "{e}");
        let e = refused(&json!("text"), "a");
        assert!(e.contains("the payload"), "{e}");
        for path in ["data.name", "data.new.deep.path", "items", "fresh"] {
            assert_eq!(settable(&v, &p(path)), Ok(()), "{path}");
            set(&mut v.clone(), &p(path), json!(1)).expect("set");
        }
    }

    #[test]
    fn remove_keeps_order_and_ignores_missing() {
        let mut v = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2, 3]});
        assert_eq!(remove(&mut v, &p("b.c")), Some(json!(2)));
        assert_eq!(remove(&mut v, &p("e.1")), Some(json!(2)));
        assert_eq!(remove(&mut v, &p("x.y")), None);
        assert_eq!(remove(&mut v, &p("a.y")), None);
        assert_eq!(remove(&mut v, &p("a")), Some(json!(1)));
        assert_eq!(
            serde_json::to_string(&v).expect("json"),
            r#"{"b":{"d":3},"e":[1,3]}"#
        );
    }
}
