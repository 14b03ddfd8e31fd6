//! `${VAR}` and `${VAR:-default}` in config strings, resolved after parsing so that a value
//! with quotes or newlines cannot change the TOML around it, and every error keeps the
//! span of the string it came from.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::secret_ref::SecretRef;

/// A `${VAR:-default}` whose variable was unset, so the default was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultUsed {
    pub(crate) var: String,
    /// Dotted path of the config key (`sources[0].verify.secrets[0]`).
    pub(crate) key: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub errors: Vec<(Range<usize>, String)>,
    pub defaults_used: Vec<DefaultUsed>,
}

/// Stands in for an unset secret in `hookline test`: `whsec_` and base64, so that every
/// scheme (and the `http` sink's `signing`) accepts it; long enough for an admin token.
pub const TEST_SECRET: &str = "whsec_aG9va2xpbmUtdGVzdC1wbGFjZWhvbGRlcg==";

/// Replace `${...}` in every string value of the document, in place, and read secrets
/// written `file:PATH` or `credential:NAME` (see [`super::secret_ref`]); relative paths
/// resolve against `base_dir`.
pub fn interpolate_table(
    table: &mut DeTable<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Outcome {
    let mut out = Outcome::default();
    let secrets = SecretRef {
        lookup,
        base_dir,
        placeholders: false,
    };
    walk_table(table, "", lookup, &secrets, &mut out);
    out
}

/// Like [`interpolate_table`], but an unset variable in a secret's place (a key named
/// `secrets`, `secret`, `token` or `password`) becomes [`TEST_SECRET`] instead of an error: pipeline
/// tests never check a signature, so they must not need the production secrets.
pub(crate) fn interpolate_table_for_tests(
    table: &mut DeTable<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Outcome {
    let mut out = Outcome::default();
    let secrets = SecretRef {
        lookup,
        base_dir,
        placeholders: true,
    };
    walk_table(table, "", lookup, &secrets, &mut out);
    out
}

/// Whether a dotted key path (`sources[0].verify.secrets[1]`) names a secret.
fn is_secret_key(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let name = last.split('[').next().unwrap_or(last);
    matches!(name, "secrets" | "secret" | "token" | "password")
}

fn walk_table(
    table: &mut DeTable<'_>,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    secrets: &SecretRef<'_>,
    out: &mut Outcome,
) {
    for (key, value) in table.iter_mut() {
        let child = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", key.get_ref())
        };
        walk_value(value, &child, lookup, secrets, out);
    }
}

fn walk_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    secrets: &SecretRef<'_>,
    out: &mut Outcome,
) {
    let span = value.span();
    let with_placeholder = |name: &str| lookup(name).or_else(|| Some(TEST_SECRET.to_string()));
    let secret = is_secret_key(path);
    let lookup: &dyn Fn(&str) -> Option<String> = if secrets.placeholders && secret {
        &with_placeholder
    } else {
        lookup
    };
    match value.get_mut() {
        DeValue::String(s) if secret => {
            let expanded = match s.contains('$') {
                true => expand(s, lookup),
                false => Ok((s.to_string(), Vec::new())),
            };
            let resolved = expanded.and_then(|(value, defaults)| {
                // A default that names a file is not a secret written in the config.
                if !value.starts_with("file:") && !value.starts_with("credential:") {
                    out.defaults_used
                        .extend(defaults.into_iter().map(|var| DefaultUsed {
                            var,
                            key: path.to_string(),
                        }));
                }
                secrets.resolve(s, value)
            });
            match resolved {
                Ok(value) => *s = value.into(),
                Err(message) => out.errors.push((span, message)),
            }
        }
        DeValue::String(s) if s.contains('$') => match expand(s, lookup) {
            Ok((expanded, defaults)) => {
                out.defaults_used
                    .extend(defaults.into_iter().map(|var| DefaultUsed {
                        var,
                        key: path.to_string(),
                    }));
                *s = expanded.into();
            }
            Err(message) => out.errors.push((span, message)),
        },
        DeValue::Table(t) => walk_table(t, path, lookup, secrets, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), lookup, secrets, out);
            }
        }
        _ => {}
    }
}

