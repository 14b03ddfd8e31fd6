//! Typed models of LeadShark webhook payloads.
//!
//! LeadShark's docs page (Feb 2026) shows four events in a "v1" shape. Since May 2026 it also
//! sends `lead.sent` and an additive "v2" shape: an optional `"payload_version": 2`,
//! `data.lead` on every event (with `actor_id`), optional `data.post`, `data.reaction` and
//! `data.visit` objects, and `data.automation` as an explicit `null` when there is none. The
//! legacy fields (`commenter_id`, `reactor_id`, `post_id`, `post_url`, `visitor`,
//! `profile_owner`) keep being sent.
//!
//! So every model here:
//! - requires nothing beyond `event` and `data` at parse time (fields the docs call required
//!   are checked separately by [`LeadSharkEvent::required_fields_missing`], so a signed but
//!   incomplete event can be dead-lettered with a reason instead of failing to parse);
//! - keeps unknown keys in an `extra` map, so serialising a model gives back the JSON it was
//!   parsed from (as a JSON value; key order may differ);
//! - turns an event type it does not know into [`LeadSharkEvent::Other`] instead of an error.
//!
//! One loss on re-serialisation is accepted: an explicit `null` on an optional field comes
//! back as an absent key — except `data.automation`, whose `null` is documented and kept.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The event types with a typed model, in the order of [`samples::sample`]'s fixtures.
/// (`dm.sent` exists in older docs, but no payload shape is documented: it parses as
/// [`LeadSharkEvent::Other`].)
pub const EVENT_TYPES: &[&str] = &[
    "email.captured",
    "new.profile.visit",
    "new.like",
    "new.comment",
    "lead.sent",
];

/// Declares a payload model the way every model here is: each field optional (`None` when
/// absent, left out when serialising), and unknown keys kept in `extra` so that serialising
/// gives back what was parsed.
macro_rules! model {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: Option<$ty:ty>,)* }) => {
        $(#[$meta])*
        #[serde_with::skip_serializing_none]
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: Option<$ty>,)*
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }
    };
}

/// The fields every LeadShark payload shares; `D` is the event's `data` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<D> {
    pub event: String,
    /// RFC 3339 text as sent (`+00:00` and `Z` both occur); kept as text so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// `2` on v2 payloads; absent on v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_version: Option<u64>,
    pub data: D,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub type EmailCapturedEvent = Envelope<EmailCapturedData>;
pub type ProfileVisitEvent = Envelope<ProfileVisitData>;
pub type LikeEvent = Envelope<LikeData>;
pub type CommentEvent = Envelope<CommentData>;
pub type LeadSentEvent = Envelope<LeadSentData>;
/// `data` of `email.captured`.
pub type EmailCapturedData = LeadAutomationData;
/// `data` of `lead.sent`.
pub type LeadSentData = LeadAutomationData;

model! {
    /// `data` of `email.captured` (a lead gave their email to an automation) and of
    /// `lead.sent` (May 2026; only a v2 shape exists): the same fields.
    pub struct LeadAutomationData {
        pub lead: Option<Lead>,
        /// `None`: absent; `Some(None)`: explicit `null` (v2, no automation).
        #[serde(deserialize_with = "explicit_null", skip_serializing_if = "Option::is_none")]
        pub automation: Option<Option<Automation>>,
        pub post: Option<Post>,
    }
}

model! {
    /// `data` of `new.profile.visit`: v1 has `visitor` and `profile_owner`; v2 adds `lead` and
    /// `visit`.
    pub struct ProfileVisitData {
        pub visitor: Option<Profile>,
        pub profile_owner: Option<Profile>,
        pub lead: Option<Lead>,
        pub visit: Option<Visit>,
    }
}

