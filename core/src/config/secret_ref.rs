//! Secrets read from files: `file:/run/secrets/leadshark` or, under systemd,
//! `credential:leadshark` (the file `$CREDENTIALS_DIRECTORY/leadshark` that `LoadCredential=`
//! provides). Read each time the config is loaded, so a reload picks up a rotated secret.
//!
//! Every secret (a key named `secrets`, `secret`, `token` or `password`) is checked here, where its
//! place in the file is known: an empty or whitespace-only secret is an error, except an
//! optional rotation slot written `${OLD:-}`, which stays empty and is skipped.

use std::path::{Path, PathBuf};

/// How a secret's value (after `${VAR}` expansion) is resolved.
pub(crate) struct SecretRef<'a> {
    pub(crate) lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Relative `file:` paths resolve against the config file's directory.
    pub(crate) base_dir: &'a Path,
    /// `hookline test`: an unreadable file becomes [`super::TEST_SECRET`].
    pub(crate) placeholders: bool,
}

impl SecretRef<'_> {
    /// The secret for `value` (as expanded from `written`). Errors name the file and the OS
    /// error, never the content.
    pub(crate) fn resolve(&self, written: &str, value: String) -> Result<String, String> {
        let Some(path) = self.path(&value)? else {
            return check_inline(written, value);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) if self.placeholders => return Ok(super::TEST_SECRET.to_string()),
            Err(e) => {
                return Err(format!("cannot read secret file {}: {e}", path.display()));
            }
        };
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.trim().is_empty() {
            let what = if secret.is_empty() {
                "empty"
            } else {
                "only whitespace"
            };
            return Err(format!(
                "secret file {} is {what}: write the secret into it",
                path.display()
            ));
        }
        Ok(secret.to_string())
    }

    /// The file a `file:` or `credential:` value names; `None` for an inline secret.
    fn path(&self, value: &str) -> Result<Option<PathBuf>, String> {
        if let Some(path) = value.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path (`file:/run/secrets/NAME`)".into());
            }
            return Ok(Some(self.base_dir.join(path)));
        }
        let Some(name) = value.strip_prefix("credential:") else {
            return Ok(None);
        };
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(format!(
                "`credential:{name}` must name one credential (`credential:NAME`, as in `LoadCredential=NAME:...`)"
            ));
        }
        match (self.lookup)("CREDENTIALS_DIRECTORY") {
            Some(dir) if !dir.is_empty() => Ok(Some(Path::new(&dir).join(name))),
            _ if self.placeholders => Ok(Some(PathBuf::new())),
            _ => Err(format!(
                "`credential:{name}` needs $CREDENTIALS_DIRECTORY, which systemd sets for a service with `LoadCredential={name}:...`; outside systemd write `file:PATH`"
            )),
        }
    }
}

/// A secret written in the file or taken from the environment.
fn check_inline(written: &str, value: String) -> Result<String, String> {
    if value.is_empty() {
        // `${OLD:-}`: an optional slot, left empty and skipped by the verifiers.
        if written.contains(":-}") {
            return Ok(value);
        }
        return Err(
            "the secret is empty (an environment variable set to nothing?): set it, or write `${VAR:-}` for an optional rotation slot"
                .into(),
        );
    }
    if value.trim().is_empty() {
        return Err("the secret is only whitespace: set it to the real secret".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "CREDENTIALS_DIRECTORY").then(|| "/nonexistent/creds".into())
    }

    fn resolver<'a>(base: &'a Path, lookup: &'a dyn Fn(&str) -> Option<String>) -> SecretRef<'a> {
        SecretRef {
            lookup,
            base_dir: base,
            placeholders: false,
        }
    }

    #[test]
    fn reads_a_file_and_trims_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s"), "s3cret\r\n").expect("write");
        let r = resolver(dir.path(), &env);
        assert_eq!(
            r.resolve("file:s", "file:s".into()).expect("reads"),
            "s3cret"
        );
        let abs = format!("file:{}", dir.path().join("s").display());
        assert_eq!(r.resolve(&abs, abs.clone()).expect("reads"), "s3cret");
    }

    #[test]
    fn reads_a_systemd_credential() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("leadshark"), "k3y\n").expect("write");
        let creds = dir.path().display().to_string();
        let lookup = move |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
        let r = resolver(Path::new("."), &lookup);
        let v = "credential:leadshark";
        assert_eq!(r.resolve(v, v.into()).expect("reads"), "k3y");
        for bad in ["credential:", "credential:../x", "credential:a/b"] {
            let err = r.resolve(bad, bad.into()).expect_err(bad);
            assert!(err.contains("must name one credential"), "{err}");
        }
        let none = |_: &str| None;
        let err = resolver(Path::new("."), &none)
            .resolve(v, v.into())
            .expect_err("no directory");
        assert!(err.contains("$CREDENTIALS_DIRECTORY"), "{err}");
    }

    #[test]
    fn an_empty_or_blank_file_is_an_error_naming_the_path_not_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = resolver(dir.path(), &env);
        for (content, says) in [
            ("", "is empty"),
            ("\n", "is empty"),
            (" \t\n", "only whitespace"),
        ] {
            std::fs::write(dir.path().join("s"), content).expect("write");
            let err = r.resolve("file:s", "file:s".into()).expect_err(content);
            assert!(err.contains(says) && err.contains("/s "), "{err}");
        }
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_os_error() {
        let r = resolver(Path::new("/etc"), &env);
        let err = r
            .resolve("file:hookline-nope", "file:hookline-nope".into())
            .expect_err("missing");
        assert!(err.contains("/etc/hookline-nope"), "{err}");
        assert!(err.contains("No such file"), "{err}");
        let v = "credential:leadshark";
        let err = r.resolve(v, v.into()).expect_err("missing");
        assert!(err.contains("/nonexistent/creds/leadshark"), "{err}");
        let test = SecretRef {
            placeholders: true,
            ..r
        };
        assert_eq!(
            test.resolve(v, v.into()).expect("placeholder"),
            super::super::TEST_SECRET
        );
    }

    #[test]
    fn empty_secrets_are_errors_unless_an_optional_slot() {
        let r = resolver(Path::new("."), &env);
        assert_eq!(r.resolve("${OLD:-}", String::new()).expect("slot"), "");
        assert!(
            r.resolve("${NEW}", String::new())
                .expect_err("refused")
                .contains("is empty")
        );
        assert!(
            r.resolve("", String::new())
                .expect_err("refused")
                .contains("is empty")
        );
        assert!(
            r.resolve("${NEW}", "  ".into())
                .expect_err("refused")
                .contains("only whitespace")
        );
        assert_eq!(r.resolve("${NEW}", "k".into()).expect("set"), "k");
    }
}
