//! Names on the wire: subjects, consumer names, message ids and the headers that carry a
//! delivery's progress. Pure functions, so the rules are tested without a server.
//!
//! Subjects are built from config names only: `<prefix>.events.<source>.<type>`, where the
//! type is the source's metric label for the event (a declared type, or `other`), so no
//! payload text can create subjects (the same rule as metric labels). Retries and replays of
//! a pipeline go to `<prefix>.retry.<pipeline>`.

use sha2::{Digest, Sha256};

/// A config name as a subject token or consumer name: letters, digits, `-` and `_` kept,
/// anything else becomes `_`. A name that had to change gets a short hash of the original,
/// so two names never share a token (`a.b` and `a_b` stay apart).
pub(crate) fn token(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean == name && !clean.is_empty() {
        clean
    } else {
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        format!("{clean}-{}", &digest[..8])
    }
}

/// The subjects of one deployment (one `subject_prefix`).
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub(crate) fn new(prefix: &str) -> Self {
        Subjects {
            prefix: prefix.to_string(),
        }
    }

    /// What the stream captures.
    pub(crate) fn stream_subjects(&self) -> Vec<String> {
        vec![
            format!("{}.events.>", self.prefix),
            format!("{}.retry.>", self.prefix),
        ]
    }

    /// Where an event of `source` goes; `type_label` is the source's metric label for its
    /// type (declared, or `other`).
    pub(crate) fn event(&self, source: &str, type_label: &str) -> String {
        format!(
            "{}.events.{}.{}",
            self.prefix,
            token(source),
            token(type_label)
        )
    }

    /// Where retries and replays of a pipeline go.
    pub(crate) fn retry(&self, pipeline: &str) -> String {
        format!("{}.retry.{}", self.prefix, token(pipeline))
    }

    /// What a pipeline's event consumer listens to. Exact event names become their
    /// subjects plus the source's `other` subject: whether an ingest process publishes a
    /// type under its own name or as `other` depends on the types *its* config declares, and
    /// the filter must catch both (during a reload or a rolling deploy they differ). A glob
    /// (`new.*`) needs every event of the source. The worker checks the pipeline's `events`
    /// itself either way and acknowledges what is not for it.
    pub(crate) fn pipeline_filters(&self, source: &str, events: &[String]) -> Vec<String> {
        let is_glob = |p: &str| p.contains(['*', '?', '[', '{', '\\']);
        if events.iter().any(|p| is_glob(p)) {
            return vec![format!("{}.events.{}.*", self.prefix, token(source))];
        }
        let mut out: Vec<String> = Vec::new();
        for label in events.iter().map(String::as_str).chain(["other"]) {
            let subject = self.event(source, label);
            if !out.contains(&subject) {
                out.push(subject);
            }
        }
        out
    }
}

