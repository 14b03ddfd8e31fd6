//! Deduplication keys inside their window, in memory on the writer thread: an 8-byte slot
//! and hashbrown's control byte a key, 10 bytes a key in all when the tables are at their
//! fullest (7/8), 21 just after they double. The slots are spread over [`SHARDS`] tables by
//! the top bits of their tag, so a table that doubles holds its old copy and its new one
//! for a sixteenth of the keys, not for all of them at once.
//!
//! A key is known by its hash ([`key_hash`], also stored with the event so that a start
//! reloads these from an index of integers). A slot packs the top [`TAG_BITS`] bits of that
//! hash (the tag) and the low [`ROWID_BITS`] bits of the event's rowid. The memory only
//! says where a key *may* be: every candidate is confirmed against its event row (source,
//! key and window) before a request is answered as a duplicate. So a tag shared by two keys
//! costs one more row read, never a wrong answer, and two keys that share a tag are both
//! kept (the table holds a slot per accepted event, not one per tag).
//!
//! The rowid is restored as the highest rowid at or below the highest one inserted with the
//! same low bits: exact while the keys in memory span fewer than 2^36 (≈ 69 billion)
//! events. Beyond that a candidate points at the wrong row, fails its confirmation, and the
//! duplicate is processed again, which at-least-once allows.

use hashbrown::HashTable;

/// Bits of the key's hash kept in a slot. A lookup meets another key's slot with
/// probability (keys in memory) / 2^28: one in 270 with a million keys.
pub(crate) const TAG_BITS: u32 = 28;
/// Bits of the rowid kept in a slot.
pub(crate) const ROWID_BITS: u32 = 64 - TAG_BITS;
const ROWID_MASK: u64 = (1 << ROWID_BITS) - 1;

/// Candidates confirmed against their rows for one lookup at most, the newest first.
/// More share a tag when one key was accepted again many times before expiry forgot its
/// older slots (the newest is the only one that can be inside its window), or when tags
/// were crafted to collide (2^28 SHA-256 evaluations each, by a sender that passed
/// verification); past this bound the oldest are not read (at-least-once).
pub(crate) const MAX_CANDIDATES: usize = 8;

/// A dedupe key's hash, stored with the event (`dedupe_hash`): the first 8 bytes of
/// SHA-256(source, 0, key).
pub(crate) fn key_hash(source: &str, key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Tables the slots are spread over. Each grows (and copies itself) on its own.
pub(crate) const SHARDS: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    shards: [HashTable<u64>; SHARDS],
    /// The highest rowid inserted: the reference that restores a slot's rowid.
    high: i64,
}

fn tag(hash: i64) -> u64 {
    (hash as u64) >> ROWID_BITS
}

/// The table of a tag: its top bits. (Not its low bits: those pick the bucket within the
/// table, through [`spread`], whose low bits depend only on the tag's low bits. The 24 bits
/// left below the table's spread keys evenly over up to 2^24 buckets a table: 235 million
/// keys in all.)
fn shard(tag: u64) -> usize {
    (tag >> (TAG_BITS - SHARDS.trailing_zeros())) as usize
}