model! {
    /// `data` of `new.like`.
    pub struct LikeData {
        pub lead: Option<Lead>,
        #[serde(deserialize_with = "explicit_null", skip_serializing_if = "Option::is_none")]
        pub automation: Option<Option<Automation>>,
        /// Legacy (v1): the post's URN. v2 also sends `post.id`.
        pub post_id: Option<String>,
        pub post_url: Option<String>,
        pub reactor_id: Option<String>,
        pub post: Option<Post>,
        pub reaction: Option<Reaction>,
    }
}

model! {
    /// `data` of `new.comment`.
    pub struct CommentData {
        pub lead: Option<Lead>,
        pub comment: Option<Comment>,
        #[serde(deserialize_with = "explicit_null", skip_serializing_if = "Option::is_none")]
        pub automation: Option<Option<Automation>>,
        pub commenter_id: Option<String>,
        pub post_id: Option<String>,
        pub post_url: Option<String>,
        pub post: Option<Post>,
    }
}

model! {
    /// The person an event is about. Every field is optional: v1 events each carry a different
    /// subset, and `actor_id` only exists from v2 on.
    pub struct Lead {
        /// LinkedIn member id (`ACoA…`), v2.
        pub actor_id: Option<String>,
        pub name: Option<String>,
        pub title: Option<String>,
        pub email: Option<String>,
        pub linkedin_username: Option<String>,
        pub linkedin_url: Option<String>,
        /// Free text as LeadShark words it ("Connected", "2nd Connection").
        pub connection_status: Option<String>,
    }
}

model! {
    /// `visitor` / `profile_owner` of `new.profile.visit`.
    pub struct Profile {
        pub id: Option<String>,
        pub name: Option<String>,
        pub title: Option<String>,
        pub linkedin_url: Option<String>,
    }
}

model! {
    pub struct Automation {
        pub id: Option<String>,
        pub name: Option<String>,
    }
}

model! {
    /// `data.comment` of `new.comment`.
    pub struct Comment {
        pub id: Option<String>,
        pub text: Option<String>,
        pub created_at: Option<String>,
    }
}

model! {
    /// `data.post` (v2).
    pub struct Post {
        pub id: Option<String>,
        pub url: Option<String>,
    }
}

model! {
    /// `data.reaction` (v2, `new.like`).
    pub struct Reaction {
        pub id: Option<String>,
    }
}

model! {
    /// `data.visit` (v2, `new.profile.visit`).
    pub struct Visit {
        pub id: Option<String>,
    }
}

/// Keeps an explicit `null` apart from an absent key (which `#[serde(default)]` makes `None`).
fn explicit_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A LeadShark payload, typed by its `event` field.
#[derive(Debug, Clone, PartialEq)]
pub enum LeadSharkEvent {
    EmailCaptured(EmailCapturedEvent),
    ProfileVisit(ProfileVisitEvent),
    Like(LikeEvent),
    Comment(CommentEvent),
    LeadSent(LeadSentEvent),
    /// An event type without a model (`dm.sent`, types added after this was written): it
    /// flows through pipelines untouched.
    Other {
        event: String,
        payload: Value,
    },
}

impl LeadSharkEvent {
    /// Type a payload. Errors only when it is not an object with a string `event`, or when a
    /// known event has a field of the wrong JSON type (or no `data` object).
    pub fn from_value(v: &Value) -> Result<LeadSharkEvent, String> {
        let event = match v {
            Value::Object(map) => match map.get("event") {
                Some(Value::String(event)) => event.as_str(),
                _ => return Err("payload has no string `event` field".to_string()),
            },
            _ => return Err("payload is not a JSON object".to_string()),
        };
        Ok(match event {
            "email.captured" => LeadSharkEvent::EmailCaptured(typed(event, v)?),
            "new.profile.visit" => LeadSharkEvent::ProfileVisit(typed(event, v)?),
            "new.like" => LeadSharkEvent::Like(typed(event, v)?),
            "new.comment" => LeadSharkEvent::Comment(typed(event, v)?),
            "lead.sent" => LeadSharkEvent::LeadSent(typed(event, v)?),
            _ => LeadSharkEvent::Other {
                event: event.to_string(),
                payload: v.clone(),
            },
        })
    }

