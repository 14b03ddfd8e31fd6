//! `template` transform: renders a new payload with a [minijinja](https://docs.rs/minijinja)
//! (Jinja2) template.
//!
//! ```toml
//! # A Slack message; `tojson` quotes and escapes, so the output is always valid JSON.
//! { transform = "template", template = '''
//! {"text": {{ ("New lead " ~ payload.data.lead.name ~ " <" ~ payload.data.lead.email ~ ">") | tojson }}}
//! ''' }
//! { transform = "template", format = "text", template = "{{ event.type }}: {{ payload.data.lead.name }}" }
//! ```
//!
//! Variables: `payload`, `event` (`id`, `type`, `source`, `received_at`) and `headers`.
//! With `format = "json"` (the default) the rendered text must be JSON and becomes the new
//! payload; with `format = "text"` the payload becomes that text as a JSON string.
//!
//! With `format = "json"`, every value the template inserts is escaped for JSON: a string
//! as the content of a JSON string (quotes, backslashes and control characters escaped, so
//! `"New lead: {{ payload.data.lead.name }}"` stays one string whatever the name holds),
//! objects and arrays as JSON. Payload text can never change the output's structure.
//! `| tojson` still gives a complete JSON value (quoted string), as before.
//!
//! Each render has a budget (minijinja fuel, [`FUEL`] instructions): a template that loops
//! over a huge payload fails the event with that reason instead of holding a thread.
//!
//! By default a missing field renders as nothing and lookups below it stay missing
//! (`payload.data.automation.name` is empty when `automation` is absent) — LeadShark v1 and
//! v2 bodies differ. `strict = true` makes any use of a missing field a fatal error instead.
//!
//! Checked at start-up: the syntax, variables other than the three above (typos such as
//! `paylod`), and unknown filters, tests and functions reached by a trial render.

use std::sync::Arc;

use hookline_plugin_api::{BuildContext, ConfigError, Event, PluginConfig, StageError, Transform};
use minijinja::value::Serde;
use minijinja::value::ValueKind;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, context};
use serde::Deserialize;

use crate::support::{event_meta, headers_map, truncate};

const NAME: &str = "template";
/// Instructions one render may run: far above any message template over a webhook payload
/// (a few hundred), far below what would hold a thread for long.
pub const FUEL: u64 = 1_000_000;
const VARIABLES: [&str; 3] = ["payload", "event", "headers"];

/// Config of the `template` transform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// The minijinja template. Required.
    pub template: String,
    /// What the output is: `"json"` (default) or `"text"`.
    #[serde(default)]
    pub format: Format,
    /// Fail the event when the template uses a missing field. Default `false`.
    #[serde(default)]
    pub strict: bool,
}

/// How the rendered text becomes the payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Parsed as JSON.
    #[default]
    Json,
    /// Kept as a JSON string.
    Text,
}

pub fn build(
    config: &PluginConfig<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Transform>, ConfigError> {
    let cfg: TemplateConfig = config.parse()?;
    let transform = TemplateTransform::compile(&cfg.template, cfg.format, cfg.strict, FUEL)
        .map_err(|e| config.error_at("template", e))?;
    Ok(Arc::new(transform))
}

fn environment(
    source: &str,
    behavior: UndefinedBehavior,
) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(behavior);
    env.add_template_owned(NAME, source.to_string())?;
    Ok(env)
}

/// Refuses what would fail or silently render nothing on every event: unknown variables,
/// and unknown filters/tests/functions on the path a render with an empty payload takes.
fn check(env: &Environment<'static>) -> Result<(), String> {
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
    let mut trial = env.clone();
    trial.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Empty maps, so that chained lookups (`payload.data.lead.name`) stay undefined and the
    // render goes on to the filters applied to them.
    let trial_ctx =
        context! { payload => context! {}, event => context! {}, headers => context! {} };
    match trial.get_template(NAME).and_then(|t| t.render(trial_ctx)) {
        Err(e) if is_unknown_callable(e.kind()) => Err(format!("invalid template: {e}")),
        _ => Ok(()),
    }
}