/// Expand one string. Returns the result and the variables whose (non-empty) default was
/// used.
/// `$${` is a literal `${`; a `$` not followed by `{` is kept as is.
pub fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(input.len());
    let mut defaults = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(format!(
                "unterminated `${{` in {input:?}: expected `${{VAR}}` or `${{VAR:-default}}`"
            ));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_var_name(name) {
            return Err(format!(
                "`${{{body}}}` is not a valid variable reference: names are letters, digits and `_`, not starting with a digit"
            ));
        }
        match (lookup(name), default) {
            (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
            (Some(value), None) => out.push_str(&value),
            (_, Some(default)) => {
                out.push_str(default);
                // An empty default is no value at all (an optional rotation slot, skipped
                // by the verifiers), not a secret written in the file.
                if !default.is_empty() {
                    defaults.push(name.to_string());
                }
            }
            (None, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` to give it a default)"
                ));
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, defaults))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ex(s: &str) -> Result<(String, Vec<String>), String> {
        expand(s, &env)
    }

    #[test]
    fn expands_set_and_defaulted_variables() {
        assert_eq!(ex("a ${SET} b").expect("ok").0, "a value b");
        assert_eq!(
            ex("${UNSET:-dflt}").expect("ok"),
            ("dflt".into(), vec!["UNSET".into()])
        );
        assert_eq!(ex("${EMPTY:-dflt}").expect("ok").0, "dflt");
        assert_eq!(ex("${EMPTY}").expect("ok").0, "");
        assert_eq!(ex("${SET:-x}").expect("ok"), ("value".into(), vec![]));
        assert_eq!(
            ex("${UNSET:-}").expect("ok"),
            (String::new(), vec![]),
            "an empty default is not a default value"
        );
    }

    #[test]
    fn literal_dollars_survive() {
        assert_eq!(
            ex("cost $5 and $${NOT}").expect("ok").0,
            "cost $5 and ${NOT}"
        );
        assert_eq!(ex("end$").expect("ok").0, "end$");
    }

    #[test]
    fn unset_variable_names_it() {
        let err = ex("${LEADSHARK_SECRET}").expect_err("unset");
        assert!(err.contains("`LEADSHARK_SECRET` is not set"), "{err}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(ex("${OPEN").expect_err("open").contains("unterminated"));
        assert!(
            ex("${1BAD}")
                .expect_err("bad")
                .contains("not a valid variable")
        );
        assert!(ex("${}").is_err());
    }

    #[test]
    fn tests_get_a_placeholder_for_unset_secrets_only() {
        let text = "[[s]]\nverify = { secrets = [\"${PROD}\", \"${SET}\"] }\nurl = \"${URL}\"\n[admin]\ntoken = \"${TOKEN}\"\n";
        let mut doc = DeTable::parse(text).expect("parses").into_inner();
        let out = interpolate_table_for_tests(&mut doc, &env, Path::new("."));
        assert_eq!(out.errors.len(), 1, "only `url` is an error");
        assert_eq!(&text[out.errors[0].0.clone()], "\"${URL}\"");
        assert!(is_secret_key("sources[0].verify.secrets[1]"));
        assert!(is_secret_key("pipelines[0].stages[1].signing.secret"));
        assert!(!is_secret_key("pipelines[0].stages[1].url"));
        let mut doc = DeTable::parse(text).expect("parses").into_inner();
        assert_eq!(
            interpolate_table(&mut doc, &env, Path::new("."))
                .errors
                .len(),
            3
        );
    }

    #[test]
    fn interpolates_nested_values_with_spans() {
        let text = "a = \"${SET}\"\n[[t]]\nb = [\"${MISSING}\", \"${X:-d}\"]\n";
        let mut doc = DeTable::parse(text).expect("parses").into_inner();
        let out = interpolate_table(&mut doc, &env, Path::new("."));
        assert_eq!(out.errors.len(), 1);
        assert_eq!(&text[out.errors[0].0.clone()], "\"${MISSING}\"");
        assert_eq!(
            out.defaults_used,
            vec![DefaultUsed {
                var: "X".into(),
                key: "t[0].b[1]".into()
            }]
        );
        assert_eq!(
            doc.get("a").map(|v| v.get_ref().as_str()),
            Some(Some("value"))
        );
    }
}