    /// Type a payload straight from its JSON text, without building a [`Value`] first (a WASM
    /// plugin receives text): the same result as [`from_value`](Self::from_value) of the
    /// parsed text. The text is scanned once for `event` (nothing is allocated), then parsed
    /// once into the model; anything unusual (not an object, no string `event`, a duplicate
    /// key) takes the `Value` route, so errors and edge cases are `from_value`'s.
    pub fn from_json(text: &str) -> Result<LeadSharkEvent, String> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow, default)]
            event: Option<std::borrow::Cow<'a, str>>,
        }
        fn direct<T: DeserializeOwned>(text: &str) -> Option<T> {
            serde_json::from_str(text).ok()
        }
        let head = match leading_event(text) {
            Some(event) => Some(std::borrow::Cow::Borrowed(event)),
            None => serde_json::from_str::<Head<'_>>(text)
                .ok()
                .and_then(|h| h.event),
        };
        let typed = match head.as_deref() {
            Some("email.captured") => direct(text).map(LeadSharkEvent::EmailCaptured),
            Some("new.profile.visit") => direct(text).map(LeadSharkEvent::ProfileVisit),
            Some("new.like") => direct(text).map(LeadSharkEvent::Like),
            Some("new.comment") => direct(text).map(LeadSharkEvent::Comment),
            Some("lead.sent") => direct(text).map(LeadSharkEvent::LeadSent),
            _ => None,
        };
        match typed {
            Some(event) => Ok(event),
            None => {
                let v: Value =
                    serde_json::from_str(text).map_err(|e| format!("payload is not JSON: {e}"))?;
                LeadSharkEvent::from_value(&v)
            }
        }
    }

    /// The `event` field (`email.captured`, ...).
    pub fn event_type(&self) -> &str {
        match self {
            LeadSharkEvent::EmailCaptured(e) => &e.event,
            LeadSharkEvent::ProfileVisit(e) => &e.event,
            LeadSharkEvent::Like(e) => &e.event,
            LeadSharkEvent::Comment(e) => &e.event,
            LeadSharkEvent::LeadSent(e) => &e.event,
            LeadSharkEvent::Other { event, .. } => event,
        }
    }

    /// `data.lead`, when the event has one (every v2 event does).
    pub fn lead(&self) -> Option<&Lead> {
        match self {
            LeadSharkEvent::EmailCaptured(e) => e.data.lead.as_ref(),
            LeadSharkEvent::ProfileVisit(e) => e.data.lead.as_ref(),
            LeadSharkEvent::Like(e) => e.data.lead.as_ref(),
            LeadSharkEvent::Comment(e) => e.data.lead.as_ref(),
            LeadSharkEvent::LeadSent(e) => e.data.lead.as_ref(),
            LeadSharkEvent::Other { .. } => None,
        }
    }

    /// `data.automation`, unless absent or `null`.
    pub fn automation(&self) -> Option<&Automation> {
        let automation = match self {
            LeadSharkEvent::EmailCaptured(e) => &e.data.automation,
            LeadSharkEvent::Like(e) => &e.data.automation,
            LeadSharkEvent::Comment(e) => &e.data.automation,
            LeadSharkEvent::LeadSent(e) => &e.data.automation,
            LeadSharkEvent::ProfileVisit(_) | LeadSharkEvent::Other { .. } => &None,
        };
        automation.as_ref().and_then(Option::as_ref)
    }

    /// Dotted paths of fields the docs require that this event lacks (empty or blank strings
    /// count as missing). A signed event with any is malformed: dead-letter it, naming them.
    ///
    /// Only `email.captured` documents its fields; of its table, `data.lead.email` is the
    /// event's point. `data.automation.id` is not checked because v2 sends
    /// `"automation": null`, and a missing `timestamp` does not make the event unusable.
    pub fn required_fields_missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if let LeadSharkEvent::EmailCaptured(e) = self {
            let email = e.data.lead.as_ref().and_then(|l| l.email.as_deref());
            if email.is_none_or(|s| s.trim().is_empty()) {
                missing.push("data.lead.email");
            }
        }
        missing
    }

    /// Back to JSON: equal (as a value) to the payload it was parsed from.
    pub fn to_value(&self) -> Result<Value, String> {
        serde_json::to_value(self).map_err(|e| e.to_string())
    }
}