/// Inserted values, escaped for JSON (see the module docs). Values marked safe (`tojson`'s
/// output) and missing ones render as minijinja would.
fn json_formatter(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    let serialization = |e: serde_json::Error| {
        minijinja::Error::new(
            ErrorKind::BadSerialization,
            format!("cannot render as JSON: {e}"),
        )
    };
    let write = |out: &mut minijinja::Output<'_>, text: &str| {
        out.write_str(text)
            .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
    };
    if value.is_safe() || value.is_undefined() || value.is_none() {
        return minijinja::escape_formatter(out, state, value);
    }
    match value.kind() {
        ValueKind::String => {
            let quoted =
                serde_json::to_string(value.as_str().unwrap_or_default()).map_err(serialization)?;
            write(out, &quoted[1..quoted.len() - 1])
        }
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable | ValueKind::Plain => {
            write(out, &serde_json::to_string(value).map_err(serialization)?)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn is_unknown_callable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
    )
}

/// Runtime form of the `template` transform: the compiled template in its environment.
#[derive(Debug)]
pub struct TemplateTransform {
    env: Environment<'static>,
    format: Format,
}

impl TemplateTransform {
    /// Compile and check a template, for this transform or for a template outside a
    /// pipeline (a source's `respond` body): same variables, checks and JSON escaping
    /// (`format = Json`), with `fuel` instructions per render.
    pub fn compile(source: &str, format: Format, strict: bool, fuel: u64) -> Result<Self, String> {
        let behavior = if strict {
            UndefinedBehavior::Strict
        } else {
            UndefinedBehavior::Chainable
        };
        let mut env =
            environment(source, behavior).map_err(|e| format!("invalid template: {e}"))?;
        if format == Format::Json {
            env.set_formatter(json_formatter);
        }
        env.set_fuel(Some(fuel));
        check(&env)?;
        Ok(TemplateTransform { env, format })
    }

    /// The rendered text for `event`, within the fuel budget; with `Format::Json`, checked
    /// to be JSON.
    pub fn render_text(&self, event: &Event) -> Result<String, String> {
        let text = self
            .render(event)
            .map_err(|e| format!("template rendering failed: {e}"))?;
        if self.format == Format::Json
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text)
        {
            return Err(format!(
                "template output is not valid JSON ({e}); it begins: {}",
                truncate(&text, 200)
            ));
        }
        Ok(text)
    }

    fn render(&self, event: &Event) -> Result<String, minijinja::Error> {
        let ctx = context! {
            payload => Value::from(Serde(&event.payload)),
            event => Value::from(Serde(event_meta(event))),
            headers => Value::from(Serde(headers_map(event))),
        };
        self.env.get_template(NAME)?.render(ctx)
    }
}

impl Transform for TemplateTransform {
    fn apply(&self, mut event: Event) -> Result<Vec<Event>, StageError> {
        let rendered = self
            .render(&event)
            .map_err(|e| StageError::fatal(format!("template rendering failed: {e}")))?;
        event.payload = match self.format {
            Format::Text => serde_json::Value::String(rendered),
            Format::Json => serde_json::from_str(&rendered).map_err(|e| {
                StageError::fatal(format!(
                    "template output is not valid JSON ({e}); it begins: {}",
                    truncate(&rendered, 200)
                ))
            })?,
        };
        Ok(vec![event])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v1, leadshark_v2, spanned};
    use serde_json::json;

    fn transform(text: &str) -> Arc<dyn Transform> {
        build(&config("template", text), &ctx()).expect("builds")
    }

    fn render(text: &str, payload: serde_json::Value) -> Result<serde_json::Value, StageError> {
        Ok(transform(text)
            .apply(event("email.captured", payload))?
            .remove(0)
            .payload)
    }

    /// F12 of the bulkheads issue: a name that closes the string and adds a key.
    #[test]
    fn inserted_text_cannot_change_the_json_structure() {
        let text = r#"template = '{"text":"New lead: {{ payload.data.lead.name }}", "tags": {{ payload.data.tags }}}'"#;
        let name = "x\", \"channel\": \"#general";
        let out = render(
            text,
            json!({"data": {"lead": {"name": name}, "tags": ["a\"b", 1]}}),
        )
        .expect("renders valid JSON");
        assert_eq!(
            out,
            json!({"text": format!("New lead: {name}"), "tags": ["a\"b", 1]})
        );
        // Control characters and backslashes too.
        let out = render(
            r#"template = '{"t":"{{ payload.s }}"}'"#,
            json!({"s": "a\\\n\u{1}b"}),
        )
        .expect("renders");
        assert_eq!(out, json!({"t": "a\\\n\u{1}b"}));
    }

