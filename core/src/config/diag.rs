//! Config errors located by file, line, column and key.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at a place in the file (e.g. it cannot be read).
    pub(crate) line: usize,
    pub(crate) column: usize,
    /// Dotted key path (`pipelines[0].stages[1].expr`), when the place is inside a key.
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Messages quote values from the file and the environment, and keys are the file's
        // (a quoted key may hold any character): a newline or an escape sequence in either
        // is printed escaped, never raw (one problem, one line).
        escaped(f, &self.file.display().to_string())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(key) = &self.key {
            f.write_str(": `")?;
            escaped(f, key)?;
            f.write_str("`")?;
        }
        f.write_str(": ")?;
        escaped(f, &self.message)
    }
}

fn escaped(f: &mut std::fmt::Formatter<'_>, text: &str) -> std::fmt::Result {
    for c in text.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// Every problem found in one pass over a config: one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    pub(crate) fn single(file: &Path, message: impl Into<String>) -> Self {
        Diagnostics(vec![Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            key: None,
            message: message.into(),
        }])
    }
}

/// Turns byte spans into diagnostics for one file.
#[derive(Debug)]
pub struct Locator<'a> {
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
    pub(crate) doc: Option<&'a DeTable<'a>>,
}

impl Locator<'_> {
    /// A diagnostic at `span`; the key is derived from the span when not given.
    pub(crate) fn at(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = span
            .as_ref()
            .map(|s| line_col(self.text, s.start))
            .unwrap_or((0, 0));
        let key = key.map(|k| self.qualify(span.as_ref(), k)).or_else(|| {
            span.as_ref()
                .and_then(|s| self.doc.and_then(|d| key_path_at(d, s.start)))
        });
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// A plugin names only its own key (`expr`); prefix the stage's path when we know it.
    fn qualify(&self, span: Option<&Range<usize>>, key: String) -> String {
        match span.and_then(|s| self.doc.and_then(|d| key_path_at(d, s.start))) {
            Some(full) if full.ends_with(&key) => full,
            _ => key,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The dotted path of the innermost key whose name or value contains `offset`.
///
/// Standard tables (`[server]`, `[[pipelines]]`) have spans that cover only their headers,
/// so every branch is searched, not just the ones whose span contains the offset.
pub(crate) fn key_path_at(doc: &DeTable<'_>, offset: usize) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    search_table(doc, offset, "", 0, &mut best);
    best.map(|(_, path)| path)
}

fn consider(best: &mut Option<(usize, String)>, depth: usize, path: &str) {
    if best.as_ref().is_none_or(|(d, _)| depth > *d) {
        *best = Some((depth, path.to_string()));
    }
}

fn search_table(
    table: &DeTable<'_>,
    offset: usize,
    prefix: &str,
    depth: usize,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if key.span().contains(&offset) || value.span().contains(&offset) {
            consider(best, depth + 1, &path);
        }
        search_value(value.get_ref(), offset, &path, depth + 1, best);
    }
}

fn search_value(
    value: &DeValue<'_>,
    offset: usize,
    path: &str,
    depth: usize,
    best: &mut Option<(usize, String)>,
) {
    match value {
        DeValue::Table(t) => search_table(t, offset, path, depth, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.span().contains(&offset) {
                    consider(best, depth + 1, &item_path);
                }
                search_value(item.get_ref(), offset, &item_path, depth + 1, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_in_chars() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        let off = text.find("= \"x").expect("present");
        assert_eq!(line_col(text, off), (2, 4));
    }

    #[test]
    fn key_path_walks_arrays_of_tables() {
        let text = "[[pipelines]]\nname = \"p\"\nstages = [{ sink = \"file\", path = 3 }]\n";
        let doc = DeTable::parse(text).expect("parses").into_inner();
        let off = text.find("3 }").expect("present");
        assert_eq!(
            key_path_at(&doc, off).as_deref(),
            Some("pipelines[0].stages[0].path")
        );
        let off = text.find("name").expect("present");
        assert_eq!(key_path_at(&doc, off).as_deref(), Some("pipelines[0].name"));
    }

    /// F15 of the bulkheads issue: a `${VAR}` value with a newline or an escape sequence,
    /// quoted in a message, is printed escaped: one problem stays one line.
    #[test]
    fn control_characters_in_messages_are_printed_escaped() {
        let d = Diagnostic {
            file: "pipeline.toml".into(),
            line: 3,
            column: 10,
            key: Some("server.listen".into()),
            message: "`0.0.0.0:80\nerror: forged line \u{1b}[31m` is not a socket address".into(),
        };
        let text = d.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\\n") && text.contains("\\u{1b}"), "{text}");
    }

    /// Caught by the `config_load` fuzz harness (`fuzz/`, one problem per line): a quoted
    /// key may hold a newline or an escape sequence (`"a\nb" = 1`), and the key path was
    /// printed raw, so one problem took two lines. Keys are escaped like messages now.
    #[test]
    fn control_characters_in_keys_are_printed_escaped() {
        use crate::config::ConfigFile;
        let file = ConfigFile {
            path: "pipeline.toml".into(),
            text: "\"a\\nerror: forged\\u001b[31m\" = 1\n[[sources]]\n\"k\\u0007\" = 2\n".into(),
        };
        let problems = file.parse_with_env(&|_| None).expect_err("unknown keys");
        let text = problems.to_string();
        assert_eq!(text.lines().count(), problems.0.len(), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("`a\\nerror: forged\\u{1b}[31m`"), "{text}");
    }
}