/// The table's hash of a tag: the tag is already uniform (it is SHA-256), multiplied out
/// so that hashbrown's bucket index (low bits) and control byte (top bits) both vary.
fn spread(tag: u64) -> u64 {
    tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn slot_hash(slot: &u64) -> u64 {
    spread(slot >> ROWID_BITS)
}

impl Dedupe {
    /// The event rowids that may hold this key, newest first, to be confirmed against
    /// their rows; the newest [`MAX_CANDIDATES`] at most.
    ///
    /// Newest first because a key can have more than one slot: a row whose window has
    /// passed keeps its slot until the accept that meets it [forgets](Self::forget) it or
    /// expiry does, and a batch that rolled back leaves its slots behind. Only the newest
    /// can still be inside its window, so that one is never cut off by the bound.
    pub(crate) fn candidates(&self, hash: i64) -> Vec<i64> {
        let tag = tag(hash);
        let mut rows: Vec<i64> = Vec::new();
        for slot in self.shards[shard(tag)].iter_hash(spread(tag)) {
            if *slot >> ROWID_BITS != tag {
                continue;
            }
            let rowid = self.rowid(*slot);
            // A rolled-back insert's rowid is given to the next insert: one row, two slots.
            if rows.contains(&rowid) {
                continue;
            }
            if rows.len() < MAX_CANDIDATES {
                rows.push(rowid);
            } else if let Some(oldest) = rows.iter_mut().min()
                && *oldest < rowid
            {
                *oldest = rowid;
            }
        }
        rows.sort_unstable_by(|a, b| b.cmp(a));
        rows
    }

    /// Forget the slot of this key at `rowid`: its row's window has passed, and the key is
    /// about to be accepted again with a new row (so a key sent again and again keeps one
    /// slot, not one per time).
    pub(crate) fn forget(&mut self, hash: i64, rowid: i64) {
        let tag = tag(hash);
        let high = self.high;
        if let Ok(slot) = self.shards[shard(tag)].find_entry(spread(tag), |slot| {
            *slot >> ROWID_BITS == tag && restore(high, *slot) == rowid
        }) {
            slot.remove();
        }
    }

    pub(crate) fn insert(&mut self, hash: i64, rowid: i64) {
        self.high = self.high.max(rowid);
        let tag = tag(hash);
        let slot = (tag << ROWID_BITS) | (rowid as u64 & ROWID_MASK);
        self.shards[shard(tag)].insert_unique(slot_hash(&slot), slot, slot_hash);
    }

    /// Forget keys of events below `rowid` (every key still inside its window is at or
    /// above it).
    pub(crate) fn expire_below(&mut self, rowid: i64) {
        let high = self.high;
        for slots in &mut self.shards {
            slots.retain(|slot| restore(high, *slot) >= rowid);
            slots.shrink_to_fit(slot_hash);
        }
    }

    fn rowid(&self, slot: u64) -> i64 {
        restore(self.high, slot)
    }

    /// Slots held: one per event accepted with a key and not yet forgotten.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum()
    }

    /// Bytes the tables hold (slots and control bytes).
    pub(crate) fn allocation_size(&self) -> usize {
        self.shards.iter().map(HashTable::allocation_size).sum()
    }
}

