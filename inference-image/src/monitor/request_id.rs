//! Request ids that encode where a prediction is kept, so feedback finds it without a hash map.
//!
//! An id is a UUID (version 8, RFC 9562 variant): the first 8 bytes are a random value fixed for the
//! life of the process, the last 8 carry the prediction's sequence number through a keyed 62-bit
//! permutation (a four-round Feistel network over SipHash), so ids are not guessable from one
//! another and do not reveal the request count. An id from another process, or a made-up one,
//! decodes to `None` or to a sequence number the registry does not hold.

use std::hash::{BuildHasher, RandomState};

use uuid::Uuid;

const HALF_BITS: u32 = 31;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
/// Sequence numbers are below this (2^62).
pub const SEQ_LIMIT: u64 = 1 << (2 * HALF_BITS);
const ROUNDS: u64 = 4;

pub struct IdCodec {
    prefix: [u8; 8],
    keys: RandomState,
}

impl Default for IdCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl IdCodec {
    /// A codec with a fresh random prefix and key (both from the standard library's per-process
    /// random source).
    pub fn new() -> Self {
        let seed = RandomState::new();
        let mut prefix = seed.hash_one(0xA5A5_u64).to_be_bytes();
        prefix[6] = (prefix[6] & 0x0f) | 0x80; // version 8
        Self {
            prefix,
            keys: RandomState::new(),
        }
    }

    fn round(&self, round: u64, half: u64) -> u64 {
        self.keys.hash_one((round, half)) & HALF_MASK
    }

    fn permute(&self, seq: u64) -> u64 {
        let (mut l, mut r) = (seq >> HALF_BITS, seq & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF_BITS) | r
    }

    fn unpermute(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> HALF_BITS, x & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (l << HALF_BITS) | r
    }

    pub fn encode(&self, seq: u64) -> Uuid {
        debug_assert!(seq < SEQ_LIMIT);
        let low = self.permute(seq & (SEQ_LIMIT - 1)) | (0b10 << 62); // RFC 9562 variant
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix);
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        Uuid::from_bytes(bytes)
    }

    /// The sequence number of an id this codec made; `None` for any other id.
    pub fn decode(&self, id: &Uuid) -> Option<u64> {
        let bytes = id.as_bytes();
        if bytes[..8] != self.prefix {
            return None;
        }
        let low = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
        if low >> 62 != 0b10 {
            return None;
        }
        Some(self.unpermute(low & (SEQ_LIMIT - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_a_valid_v8_uuid() {
        let c = IdCodec::new();
        for seq in (0..10_000u64).chain([SEQ_LIMIT - 1, SEQ_LIMIT / 3, 1 << 40]) {
            let id = c.encode(seq);
            assert_eq!(id.get_version_num(), 8);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(c.decode(&id), Some(seq), "seq {seq}");
            assert_eq!(Uuid::parse_str(&id.to_string()).unwrap(), id);
        }
    }

    #[test]
    fn neighbours_do_not_look_alike_and_foreign_ids_are_refused() {
        let c = IdCodec::new();
        let (a, b) = (c.encode(41), c.encode(42));
        let low = |u: &Uuid| u64::from_be_bytes(u.as_bytes()[8..].try_into().unwrap());
        // Consecutive sequence numbers differ in many bits, not one.
        assert!((low(&a) ^ low(&b)).count_ones() > 8, "{a} {b}");
        let other = IdCodec::new();
        assert_eq!(other.decode(&a), None);
        assert_eq!(c.decode(&Uuid::new_v4()), None);
    }
}
