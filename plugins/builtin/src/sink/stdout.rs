//! `stdout` sink: prints each event as one line of JSON on standard output.
//!
//! ```toml
//! { sink = "stdout" }
//! { sink = "stdout", envelope = true }
//! ```
//!
//! Handy while writing a pipeline and under a supervisor that collects stdout. Each line is
//! written whole under the process's stdout lock, on a blocking thread so a slow reader
//! never stalls the runtime; a write error (a closed pipe) is retryable.

use std::sync::Arc;

use hookline_plugin_api::{
    BuildContext, ConfigError, Event, PluginConfig, Sink, StageError, async_trait,
};
use serde::Deserialize;
use std::io::Write;

/// Config of the `stdout` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// Print the envelope (`id`, `source`, `type`, `received_at`, `payload`) instead of the
    /// bare payload. Default `false`.
    #[serde(default)]
    pub envelope: bool,
}

pub fn build(config: &PluginConfig<'_>, _ctx: &BuildContext) -> Result<Arc<dyn Sink>, ConfigError> {
    let cfg: StdoutSinkConfig = config.parse()?;
    Ok(Arc::new(StdoutSink {
        envelope: cfg.envelope,
    }))
}

/// Runtime form of the `stdout` sink.
#[derive(Debug)]
pub struct StdoutSink {
    envelope: bool,
}

impl StdoutSink {
    fn line(&self, event: &Event) -> Result<Vec<u8>, StageError> {
        let mut line = crate::support::encode(event, self.envelope)?;
        line.push(b'\n');
        Ok(line)
    }
}

#[async_trait]
impl Sink for StdoutSink {
    async fn deliver(&self, event: &Event) -> Result<(), StageError> {
        let line = self.line(event)?;
        let written = tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&line)?;
            out.flush()
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StageError::retryable(format!(
                "cannot write to stdout: {e}"
            ))),
            Err(e) => Err(StageError::retryable(format!("stdout writer failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, ctx, event, leadshark_v2, spanned};

    fn sink(text: &str) -> StdoutSink {
        let cfg: StdoutSinkConfig = config("stdout", text).parse().expect("parses");
        StdoutSink {
            envelope: cfg.envelope,
        }
    }

    #[test]
    fn one_line_of_payload_or_envelope() {
        let e = event("email.captured", leadshark_v2());
        let line = sink("").line(&e).expect("line");
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&line).expect("json"),
            leadshark_v2()
        );
        let line = sink("envelope = true").line(&e).expect("line");
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(v["id"], e.id);
        assert_eq!(v["payload"], leadshark_v2());
    }

    #[tokio::test]
    async fn delivers() {
        let s = build(&config("stdout", ""), &ctx()).expect("builds");
        s.deliver(&event("t", serde_json::json!({"stdout": "sink test"})))
            .await
            .expect("delivered");
    }

    #[test]
    fn unknown_key_is_located() {
        let text = "envelop = true";
        assert_eq!(
            spanned(
                text,
                &build(&config("stdout", text), &ctx()).expect_err("unknown")
            ),
            "envelop"
        );
    }
}