/// Whether `subject` is one of those `filter` names (`*`: one token, `>`: the rest).
pub(crate) fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut want = filter.split('.');
    let mut have = subject.split('.');
    loop {
        match (want.next(), have.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(w), Some(h)) if w == h => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Durable consumer of a pipeline's fresh events.
pub(crate) fn events_consumer(pipeline: &str) -> String {
    format!("events-{}", token(pipeline))
}

/// Durable consumer of a pipeline's retries and replays. Separate from the events consumer
/// so that retries waiting for their time never hold up fresh events.
pub(crate) fn retry_consumer(pipeline: &str) -> String {
    format!("retry-{}", token(pipeline))
}

/// `Nats-Msg-Id` for JetStream's duplicate window: the source and the idempotency key, the
/// pair the SQLite journal keys its dedupe table on. Long or unusual keys are hashed.
pub(crate) fn message_id(source: &str, key: &str) -> String {
    let plain = format!("{source}:{key}");
    if plain.len() <= 200 && plain.chars().all(|c| c.is_ascii_graphic()) {
        plain
    } else {
        let mut h = Sha256::new();
        h.update(source.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        format!("{}:sha256:{}", token(source), hex::encode(h.finalize()))
    }
}

/// Header names Hookline puts on its messages.
pub(crate) mod header {
    /// The event's id, on every event message: how a duplicate finds the first event's id.
    pub(crate) const EVENT_ID: &str = "Hookline-Event-Id";
    pub(crate) const PIPELINE: &str = "Hookline-Pipeline";
    /// Stage the delivery resumes at.
    pub(crate) const STAGE: &str = "Hookline-Stage";
    /// That stage's name, when known (percent-encoded: a name may be any string).
    pub(crate) const STAGE_NAME: &str = "Hookline-Stage-Name";
    /// Attempts already made at that stage.
    pub(crate) const ATTEMPTS: &str = "Hookline-Attempts";
    /// Unix milliseconds.
    pub(crate) const FIRST_FAILED_AT: &str = "Hookline-First-Failed-At";
    /// Not to run before this (unix milliseconds).
    pub(crate) const NOT_BEFORE: &str = "Hookline-Not-Before";
    /// Stream sequence of the original event (for `replay --from-start`).
    pub(crate) const ORIGIN: &str = "Hookline-Origin";
}

/// What a header value cannot carry as it is: control characters (a line break would end
/// the header), spaces (trimmed at the ends), and `%` itself.
const HEADER_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');

/// A delivery's progress, carried in the headers of a retry message (its body is the event
/// as it enters `stage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) pipeline: String,
    pub(crate) stage: usize,
    /// The name of the stage at `stage` (see `Delivery::stage_name`).
    pub(crate) stage_name: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) first_failed_at: Option<i64>,
    pub(crate) not_before: i64,
    pub(crate) origin: Option<u64>,
}