/// The highest rowid at or below `high` whose low bits are the slot's.
fn restore(high: i64, slot: u64) -> i64 {
    let low = slot & ROWID_MASK;
    high.wrapping_sub(((high as u64).wrapping_sub(low) & ROWID_MASK) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(d: &Dedupe, hash: i64) -> Vec<i64> {
        let mut v = d.candidates(hash);
        v.sort_unstable();
        v
    }

    #[test]
    fn a_key_is_found_at_its_row_and_others_are_not() {
        let mut d = Dedupe::default();
        let keys: Vec<i64> = (0..10_000)
            .map(|i| key_hash("leadshark", &format!("evt_{i}")))
            .collect();
        for (i, h) in keys.iter().enumerate() {
            d.insert(*h, i as i64 + 1);
        }
        // Ten thousand keys may share a tag or two (about one set in six does); every key
        // finds its own row, and shared tags add a handful of candidates in all.
        let mut others = 0;
        for (i, h) in keys.iter().enumerate() {
            let rows = found(&d, *h);
            assert!(rows.contains(&(i as i64 + 1)), "key {i}");
            others += rows.len() - 1;
        }
        assert!(others <= 10, "{others} candidates of other keys");
        // Another source's key with the same text is another key.
        let other = key_hash("stripe", "evt_0");
        assert!(found(&d, other).is_empty());
        assert_eq!(d.len(), 10_000);
    }

    #[test]
    fn keys_sharing_a_tag_are_all_kept_and_all_candidates() {
        let mut d = Dedupe::default();
        // Same top 28 bits, different below: two keys of one tag.
        let a = 0x1234_5670_0000_0001_u64 as i64;
        let b = 0x1234_5670_ffff_0002_u64 as i64;
        assert_eq!(tag(a), tag(b));
        d.insert(a, 7);
        d.insert(b, 9);
        assert_eq!(found(&d, a), vec![7, 9], "both are confirmed on their rows");
        assert_eq!(found(&d, b), vec![7, 9]);
        // The same key accepted again (its first row rolled back) keeps both slots.
        d.insert(a, 11);
        assert_eq!(found(&d, a), vec![7, 9, 11]);
        // A rolled-back insert's rowid taken again by the next: one candidate for both.
        d.insert(a, 11);
        assert_eq!(found(&d, a), vec![7, 9, 11]);
        // Slots that were not forgotten (batches rolled back, say): the bound keeps the
        // newest, the only slot whose row can still be inside its window, in any order
        // of insertion.
        for i in [
            5, 19, 0, 12, 3, 17, 8, 1, 14, 10, 2, 18, 6, 11, 4, 16, 9, 13, 7, 15,
        ] {
            d.insert(a, 100 + i);
        }
        let rows = d.candidates(a);
        assert_eq!(
            rows,
            (112..=119).rev().collect::<Vec<i64>>(),
            "the newest 8, newest first"
        );
        // Forgetting takes only the slot named.
        let before = d.len();
        d.forget(a, 119);
        assert_eq!(d.len(), before - 1);
        d.forget(b, 12_345);
        assert_eq!(d.len(), before - 1, "no slot at that row: nothing");
        assert_eq!(d.candidates(a)[0], 118);
    }

    #[test]
    fn rowids_are_restored_across_the_slot_width() {
        let mut d = Dedupe::default();
        let edge = 1_i64 << ROWID_BITS;
        let rows = [edge - 2, edge - 1, edge, edge + 5, 3 * edge + 17];
        let hashes: Vec<i64> = (0..rows.len())
            .map(|i| key_hash("s", &i.to_string()))
            .collect();
        for (h, r) in hashes.iter().zip(rows) {
            d.insert(*h, r);
        }
        // Every key within 2^36 rows of the highest comes back exactly.
        assert_eq!(found(&d, hashes[4]), vec![3 * edge + 17]);
        let mut near = Dedupe::default();
        for (h, r) in hashes.iter().zip(rows).take(4) {
            near.insert(*h, r);
        }
        for (h, r) in hashes.iter().zip(rows).take(4) {
            assert_eq!(found(&near, *h), vec![r]);
        }
        assert_eq!(restore(100, 100), 100);
        assert_eq!(restore(100, 1), 1);
        assert_eq!(restore(edge + 1, (edge - 1) as u64 & ROWID_MASK), edge - 1);
    }

    #[test]
    fn expiry_forgets_the_keys_below_and_gives_the_memory_back() {
        let mut d = Dedupe::default();
        let keys: Vec<i64> = (0..100_000)
            .map(|i| key_hash("s", &i.to_string()))
            .collect();
        for (i, h) in keys.iter().enumerate() {
            d.insert(*h, i as i64 + 1);
        }
        let full = d.allocation_size();
        d.expire_below(90_001);
        assert_eq!(d.len(), 10_000);
        assert!(found(&d, keys[89_999]).is_empty());
        assert_eq!(found(&d, keys[90_000]), vec![90_001]);
        assert!(d.allocation_size() * 4 < full, "shrunk with the keys");
    }

    /// A table that doubles copies itself while its old copy is held: with the slots spread
    /// over [`SHARDS`] tables, that is about a sixteenth of the keys at a time. 300,000 keys
    /// (past the doubling at 229,376 of one table of 2^18) are spread evenly, no table more
    /// than an eighth of all the memory, and tables fill and double at about the same count.
    #[test]
    fn keys_are_spread_so_that_a_doubling_copies_a_sixteenth_of_them() {
        let mut d = Dedupe::default();
        let mut largest_step = 0;
        for i in 0..300_000_i64 {
            let before = d.allocation_size();
            d.insert(key_hash("leadshark", &i.to_string()), i + 1);
            // What one insert added: the new copy of the table that grew, less its old one.
            largest_step = largest_step.max(d.allocation_size().saturating_sub(before));
        }
        let total = d.allocation_size();
        let largest = d.shards.iter().map(HashTable::allocation_size).max();
        assert!(
            largest.is_some_and(|l| l * 8 <= total),
            "{largest:?} of {total}"
        );
        assert!(
            largest_step * 8 <= total,
            "one insert grew the memory by {largest_step} of {total}"
        );
        let lens: Vec<usize> = d.shards.iter().map(HashTable::len).collect();
        assert!(
            lens.iter().all(|n| *n > 300_000 / SHARDS * 9 / 10),
            "{lens:?}"
        );
    }

    /// The point of the slot layout: 300,000 keys (a 10 s benchmark run's worth, past the
    /// table's doubling at 229,376) in at most 16 bytes each, table and control bytes
    /// included. A map of two `i64`s held them in 30.
    #[test]
    fn a_key_costs_at_most_16_bytes_in_a_table_past_its_doubling() {
        let mut d = Dedupe::default();
        for i in 0..300_000_i64 {
            d.insert(key_hash("leadshark", &i.to_string()), i + 1);
        }
        let per_key = d.allocation_size() as f64 / 300_000.0;
        assert!(per_key <= 16.0, "{per_key:.1} bytes a key");
    }
}
