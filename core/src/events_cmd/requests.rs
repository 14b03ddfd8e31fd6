//! `hookline events requests | request ID | rerun ID`: the requests that passed verification
//! but could not become events, straight on the journal. `rerun` builds the config (as
//! `hookline check` does, so its secrets must resolve) and runs the request through its
//! source's steps after the signature check; a running `hookline serve` delivers the event
//! within a fraction of a second, a stopped one at its next start.

use std::path::Path;

use anyhow::bail;
use hookline_plugin_api::Registry;

use crate::journal::{Journal, UnprocessableRequest};
use crate::rerun::Outcome;

pub(crate) async fn list(
    journal: &dyn Journal,
    cursor: Option<String>,
    limit: u64,
    json: bool,
) -> anyhow::Result<()> {
    let page = journal.list_requests(cursor, limit.clamp(1, 500)).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    if page.items.is_empty() {
        outln!("no unprocessable requests");
    }
    for r in &page.items {
        outln!(
            "{:<36}  {:<19}  {:<14}  {:<13}  {}",
            r.id,
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.source,
            state(r),
            r.reason
        );
    }
    if let Some(next) = page.next {
        outln!("more: --cursor {next}");
    }
    Ok(())
}

fn state(r: &UnprocessableRequest) -> String {
    match &r.event_id {
        Some(_) => "rerun".into(),
        None => "unprocessable".into(),
    }
}

pub(crate) async fn show(journal: &dyn Journal, id: String, json: bool) -> anyhow::Result<()> {
    let Some(r) = journal.get_request(id.clone()).await? else {
        bail!("no unprocessable request {id}");
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    outln!("request   {}", r.id);
    outln!("source    {}", r.source);
    outln!("received  {}", r.received_at);
    outln!("reason    {}", r.reason);
    outln!("state     {}", state(&r));
    if let Some(event) = &r.event_id {
        outln!("event     {event}");
    }
    outln!("headers");
    for (name, value) in &r.headers {
        outln!("  {name}: {value}");
    }
    outln!("body");
    outln!("{}", r.body.as_deref().unwrap_or_default());
    Ok(())
}

pub(crate) async fn rerun(
    journal: &dyn Journal,
    config: &Path,
    registry: &Registry,
    id: String,
) -> anyhow::Result<()> {
    let loaded =
        crate::runtime::load::load_with(config, registry, crate::runtime::load::Mode::Check)
            .map_err(|d| anyhow::anyhow!("{d}"))?;
    match crate::rerun::rerun(journal, &loaded.runtime, &id).await? {
        Outcome::Rerun {
            event_id,
            pipelines,
        } => outln!(
            "re-ran {id} as event {event_id}, queued for {pipelines} pipeline(s); a running `hookline serve` delivers it now, a stopped one at its next start"
        ),
        Outcome::Already { event_id } => {
            outln!("{id} was re-run before, as event {event_id}: nothing new")
        }
        Outcome::NotFound => bail!("no unprocessable request {id}"),
        Outcome::Unprocessable(why) => bail!("still cannot be processed: {why}"),
    }
    Ok(())
}
