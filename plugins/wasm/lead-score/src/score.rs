//! The scoring rule, shared with the native twin in Hookline's benchmark
//! (`core/benches/wasm_transform.rs` includes this file), so both measure the same work.

use crate::leadshark::LeadSharkEvent;

/// 0–100: how promising the person behind an event is, from what they did and their title.
pub fn score(event: &LeadSharkEvent) -> u64 {
    let by_kind = match event.event_type() {
        "email.captured" => 50,
        "new.comment" => 30,
        "lead.sent" => 25,
        "new.profile.visit" => 15,
        "new.like" => 10,
        _ => 0,
    };
    (by_kind + title_points(title(event).unwrap_or_default())).min(100)
}

/// The person's title: `data.lead.title`, or the visitor's on v1 profile visits.
pub fn title(event: &LeadSharkEvent) -> Option<&str> {
    if let Some(t) = event.lead().and_then(|l| l.title.as_deref()) {
        return Some(t);
    }
    match event {
        LeadSharkEvent::ProfileVisit(v) => v.data.visitor.as_ref()?.title.as_deref(),
        _ => None,
    }
}

fn title_points(title: &str) -> u64 {
    let t = title.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    let seniority = if has(&["ceo", "founder", "owner", "president", "chief"]) {
        40
    } else if has(&["vp", "vice president", "head of", "director"]) {
        30
    } else if has(&["manager", "lead"]) {
        15
    } else {
        0
    };
    seniority + if has(&["senior", "principal"]) { 5 } else { 0 }
}
