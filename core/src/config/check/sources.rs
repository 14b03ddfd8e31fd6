//! `[[sources]]`: names and paths unique, each source's verifier built (once: the runtime
//! uses it).

use std::collections::HashSet;

use toml::Spanned;
use toml::de::DeValue;

use super::{Checker, entry_span};
use crate::config::SourceConfig;

impl Checker<'_, '_> {
    /// The sources that check out, and the names of those that did not (already reported;
    /// `None` when even the name cannot be read).
    pub(super) fn sources(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> (Vec<SourceConfig>, Vec<Option<String>>) {
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut out = Vec::new();
        let mut broken = Vec::new();
        for item in self.array_of_tables(value, "sources") {
            let Some(mut source) = self.de::<SourceConfig>(item) else {
                let name = match item.get_ref() {
                    DeValue::Table(t) => t
                        .get("name")
                        .and_then(|n| n.get_ref().as_str())
                        .map(str::to_string),
                    _ => None,
                };
                broken.push(name);
                continue;
            };
            if source.name.is_empty() || !names.insert(source.name.clone()) {
                self.err(
                    entry_span(item, "name"),
                    None,
                    format!("source name `{}` is empty or used twice", source.name),
                );
            }
            if !source.path.starts_with('/') || source.path.contains(['?', '#', ' ']) {
                self.err(
                    entry_span(item, "path"),
                    None,
                    format!(
                        "source path `{}` must be a URL path starting with `/`",
                        source.path
                    ),
                );
            } else if !paths.insert(source.path.clone()) {
                self.err(
                    entry_span(item, "path"),
                    None,
                    format!("source path `{}` is used by two sources", source.path),
                );
            }
            match source.verify.build() {
                Ok(verifier) => source.verifier = Some(verifier.into()),
                Err(e) => self.err(entry_span(item, "verify"), None, e),
            }
            if let Some(respond) = &source.respond {
                match crate::respond::Responder::build(respond) {
                    Ok(responder) => source.responder = Some(responder.into()),
                    Err(e) => self.err(entry_span(item, "respond"), None, e),
                }
            }
            out.push(source);
        }
        (out, broken)
    }
}
