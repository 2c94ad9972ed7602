//! A fast hasher for the RIB's integer keys (prefixes are not attacker-chosen hash-flooding
//! material in practice: a peer can only send what the max-prefix and import policy let
//! through, and the keys are fixed-width integers).

use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate accumulation with a murmur3 finaliser, so every output bit depends on
/// every input bit (hashbrown takes the bucket from the low bits and the tag from the
/// high ones; prefixes differ mostly in the middle bits).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PrefixHasher {
    hash: u64,
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.hash = (self.hash.rotate_left(23) ^ i).wrapping_mul(K);
    }

    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(crate) type BuildPrefixHasher = BuildHasherDefault<PrefixHasher>;