impl Progress {
    pub(crate) fn to_headers(&self) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(header::PIPELINE, self.pipeline.as_str());
        h.insert(header::STAGE, self.stage.to_string().as_str());
        if let Some(name) = &self.stage_name {
            let encoded = percent_encoding::utf8_percent_encode(name, HEADER_VALUE).to_string();
            h.insert(header::STAGE_NAME, encoded.as_str());
        }
        h.insert(header::ATTEMPTS, self.attempts.to_string().as_str());
        if let Some(t) = self.first_failed_at {
            h.insert(header::FIRST_FAILED_AT, t.to_string().as_str());
        }
        h.insert(header::NOT_BEFORE, self.not_before.to_string().as_str());
        if let Some(o) = self.origin {
            h.insert(header::ORIGIN, o.to_string().as_str());
        }
        h
    }

    /// `None` when a required header is missing or not a number.
    pub(crate) fn from_headers(h: &async_nats::HeaderMap) -> Option<Progress> {
        let get = |name: &str| h.get(name).map(|v| v.as_str().to_string());
        let num = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok());
        Some(Progress {
            pipeline: get(header::PIPELINE)?,
            stage: get(header::STAGE)?.parse().ok()?,
            // Absent on messages written before names were kept: resumed by position.
            stage_name: get(header::STAGE_NAME).and_then(|v| {
                percent_encoding::percent_decode_str(&v)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned())
            }),
            attempts: get(header::ATTEMPTS)?.parse().ok()?,
            first_failed_at: num(header::FIRST_FAILED_AT),
            not_before: num(header::NOT_BEFORE)?,
            origin: get(header::ORIGIN).and_then(|v| v.parse().ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_safe_and_distinct() {
        assert_eq!(token("crm-sync"), "crm-sync");
        assert_eq!(token("leadshark_2"), "leadshark_2");
        let dotted = token("email.captured");
        assert!(dotted.starts_with("email_captured-"), "{dotted}");
        assert_ne!(token("a.b"), token("a_b"));
        assert_ne!(token("a.b"), token("a b"));
        for weird in [
            "",
            "*",
            ">",
            "a.*.>",
            "ünïcode",
            "x y\tz",
            &"long".repeat(50),
        ] {
            let t = token(weird);
            assert!(!t.is_empty() && t.len() <= 64 + 9, "{t}");
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{t}"
            );
        }
    }

    #[test]
    fn subjects_come_from_config_names() {
        let s = Subjects::new("hookline");
        assert_eq!(
            s.event("leadshark", "other"),
            "hookline.events.leadshark.other"
        );
        assert_eq!(s.retry("crm"), "hookline.retry.crm");
        assert_eq!(
            s.stream_subjects(),
            vec!["hookline.events.>", "hookline.retry.>"]
        );
    }

    #[test]
    fn pipeline_filters_use_exact_subjects_where_they_can() {
        let s = Subjects::new("h");
        let exact = s.pipeline_filters(
            "ls",
            &["email.captured".into(), "new.like".into(), "custom".into()],
        );
        assert_eq!(
            exact,
            vec![
                s.event("ls", "email.captured"),
                s.event("ls", "new.like"),
                s.event("ls", "custom"),
                s.event("ls", "other"),
            ],
            "each name, and `other` for ingest processes that do not declare it"
        );
        assert_eq!(
            s.pipeline_filters("ls", &["other".into()]),
            vec![s.event("ls", "other")]
        );
        assert_eq!(
            s.pipeline_filters("ls", &["new.*".into(), "email.captured".into()]),
            vec!["h.events.ls.*"]
        );
        assert_eq!(
            s.pipeline_filters("ls", &["*".into()]),
            vec!["h.events.ls.*"]
        );
    }

    #[test]
    fn filters_match_subjects_token_by_token() {
        assert!(subject_matches("h.events.ls.*", "h.events.ls.other"));
        assert!(subject_matches("h.events.>", "h.events.ls.other"));
        assert!(subject_matches("h.events.ls.other", "h.events.ls.other"));
        assert!(!subject_matches("h.events.ls.*", "h.events.ls"));
        assert!(!subject_matches("h.events.ls.*", "h.events.ls2.other"));
        assert!(!subject_matches("h.events.ls.new", "h.events.ls.other"));
        assert!(!subject_matches("h.events.>", "h.events"));
    }

    #[test]
    fn consumers_do_not_collide() {
        assert_eq!(events_consumer("crm"), "events-crm");
        assert_eq!(retry_consumer("crm"), "retry-crm");
        assert_ne!(events_consumer("a.b"), events_consumer("a_b"));
    }

    #[test]
    fn message_ids_key_on_source_and_key() {
        assert_eq!(message_id("leadshark", "abc"), "leadshark:abc");
        assert_ne!(message_id("a", "k"), message_id("b", "k"));
        let hashed = message_id("s", &"x y".repeat(100));
        assert!(hashed.starts_with("s:sha256:"), "{hashed}");
        assert_eq!(hashed, message_id("s", &"x y".repeat(100)));
        assert!(message_id("s", "line\r\nbreak").starts_with("s:sha256:"));
    }

    #[test]
    fn progress_round_trips_through_headers() {
        let p = Progress {
            pipeline: "crm".into(),
            stage: 2,
            stage_name: Some(" http%2 \r\nnäme ".into()),
            attempts: 3,
            first_failed_at: Some(1_700_000_000_000),
            not_before: 1_700_000_005_000,
            origin: Some(42),
        };
        assert_eq!(Progress::from_headers(&p.to_headers()), Some(p.clone()));
        let encoded = p.to_headers();
        let on_the_wire = encoded.get(header::STAGE_NAME).expect("name").as_str();
        assert!(!on_the_wire.contains(['\r', '\n', ' ']), "{on_the_wire}");
        let bare = Progress {
            stage_name: None,
            first_failed_at: None,
            origin: None,
            ..p
        };
        assert_eq!(Progress::from_headers(&bare.to_headers()), Some(bare));
        assert_eq!(Progress::from_headers(&async_nats::HeaderMap::new()), None);
    }
}
