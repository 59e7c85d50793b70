//! Cursors: opaque to clients, but to the simulator a (kind, position, event
//! sequence, issue time) record with an integrity check, so a tampered or
//! foreign cursor is `INVALID_CURSOR` rather than a wrong page.

use openssl::base64;
use openssl::sha::sha256;

/// What a cursor continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// A fetch in progress: `position` is the next device index.
    Fetch,
    /// Sync (also what a finished fetch hands out): events from `seq` on.
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub kind: CursorKind,
    /// Next device index (fetch); unused for sync.
    pub position: u64,
    /// First event not yet reported. A fetch records the event count when it
    /// started, so the sync that follows reports what changed meanwhile.
    pub seq: u64,
    /// Unix seconds when the simulator issued the cursor (its clock).
    pub issued: i64,
}

/// The cursor errors, named as Apple's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("CURSOR_REQUIRED")]
    Required,
    #[error("INVALID_CURSOR")]
    Invalid,
    #[error("EXHAUSTED_CURSOR")]
    Exhausted,
    #[error("EXPIRED_CURSOR")]
    Expired,
}

impl CursorError {
    pub fn code(self) -> &'static str {
        match self {
            CursorError::Required => "CURSOR_REQUIRED",
            CursorError::Invalid => "INVALID_CURSOR",
            CursorError::Exhausted => "EXHAUSTED_CURSOR",
            CursorError::Expired => "EXPIRED_CURSOR",
        }
    }
}

const VERSION: u8 = 1;
const PAYLOAD: usize = 1 + 1 + 8 + 8 + 8;
const MAC: usize = 8;

/// Encodes and checks cursors with a per-simulator key (derived from the
/// seed, so cursors survive a restart with the same seed, like Apple's).
#[derive(Debug, Clone)]
pub struct CursorCodec {
    key: [u8; 32],
    max_age_secs: i64,
}

impl CursorCodec {
    pub fn new(key: [u8; 32], max_age_secs: i64) -> Self {
        CursorCodec { key, max_age_secs }
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC] {
        let mut input = Vec::with_capacity(self.key.len() + payload.len());
        input.extend_from_slice(&self.key);
        input.extend_from_slice(payload);
        let digest = sha256(&input);
        let mut mac = [0u8; MAC];
        mac.copy_from_slice(&digest[..MAC]);
        mac
    }

    pub fn encode(&self, c: &Cursor) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD + MAC);
        bytes.push(VERSION);
        bytes.push(match c.kind {
            CursorKind::Fetch => b'F',
            CursorKind::Sync => b'S',
        });
        bytes.extend_from_slice(&c.position.to_be_bytes());
        bytes.extend_from_slice(&c.seq.to_be_bytes());
        bytes.extend_from_slice(&c.issued.to_be_bytes());
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac);
        // URL-safe alphabet without padding: easy to paste into curl.
        base64::encode_block(&bytes)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    }

    pub fn decode(&self, text: &str) -> Result<Cursor, CursorError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 64 || !text.is_ascii() {
            return Err(CursorError::Invalid);
        }
        let mut std = text.replace('-', "+").replace('_', "/");
        while !std.len().is_multiple_of(4) {
            std.push('=');
        }
        let bytes = base64::decode_block(&std).map_err(|_| CursorError::Invalid)?;
        if bytes.len() != PAYLOAD + MAC || bytes[0] != VERSION {
            return Err(CursorError::Invalid);
        }
        let (payload, mac) = bytes.split_at(PAYLOAD);
        if !openssl::memcmp::eq(&self.mac(payload), mac) {
            return Err(CursorError::Invalid);
        }
        let kind = match payload[1] {
            b'F' => CursorKind::Fetch,
            b'S' => CursorKind::Sync,
            _ => return Err(CursorError::Invalid),
        };
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[at..at + 8]);
            b
        };
        Ok(Cursor {
            kind,
            position: u64::from_be_bytes(word(2)),
            seq: u64::from_be_bytes(word(10)),
            issued: i64::from_be_bytes(word(18)),
        })
    }

    fn check_age(&self, c: &Cursor, now: i64) -> Result<(), CursorError> {
        if now.saturating_sub(c.issued) > self.max_age_secs {
            Err(CursorError::Expired)
        } else {
            Ok(())
        }
    }

    /// The cursor a fetch continues from: `None` starts a new fetch. A
    /// sync cursor (which is also what a finished fetch returns) means
    /// everything was fetched before.
    pub fn for_fetch(&self, text: Option<&str>, now: i64) -> Result<Option<Cursor>, CursorError> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let c = self.decode(text)?;
        if c.kind == CursorKind::Sync {
            return Err(CursorError::Exhausted);
        }
        self.check_age(&c, now)?;
        Ok(Some(c))
    }

    /// The cursor a sync continues from; a sync needs one.
    pub fn for_sync(&self, text: Option<&str>, now: i64) -> Result<Cursor, CursorError> {
        let text = text
            .filter(|t| !t.is_empty())
            .ok_or(CursorError::Required)?;
        let c = self.decode(text)?;
        self.check_age(&c, now)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new([7; 32], 7 * 86_400)
    }

    fn sample(kind: CursorKind) -> Cursor {
        Cursor {
            kind,
            position: 1234,
            seq: 99,
            issued: 1_700_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let c = sample(CursorKind::Fetch);
        let text = codec().encode(&c);
        assert!(
            text.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        );
        assert_eq!(codec().decode(&text), Ok(c));
    }

    #[test]
    fn tampering_and_garbage_are_invalid() {
        let text = codec().encode(&sample(CursorKind::Sync));
        let mut chars: Vec<char> = text.chars().collect();
        chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(codec().decode(&tampered), Err(CursorError::Invalid));
        for bad in ["", "garbage", "!!!!", "MTIzNDU2Nzg5MA", &"A".repeat(200)] {
            assert_eq!(codec().decode(bad), Err(CursorError::Invalid), "{bad}");
        }
        let other = CursorCodec::new([8; 32], 1);
        assert_eq!(other.decode(&text), Err(CursorError::Invalid));
    }

    #[test]
    fn fetch_and_sync_rules() {
        let k = codec();
        let now = 1_700_000_000;
        assert_eq!(k.for_fetch(None, now), Ok(None));
        let sync = k.encode(&sample(CursorKind::Sync));
        let fetch = k.encode(&sample(CursorKind::Fetch));
        assert_eq!(k.for_fetch(Some(&sync), now), Err(CursorError::Exhausted));
        assert!(k.for_fetch(Some(&fetch), now).is_ok());
        assert_eq!(k.for_sync(None, now), Err(CursorError::Required));
        assert_eq!(k.for_sync(Some(""), now), Err(CursorError::Required));
        assert_eq!(k.for_sync(Some("x"), now), Err(CursorError::Invalid));
        assert!(k.for_sync(Some(&sync), now + 7 * 86_400).is_ok());
        assert_eq!(
            k.for_sync(Some(&sync), now + 7 * 86_400 + 1),
            Err(CursorError::Expired)
        );
        assert_eq!(
            k.for_fetch(Some(&fetch), now + 8 * 86_400),
            Err(CursorError::Expired)
        );
    }
}