impl Serialize for LeadSharkEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LeadSharkEvent::EmailCaptured(e) => e.serialize(s),
            LeadSharkEvent::ProfileVisit(e) => e.serialize(s),
            LeadSharkEvent::Like(e) => e.serialize(s),
            LeadSharkEvent::Comment(e) => e.serialize(s),
            LeadSharkEvent::LeadSent(e) => e.serialize(s),
            LeadSharkEvent::Other { payload, .. } => payload.serialize(s),
        }
    }
}

/// `event`'s value when it is the object's first key and a plain string (LeadShark sends it
/// first): found without scanning the rest. A duplicate `event` later makes the typed parse
/// fail, which falls back to the `Value` route, so this never changes a result.
fn leading_event(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"event\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

fn typed<T: DeserializeOwned>(event: &str, v: &Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| format!("{event} payload: {e}"))
}

/// The `X-Webhook-Signature` value LeadShark would send for `body`: lower-case hex
/// HMAC-SHA256 keyed with the secret's UTF-8 bytes (for `hookline send` and tests; Hookline
/// verifies in `core/src/verify/leadshark.rs`).
#[cfg(feature = "sign")]
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Example payloads: the docs page's, verbatim, and generators for load and end-to-end tests.
pub mod samples {
    use serde_json::{Value, json};

    pub use super::EVENT_TYPES;

