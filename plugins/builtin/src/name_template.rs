//! Short text templates naming where a sink writes: a NATS subject, an AMQP exchange or
//! routing key (`"leads.{{ event.type }}"`).
//!
//! The variables are those of the `template` transform: `payload`, `event` (`id`, `type`,
//! `source`, `received_at`) and `headers`. A missing field is an error (strict), as a name
//! with a hole in it would route the message somewhere unintended. Compiled and checked at
//! build (syntax, unknown variables, unknown filters); each render has the `template`
//! transform's fuel budget.

use hookline_plugin_api::Event;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, context};

use crate::support::{event_meta, headers_map};
use crate::transform::template::FUEL;

const NAME: &str = "name";
const VARIABLES: [&str; 3] = ["payload", "event", "headers"];

/// A compiled name template.
#[derive(Debug)]
pub(crate) struct NameTemplate {
    env: Environment<'static>,
    /// The text itself when it has no `{{ }}`/`{% %}` (nothing to render).
    constant: Option<String>,
}

impl NameTemplate {
    pub(crate) fn compile(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| format!("invalid template: {e}"))?;
        let template = env.get_template(NAME).map_err(|e| e.to_string())?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !VARIABLES.contains(&v.as_str()) && !env.globals().any(|(g, _)| g == v))
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(format!(
                "unknown variable(s) in template: {}; the variables are `payload`, `event` and `headers`",
                unknown.join(", ")
            ));
        }
        let constant =
            (!source.contains("{{") && !source.contains("{%")).then(|| source.to_string());
        let out = NameTemplate { env, constant };
        match out.wildcard("x") {
            Err(e) if e.starts_with("unknown") => Err(format!("invalid template: {e}")),
            _ => Ok(out),
        }
    }

    /// The name for `event`.
    pub(crate) fn render(&self, event: &Event) -> Result<String, String> {
        if let Some(constant) = &self.constant {
            return Ok(constant.clone());
        }
        let ctx = context! {
            payload => Value::from(Serde(&event.payload)),
            event => Value::from(Serde(event_meta(event))),
            headers => Value::from(Serde(headers_map(event))),
        };
        self.env
            .get_template(NAME)
            .and_then(|t| t.render(ctx))
            .map_err(|e| e.to_string())
    }

    /// The text itself, when it inserts nothing.
    pub(crate) fn constant(&self) -> Option<&str> {
        self.constant.as_deref()
    }

    /// The name with every inserted value replaced by `with` (`leads.*` for
    /// `leads.{{ event.type }}`), for `check --connect`, which has no event.
    pub(crate) fn wildcard(&self, with: &str) -> Result<String, String> {
        let mut trial = self.env.clone();
        trial.set_undefined_behavior(UndefinedBehavior::Chainable);
        let with = with.to_string();
        trial.set_formatter(move |out, _state, _value| {
            out.write_str(&with)
                .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
        });
        let ctx = context! { payload => context! {}, event => context! {}, headers => context! {} };
        trial
            .get_template(NAME)
            .and_then(|t| t.render(ctx))
            .map_err(|e| match e.kind() {
                ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction => {
                    format!("unknown callable: {e}")
                }
                _ => e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{event, leadshark_v1};

    #[test]
    fn renders_event_fields_and_wildcards() {
        let t =
            NameTemplate::compile("leads.{{ event.type }}.{{ payload.data.lead.email | lower }}")
                .expect("compiles");
        assert_eq!(
            t.render(&event("email.captured", leadshark_v1())),
            Ok("leads.email.captured.john.doe@example.com".into())
        );
        assert_eq!(t.wildcard("*"), Ok("leads.*.*".into()));
        assert_eq!(t.constant(), None);
        let c = NameTemplate::compile("leads").expect("compiles");
        assert_eq!(c.constant(), Some("leads"));
    }

    #[test]
    fn a_missing_field_is_an_error() {
        let t = NameTemplate::compile("leads.{{ payload.nope }}").expect("compiles");
        assert!(t.render(&event("t", leadshark_v1())).is_err());
    }

    #[test]
    fn bad_templates_are_refused() {
        for (text, message) in [
            ("leads.{{ event.type ", "invalid template"),
            (
                "leads.{{ evnt.type }}",
                "unknown variable(s) in template: evnt",
            ),
            ("leads.{{ event.type | lowr }}", "unknown filter"),
        ] {
            let err = NameTemplate::compile(text).expect_err(text);
            assert!(err.contains(message), "{text}: {err}");
        }
    }
}