    /// A render that would loop over a huge payload runs out of fuel: fatal, with the reason.
    #[test]
    fn a_runaway_render_is_stopped_by_its_budget() {
        let text = r#"template = '{"n": {% for a in payload.xs %}{% for b in payload.xs %}{% endfor %}{% endfor %}1}'"#;
        let xs: Vec<u32> = (0..3000).collect();
        let err = render(text, json!({"xs": xs})).expect_err("out of fuel");
        assert!(format!("{err:?}").contains("fuel"), "{err:?}");
    }

    #[test]
    fn slack_message_renders_valid_json() {
        let text = r#"template = '''{"text": {{ ("New lead " ~ payload.data.lead.name ~ " \"" ~ payload.data.automation.name ~ "\"") | tojson }}}'''"#;
        assert_eq!(
            render(text, leadshark_v1()),
            Ok(json!({"text": "New lead John Doe \"Q4 Marketing Guide\""}))
        );
        assert_eq!(
            render(text, leadshark_v2()),
            Ok(json!({"text": "New lead John Doe \"\""}))
        );
    }

    #[test]
    fn passes_objects_through_with_key_order_and_metadata() {
        let text = r#"template = '{"lead": {{ payload.data.lead | tojson }}, "type": {{ event.type | tojson }}, "h": {{ headers["x-webhook-event"] | tojson }}}'"#;
        let out = render(text, leadshark_v2()).expect("renders");
        assert_eq!(out["type"], "email.captured");
        assert_eq!(out["h"], "email.captured");
        let keys: Vec<_> = out["lead"]
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["name", "email", "actor_id"]);
    }

    #[test]
    fn text_format_and_strict_mode() {
        let text = "format = \"text\"\ntemplate = \"{{ event.type }}: {{ payload.data.automation.name }}\"";
        assert_eq!(
            render(text, leadshark_v1()),
            Ok(json!("email.captured: Q4 Marketing Guide"))
        );
        assert_eq!(render(text, leadshark_v2()), Ok(json!("email.captured: ")));
        let err = render(&format!("{text}\nstrict = true"), leadshark_v2()).expect_err("strict");
        assert!(!err.is_retryable());
        assert!(
            err.message().starts_with("template rendering failed"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn loops_sets_and_globals_pass_the_checks() {
        let text = r#"format = "text"
template = '{% set ns = namespace(n=0) %}{% for i in payload.items %}{{ loop.index }}{{ i }}{% set ns.n = ns.n + 1 %}{% endfor %}/{{ ns.n }}/{{ range(3) | list | length }}'"#;
        assert_eq!(
            render(text, json!({"items": ["a", "b"]})),
            Ok(json!("1a2b/2/3"))
        );
    }

    #[test]
    fn invalid_json_output_is_fatal_and_quoted() {
        let err = render(
            "template = '{\"text\": {{ payload.data.lead.name }}}'",
            leadshark_v1(),
        )
        .expect_err("json");
        assert!(!err.is_retryable());
        assert!(
            err.message().contains("begins: {\"text\": John Doe}"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn config_errors_are_located() {
        for (text, quoted, message) in [
            (
                "template = '{{ payload.x '",
                "'{{ payload.x '",
                "invalid template: syntax error",
            ),
            (
                "template = '{{ paylod.x }}'",
                "'{{ paylod.x }}'",
                "unknown variable(s) in template: paylod;",
            ),
            (
                "template = '{{ payload | tojsn }}'",
                "'{{ payload | tojsn }}'",
                "unknown filter",
            ),
        ] {
            let err = build(&config("template", text), &ctx()).expect_err(text);
            assert_eq!(spanned(text, &err), quoted);
            assert!(err.message.contains(message), "{}", err.message);
        }
        let text = "template = 'x'\nformat = \"yaml\"";
        assert_eq!(
            spanned(
                text,
                &build(&config("template", text), &ctx()).expect_err("format")
            ),
            "\"yaml\""
        );
        let text = "template = 'x'\nstric = true";
        assert_eq!(
            spanned(
                text,
                &build(&config("template", text), &ctx()).expect_err("unknown")
            ),
            "stric"
        );
    }
}