    /// `email.captured`, verbatim from LeadShark's docs page.
    pub const EMAIL_CAPTURED: &str = r#"{
  "event": "email.captured",
  "timestamp": "2025-09-15T11:43:42.659+00:00",
  "data": {
    "lead": {
      "name": "John Doe",
      "title": "Senior Marketing Manager",
      "email": "john.doe@example.com",
      "linkedin_username": "john-doe-12345"
    },
    "automation": {
      "id": "58c132e6-648c-4079-8815-77a3b2ec1adc",
      "name": "Q4 Marketing Guide"
    }
  }
}"#;

    /// `new.profile.visit`, verbatim from LeadShark's docs page.
    pub const PROFILE_VISIT: &str = r#"{
  "event": "new.profile.visit",
  "timestamp": "2025-09-15T11:37:21.709Z",
  "data": {
    "visitor": {
      "id": "ACoAAEXAMPLE987654321",
      "name": "Jane Smith",
      "title": "Product Manager at Innovation Labs",
      "linkedin_url": "https://linkedin.com/in/jane-smith"
    },
    "profile_owner": {
      "id": "ACoAAEXAMPLE123456789",
      "name": "Your Name"
    }
  }
}"#;

    /// `new.like`, verbatim from LeadShark's docs page.
    pub const LIKE: &str = r#"{
  "event": "new.like",
  "timestamp": "2025-09-15T12:38:50.258Z",
  "data": {
    "lead": {
      "name": "Michael Johnson",
      "title": "Sales Director",
      "linkedin_url": "https://linkedin.com/in/michael-johnson",
      "connection_status": "Connected"
    },
    "automation": { "id": "uuid", "name": "Engagement Campaign" },
    "post_id": "urn:li:activity:7372270383585984512"
  }
}"#;

    /// `new.comment`, verbatim from LeadShark's docs page.
    pub const COMMENT: &str = r#"{
  "event": "new.comment",
  "timestamp": "2025-09-15T12:42:27.124Z",
  "data": {
    "lead": {
      "name": "Sarah Wilson",
      "title": "Content Marketing Specialist",
      "linkedin_url": "https://linkedin.com/in/sarah-wilson",
      "connection_status": "2nd Connection"
    },
    "comment": {
      "id": "7371940875070795776",
      "text": "Great insights! Thanks for sharing.",
      "created_at": "2025-09-11T16:21:08.656Z"
    },
    "automation": { "id": "uuid", "name": "Content Engagement" }
  }
}"#;

    /// The docs page's payloads as `(event type, body text)`.
    pub const DOCS_PAYLOADS: &[(&str, &str)] = &[
        ("email.captured", EMAIL_CAPTURED),
        ("new.profile.visit", PROFILE_VISIT),
        ("new.like", LIKE),
        ("new.comment", COMMENT),
    ];

    /// An example payload of `event_type` (one of [`EVENT_TYPES`]), made distinct by
    /// `unique`: it goes into the person's name, LinkedIn username/URL, email and id, and
    /// `unique % 1000` into the timestamp's milliseconds. The documented events keep the
    /// docs' v1 shape; `lead.sent` has a v2 shape (`payload_version: 2`).
    pub fn sample(event_type: &str, unique: u64) -> Option<Value> {
        let mut v = match event_type {
            "lead.sent" => lead_sent_v2(),
            _ => {
                let (_, text) = DOCS_PAYLOADS.iter().find(|(t, _)| *t == event_type)?;
                serde_json::from_str(text).ok()?
            }
        };
        for person in ["/data/lead", "/data/visitor"] {
            if let Some(Value::Object(p)) = v.pointer_mut(person) {
                for (key, value) in p.iter_mut() {
                    if let Value::String(s) = value {
                        personalise(key, s, unique);
                    }
                }
            }
        }
        if let Some(Value::String(ts)) = v.pointer_mut("/timestamp") {
            set_millis(ts, unique % 1000);
        }
        Some(v)
    }

    fn personalise(key: &str, s: &mut String, unique: u64) {
        match key {
            "name" => *s = format!("{s} {unique}"),
            "linkedin_username" | "linkedin_url" | "id" | "actor_id" => {
                *s = format!("{s}-{unique}")
            }
            "email" => {
                if let Some(at) = s.find('@') {
                    s.insert_str(at, &format!("+{unique}"));
                }
            }
            _ => {}
        }
    }

    /// `2025-09-15T11:43:42.659+00:00` → `...42.<millis>+00:00`.
    fn set_millis(ts: &mut String, millis: u64) {
        if let Some(dot) = ts.find('.') {
            let end = ts[dot + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(ts.len(), |i| dot + 1 + i);
            ts.replace_range(dot + 1..end, &format!("{millis:03}"));
        }
    }

    fn lead_sent_v2() -> Value {
        json!({
            "event": "lead.sent",
            "payload_version": 2,
            "timestamp": "2026-05-09T10:15:30.123Z",
            "data": {
                "lead": {
                    "actor_id": "ACoAAEXAMPLE555000111",
                    "name": "Alex Rivera",
                    "title": "Head of Growth",
                    "email": "alex.rivera@example.com",
                    "linkedin_username": "alex-rivera",
                    "linkedin_url": "https://linkedin.com/in/alex-rivera",
                    "connection_status": "Connected"
                },
                "automation": {
                    "id": "58c132e6-648c-4079-8815-77a3b2ec1adc",
                    "name": "Q4 Marketing Guide"
                },
                "post": {
                    "id": "urn:li:activity:7372270383585984512",
                    "url": "https://www.linkedin.com/feed/update/urn:li:activity:7372270383585984512"
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{COMMENT, DOCS_PAYLOADS, EMAIL_CAPTURED, LIKE, PROFILE_VISIT, sample};
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> (Value, LeadSharkEvent) {
        let v: Value = serde_json::from_str(text).expect("fixture is JSON");
        let e = LeadSharkEvent::from_value(&v).expect("parses");
        (v, e)
    }

    fn assert_round_trip(v: &Value) -> LeadSharkEvent {
        let e = LeadSharkEvent::from_value(v).expect("parses");
        assert_eq!(&e.to_value().expect("serialises"), v, "round trip of {v}");
        e
    }

    #[test]
    fn docs_payloads_parse_into_their_variant_and_round_trip() {
        for (event_type, text) in DOCS_PAYLOADS {
            let (v, e) = parse(text);
            assert_eq!(e.event_type(), *event_type);
            assert!(
                !matches!(e, LeadSharkEvent::Other { .. }),
                "{event_type} is typed"
            );
            assert_round_trip(&v);
            assert!(e.required_fields_missing().is_empty(), "{event_type}");
        }
    }

    #[test]
    fn docs_fields_land_in_typed_fields() {
        let (_, e) = parse(EMAIL_CAPTURED);
        let LeadSharkEvent::EmailCaptured(e) = &e else {
            panic!("variant")
        };
        assert_eq!(
            e.timestamp.as_deref(),
            Some("2025-09-15T11:43:42.659+00:00")
        );
        let lead = e.data.lead.as_ref().expect("lead");
        assert_eq!(lead.email.as_deref(), Some("john.doe@example.com"));
        assert_eq!(lead.linkedin_username.as_deref(), Some("john-doe-12345"));
        assert!(lead.extra.is_empty() && e.extra.is_empty() && e.data.extra.is_empty());

        let (_, e) = parse(PROFILE_VISIT);
        let LeadSharkEvent::ProfileVisit(e) = &e else {
            panic!("variant")
        };
        assert_eq!(
            e.data.visitor.as_ref().and_then(|p| p.id.as_deref()),
            Some("ACoAAEXAMPLE987654321")
        );
        assert_eq!(
            e.data
                .profile_owner
                .as_ref()
                .and_then(|p| p.name.as_deref()),
            Some("Your Name")
        );

        let (_, e) = parse(LIKE);
        assert_eq!(
            e.automation().and_then(|a| a.name.as_deref()),
            Some("Engagement Campaign")
        );
        let LeadSharkEvent::Like(e) = &e else {
            panic!("variant")
        };
        assert_eq!(
            e.data.post_id.as_deref(),
            Some("urn:li:activity:7372270383585984512")
        );

        let (_, e) = parse(COMMENT);
        assert_eq!(
            e.lead().and_then(|l| l.connection_status.as_deref()),
            Some("2nd Connection")
        );
        let LeadSharkEvent::Comment(e) = &e else {
            panic!("variant")
        };
        let comment = e.data.comment.as_ref().expect("comment");
        assert_eq!(
            comment.text.as_deref(),
            Some("Great insights! Thanks for sharing.")
        );
    }

    #[test]
    fn v2_email_captured_with_null_automation_and_unknown_fields() {
        let v = json!({
            "event": "email.captured",
            "payload_version": 2,
            "timestamp": "2026-05-09T08:00:00.000Z",
            "delivery_id": "d-1",
            "data": {
                "lead": {
                    "actor_id": "ACoAAEXAMPLE1",
                    "name": "José Müller",
                    "email": "jose@example.com",
                    "company": {"name": "Acme", "size": 50}
                },
                "automation": null,
                "post": {"id": "urn:li:activity:1", "url": "https://linkedin.com/p/1", "kind": "image"},
                "source": "lead-magnet"
            }
        });
        let e = assert_round_trip(&v);
        assert!(e.automation().is_none());
        let LeadSharkEvent::EmailCaptured(env) = &e else {
            panic!("variant")
        };
        assert_eq!(env.payload_version, Some(2));
        assert_eq!(env.data.automation, Some(None));
        assert_eq!(env.extra["delivery_id"], "d-1");
        assert_eq!(env.data.extra["source"], "lead-magnet");
        let lead = env.data.lead.as_ref().expect("lead");
        assert_eq!(lead.actor_id.as_deref(), Some("ACoAAEXAMPLE1"));
        assert_eq!(lead.extra["company"]["size"], 50);
        assert_eq!(
            env.data.post.as_ref().and_then(|p| p.extra.get("kind")),
            Some(&json!("image"))
        );
        assert!(e.required_fields_missing().is_empty());
    }

    #[test]
    fn v2_like_comment_visit_and_lead_sent_round_trip() {
        let like = json!({
            "event": "new.like", "payload_version": 2, "timestamp": "2026-05-09T08:00:01Z",
            "data": {
                "lead": {"actor_id": "ACoA2", "name": "Zoë Ångström"},
                "automation": {"id": "a", "name": "n", "trigger": "like"},
                "post_id": "urn:li:activity:2", "post_url": "https://linkedin.com/p/2",
                "reactor_id": "ACoA2",
                "post": {"id": "urn:li:activity:2", "url": "https://linkedin.com/p/2"},
                "reaction": {"id": "r-2", "type": "PRAISE"}
            }
        });
        let e = assert_round_trip(&like);
        let LeadSharkEvent::Like(env) = &e else {
            panic!("variant")
        };
        assert_eq!(
            env.data.reaction.as_ref().and_then(|r| r.id.as_deref()),
            Some("r-2")
        );
        assert_eq!(env.data.reactor_id.as_deref(), Some("ACoA2"));

        let comment = json!({
            "event": "new.comment", "payload_version": 2, "timestamp": "2026-05-09T08:00:02Z",
            "data": {
                "lead": {"actor_id": "ACoA3", "name": "🦈 Shark"},
                "comment": {"id": "c-3", "text": "Nice", "created_at": "2026-05-09T08:00:00Z", "parent_id": null},
                "automation": null,
                "commenter_id": "ACoA3", "post_id": "urn:li:activity:3", "post_url": "https://x/3",
                "post": {"id": "urn:li:activity:3", "url": "https://x/3"}
            }
        });
        let e = assert_round_trip(&comment);
        let LeadSharkEvent::Comment(env) = &e else {
            panic!("variant")
        };
        assert_eq!(env.data.commenter_id.as_deref(), Some("ACoA3"));
        assert_eq!(env.data.automation, Some(None));

        let visit = json!({
            "event": "new.profile.visit", "payload_version": 2, "timestamp": "2026-05-09T08:00:03Z",
            "data": {
                "lead": {"actor_id": "ACoA4", "name": "Jane Smith"},
                "visit": {"id": "v-4", "visited_at": "2026-05-09T07:59:00Z"},
                "visitor": {"id": "ACoA4", "name": "Jane Smith"},
                "profile_owner": {"id": "ACoA0", "name": "Your Name"},
                "automation": null
            }
        });
        let e = assert_round_trip(&visit);
        assert_eq!(e.lead().and_then(|l| l.actor_id.as_deref()), Some("ACoA4"));
        let LeadSharkEvent::ProfileVisit(env) = &e else {
            panic!("variant")
        };
        assert_eq!(
            env.data.visit.as_ref().and_then(|v| v.id.as_deref()),
            Some("v-4")
        );
        assert_eq!(env.data.extra["automation"], Value::Null);

        let sent = sample("lead.sent", 7).expect("sample");
        let e = assert_round_trip(&sent);
        assert!(matches!(e, LeadSharkEvent::LeadSent(_)));
    }

    #[test]
    fn unknown_event_types_are_other() {
        let v = json!({"event": "dm.sent", "data": {"message": {"text": "hi"}}, "x": [1, 2]});
        let e = assert_round_trip(&v);
        assert_eq!(
            e,
            LeadSharkEvent::Other {
                event: "dm.sent".into(),
                payload: v.clone()
            }
        );
        assert!(e.required_fields_missing().is_empty());
        assert!(e.lead().is_none());
    }

    #[test]
    fn missing_email_is_reported() {
        for data in [
            json!({"lead": {"name": "No Email"}, "automation": {"id": "a"}}),
            json!({"lead": {"name": "Blank", "email": "  "}}),
            json!({"automation": null}),
        ] {
            let v = json!({"event": "email.captured", "timestamp": "t", "data": data});
            let e = LeadSharkEvent::from_value(&v).expect("still parses");
            assert_eq!(e.required_fields_missing(), vec!["data.lead.email"], "{v}");
        }
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let cases = [
            (json!([1]), "not a JSON object"),
            (json!({"data": {}}), "no string `event`"),
            (json!({"event": 5, "data": {}}), "no string `event`"),
            (json!({"event": "new.like"}), "missing field `data`"),
            (
                json!({"event": "new.like", "data": {"post_id": 5}}),
                "new.like payload: invalid type",
            ),
            (
                json!({"event": "email.captured", "data": {"lead": "x"}}),
                "email.captured payload",
            ),
            (
                json!({"event": "email.captured", "payload_version": "2", "data": {}}),
                "invalid type",
            ),
        ];
        for (v, expected) in cases {
            let err = LeadSharkEvent::from_value(&v).expect_err("rejected");
            assert!(err.contains(expected), "{v}: {err}");
        }
    }

    #[test]
    fn from_json_is_from_value_of_the_parsed_text() {
        let mut texts: Vec<String> = DOCS_PAYLOADS.iter().map(|(_, t)| t.to_string()).collect();
        texts.extend(
            EVENT_TYPES
                .iter()
                .map(|t| sample(t, 3).expect("sample").to_string()),
        );
        texts.extend(
            [
                r#"[1]"#,
                r#"{"data": {}}"#,
                r#"{"event": 5, "data": {}}"#,
                r#"{"event": "new.like"}"#,
                r#"{"event": "new.like", "data": {"post_id": 5}}"#,
                r#"{"event": "dm.sent", "data": {"x": 1}}"#,
                // A duplicate key: the last one wins, as in a `Value`.
                r#"{"event": "new.like", "data": {"post_id": "a", "post_id": "b"}}"#,
                r#"{"event": "new.like", "data": {}, "event": "lead.sent"}"#,
                r#"{ "event" : "new.l\u0069ke", "data": {}}"#,
                r#"{"event": "new.like", "data": []}"#,
                r#"{"data": {"lead": {"title": "CEO"}}, "event": "lead.sent", "extra": [1, 2.5]}"#,
            ]
            .map(String::from),
        );
        for text in texts {
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(
                LeadSharkEvent::from_json(&text),
                LeadSharkEvent::from_value(&v),
                "{text}"
            );
        }
        let err = LeadSharkEvent::from_json("{").expect_err("not JSON");
        assert!(err.starts_with("payload is not JSON"), "{err}");
    }

    #[test]
    fn samples_cover_every_event_type_and_are_unique() {
        for event_type in EVENT_TYPES {
            let a = sample(event_type, 1).expect("sample exists");
            let b = sample(event_type, 2).expect("sample exists");
            assert_ne!(a, b, "{event_type}");
            let e = assert_round_trip(&a);
            assert_eq!(e.event_type(), *event_type);
            assert!(!matches!(e, LeadSharkEvent::Other { .. }));
            assert!(e.required_fields_missing().is_empty(), "{event_type}");
        }
        assert!(sample("dm.sent", 1).is_none());

        let s = sample("email.captured", 42).expect("sample");
        assert_eq!(s["timestamp"], "2025-09-15T11:43:42.042+00:00");
        assert_eq!(s["data"]["lead"]["name"], "John Doe 42");
        assert_eq!(s["data"]["lead"]["email"], "john.doe+42@example.com");
        assert_eq!(s["data"]["lead"]["linkedin_username"], "john-doe-12345-42");
        let s = sample("new.profile.visit", 1234).expect("sample");
        assert_eq!(s["timestamp"], "2025-09-15T11:37:21.234Z");
        assert_eq!(s["data"]["visitor"]["id"], "ACoAAEXAMPLE987654321-1234");
        assert_eq!(
            sample("lead.sent", 3).expect("sample")["payload_version"],
            2
        );
    }
}
