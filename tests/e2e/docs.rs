//! The configuration reference documents every key: a config field without an entry fails
//! here. Field lists come from the config structs themselves (serde introspection), so a new
//! field cannot be added without its documentation.

use hookline::config::RetryPolicy;
use hookline::config::{
    AdminConfig, CircuitPolicy, NatsConfig, PluginsConfig, ServerConfig, SourceConfig,
    StorageConfig, pipeline_keys, stage_keys,
};
use hookline::respond::RespondConfig;
use hookline::verify::ed25519::Ed25519Config;
use hookline::verify::{
    github::GithubConfig, hmac::HmacConfig, leadshark::LeadsharkConfig, shopify::ShopifyConfig,
    slack::SlackConfig, standard_webhooks::StandardWebhooksConfig, stripe::StripeConfig,
    twilio::TwilioConfig,
};
use hookline_builtin::filter::{
    cel::CelFilterConfig, event::EventFilterConfig, field::FieldFilterConfig,
};
use hookline_builtin::sink::{
    amqp::AmqpSinkConfig, file::FileSinkConfig, http::HttpSinkConfig, http::SigningConfig,
    nats::NatsSinkConfig, postgres::PostgresSinkConfig, sqlite::SqliteSinkConfig,
    stdout::StdoutSinkConfig,
};
use hookline_builtin::transform::{
    remove::RemoveConfig, rename::RenameConfig, set::SetConfig, template::TemplateConfig,
};
use serde_aux::serde_introspection::serde_introspect;

fn doc(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text under the first heading containing `heading`, up to the next heading of the
/// same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let lines: Vec<(usize, &str)> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain([0])
        .map(|i| (i, &text[i..]))
        .collect();
    let start = lines
        .iter()
        .filter(|(_, l)| l.starts_with('#'))
        .find(|(_, l)| l.lines().next().is_some_and(|h| h.contains(heading)))
        .unwrap_or_else(|| panic!("no heading containing {heading:?}"));
    let level = start.1.chars().take_while(|c| *c == '#').count();
    let body_from = start.0 + start.1.find('\n').unwrap_or(0);
    let rest = &text[body_from..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let l = &rest[i..];
            let hashes = l.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && l[hashes..].starts_with(' ')
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

fn assert_documented(file: &str, heading: &str, keys: &[&str]) {
    let text = doc(file);
    let body = section(&text, heading);
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|k| !body.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/{file}, section {heading:?}: no table row for {missing:?}"
    );
}

#[test]
fn every_config_key_has_an_entry_in_the_reference() {
    assert_documented(
        "configuration.md",
        "`[server]`",
        serde_introspect::<ServerConfig>(),
    );
    assert_documented(
        "configuration.md",
        "`[storage]`",
        serde_introspect::<StorageConfig>(),
    );
    assert_documented(
        "configuration.md",
        "`[storage.nats]`",
        serde_introspect::<NatsConfig>(),
    );
    assert_documented(
        "configuration.md",
        "`[admin]`",
        serde_introspect::<AdminConfig>(),
    );
    assert_documented(
        "configuration.md",
        "`[plugins]`",
        serde_introspect::<PluginsConfig>(),
    );
    assert_documented(
        "configuration.md",
        "`[[sources]]`",
        serde_introspect::<SourceConfig>(),
    );
    assert_documented("configuration.md", "`[[pipelines]]`", pipeline_keys());
    assert_documented("configuration.md", "Stages", stage_keys());
    assert_documented(
        "configuration.md",
        "Stages",
        serde_introspect::<RetryPolicy>(),
    );
    assert_documented(
        "configuration.md",
        "Stages",
        serde_introspect::<CircuitPolicy>(),
    );
}

#[test]
fn every_plugin_key_has_an_entry() {
    assert_documented(
        "plugins.md",
        "`event`",
        serde_introspect::<EventFilterConfig>(),
    );
    assert_documented(
        "plugins.md",
        "`field`",
        serde_introspect::<FieldFilterConfig>(),
    );
    assert_documented("plugins.md", "`cel`", serde_introspect::<CelFilterConfig>());
    assert_documented("plugins.md", "`set`", serde_introspect::<SetConfig>());
    assert_documented("plugins.md", "`remove`", serde_introspect::<RemoveConfig>());
    assert_documented("plugins.md", "`rename`", serde_introspect::<RenameConfig>());
    assert_documented(
        "plugins.md",
        "`template`",
        serde_introspect::<TemplateConfig>(),
    );
    assert_documented("plugins.md", "`file`", serde_introspect::<FileSinkConfig>());
    assert_documented(
        "plugins.md",
        "`stdout`",
        serde_introspect::<StdoutSinkConfig>(),
    );
    assert_documented("plugins.md", "`http`", serde_introspect::<HttpSinkConfig>());
    assert_documented("plugins.md", "`http`", serde_introspect::<SigningConfig>());
    assert_documented(
        "plugins.md",
        "`sqlite`",
        serde_introspect::<SqliteSinkConfig>(),
    );
    assert_documented(
        "plugins.md",
        "`postgres`",
        serde_introspect::<PostgresSinkConfig>(),
    );
    assert_documented(
        "plugins.md",
        "`nats` —",
        serde_introspect::<NatsSinkConfig>(),
    );
    assert_documented(
        "plugins.md",
        "`amqp` —",
        serde_introspect::<AmqpSinkConfig>(),
    );
}

#[test]
fn every_verification_key_has_an_entry() {
    assert_documented(
        "verification.md",
        "`leadshark`",
        serde_introspect::<LeadsharkConfig>(),
    );
    assert_documented(
        "verification.md",
        "`standard-webhooks`",
        serde_introspect::<StandardWebhooksConfig>(),
    );
    assert_documented(
        "verification.md",
        "`github`",
        serde_introspect::<GithubConfig>(),
    );
    assert_documented(
        "verification.md",
        "`stripe`",
        serde_introspect::<StripeConfig>(),
    );
    assert_documented(
        "verification.md",
        "`slack`",
        serde_introspect::<SlackConfig>(),
    );
    assert_documented(
        "verification.md",
        "`shopify`",
        serde_introspect::<ShopifyConfig>(),
    );
    assert_documented(
        "verification.md",
        "`hmac`",
        serde_introspect::<HmacConfig>(),
    );
    assert_documented(
        "verification.md",
        "`twilio`",
        serde_introspect::<TwilioConfig>(),
    );
    assert_documented(
        "verification.md",
        "`ed25519`",
        serde_introspect::<Ed25519Config>(),
    );
    assert_documented(
        "verification.md",
        "Answering with `respond`",
        serde_introspect::<RespondConfig>(),
    );
}
