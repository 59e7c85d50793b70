//! Activation Lock bypass codes: 16 random bytes, their human form (the
//! 128 bits as 5-bit symbols in groups of 5-5-4-4-4-4, e.g. `3UM43-PUYVY-QYD1-UVCC-HEHJ-FKA4`) and the
//! escrow key Apple stores (PBKDF2-HMAC-SHA256 of the raw bytes).

use openssl::hash::MessageDigest;
use std::fmt;

/// Bytes of a raw bypass code.
pub const RAW_LEN: usize = 16;
/// Symbols of the human form: 25 of 5 bits, then one of the last 3 bits.
const SYMBOLS: usize = 26;
const ALPHABET: &[u8; 32] = b"0123456789ACDEFGHJKLMNPQRTUVWXYZ";
/// A dash follows these symbol counts in the human form.
const DASH_AFTER: [usize; 5] = [5, 10, 14, 18, 22];
const PBKDF2_ITERATIONS: usize = 50_000;
const PBKDF2_SALT: [u8; 4] = [0; 4];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BypassError {
    #[error("raw bypass code must be {expected} hex digits, got {found}")]
    RawLength { expected: usize, found: usize },
    #[error("raw bypass code has a non-hex character {0:?}")]
    BadHex(char),
    #[error(
        "bypass code must be 26 symbols, in groups of 5-5-4-4-4-4 such as 3UM43-PUYVY-QYD1-UVCC-HEHJ-FKA4, or without dashes; got {0} symbols"
    )]
    CodeLength(usize),
    #[error("bypass code has dashes in the wrong places (expected groups of 5-5-4-4-4-4 symbols)")]
    Dashes,
    #[error("bypass code symbol {symbol:?} at position {position} is not one of {alphabet}")]
    BadSymbol {
        symbol: char,
        position: usize,
        alphabet: &'static str,
    },
    #[error("the last bypass code symbol {0:?} is out of range: it holds 3 bits, so 0 to 7")]
    FinalSymbol(char),
    #[error("key derivation failed: {0}")]
    Crypto(String),
}

/// A bypass code in its raw form.
#[derive(Clone, PartialEq, Eq)]
pub struct BypassCode([u8; RAW_LEN]);

/// Redacted: a bypass code unlocks a device.
impl fmt::Debug for BypassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BypassCode(..)")
    }
}

impl BypassCode {
    #[cfg(test)]
    pub fn from_bytes(raw: [u8; RAW_LEN]) -> Self {
        BypassCode(raw)
    }

    /// A fresh code from OpenSSL's CSPRNG.
    pub fn random() -> Result<Self, BypassError> {
        let mut raw = [0u8; RAW_LEN];
        openssl::rand::rand_bytes(&mut raw).map_err(|e| BypassError::Crypto(e.to_string()))?;
        Ok(BypassCode(raw))
    }

    /// Parses 32 hex digits (either case), nothing around them.
    pub fn from_hex(hex: &str) -> Result<Self, BypassError> {
        let nibbles = hex
            .chars()
            .map(|c| {
                c.to_digit(16)
                    .map(|d| d as u8)
                    .ok_or(BypassError::BadHex(c))
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if nibbles.len() != RAW_LEN * 2 {
            return Err(BypassError::RawLength {
                expected: RAW_LEN * 2,
                found: nibbles.len(),
            });
        }
        let mut raw = [0u8; RAW_LEN];
        for (byte, pair) in raw.iter_mut().zip(nibbles.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
        Ok(BypassCode(raw))
    }

    /// Parses the human form: either case, with dashes in the standard
    /// places or without any.
    pub fn from_code(code: &str) -> Result<Self, BypassError> {
        let symbols: Vec<char> = code.chars().filter(|c| *c != '-').collect();
        if symbols.len() != SYMBOLS {
            return Err(BypassError::CodeLength(symbols.len()));
        }
        if symbols.len() != code.chars().count() && code.to_ascii_uppercase() != dashed(&symbols) {
            return Err(BypassError::Dashes);
        }
        let mut bits = Bits::default();
        for (position, &symbol) in symbols.iter().enumerate() {
            let upper = symbol.to_ascii_uppercase();
            let value = ALPHABET
                .iter()
                .position(|&a| char::from(a) == upper)
                .ok_or(BypassError::BadSymbol {
                    symbol,
                    position: position + 1,
                    alphabet: "0123456789ACDEFGHJKLMNPQRTUVWXYZ",
                })?;
            if position == SYMBOLS - 1 {
                if value > 7 {
                    return Err(BypassError::FinalSymbol(symbol));
                }
                bits.push(value as u8, 3);
            } else {
                bits.push(value as u8, 5);
            }
        }
        Ok(BypassCode(bits.bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The dashed human form, upper case.
    pub fn to_code(&self) -> String {
        let symbols: Vec<char> = (0..SYMBOLS)
            .map(|i| {
                let (start, width) = (i * 5, if i == SYMBOLS - 1 { 3 } else { 5 });
                let value = (start..start + width).fold(0usize, |acc, bit| {
                    (acc << 1) | usize::from(bit_at(&self.0, bit))
                });
                char::from(ALPHABET[value])
            })
            .collect();
        dashed(&symbols)
    }

    /// The escrow key sent to Apple: PBKDF2-HMAC-SHA256 over the raw bytes
    /// (salt four zero bytes, 50,000 iterations), lowercase hex. Costs tens
    /// of milliseconds: callers on an async runtime use the blocking pool.
    pub fn escrow_hash(&self) -> Result<String, BypassError> {
        let mut out = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            &self.0,
            &PBKDF2_SALT,
            PBKDF2_ITERATIONS,
            MessageDigest::sha256(),
            &mut out,
        )
        .map_err(|e| BypassError::Crypto(e.to_string()))?;
        Ok(out.iter().map(|b| format!("{b:02x}")).collect())
    }
}

fn bit_at(raw: &[u8; RAW_LEN], bit: usize) -> bool {
    raw[bit / 8] & (0x80 >> (bit % 8)) != 0
}

fn dashed(symbols: &[char]) -> String {
    let mut out = String::with_capacity(SYMBOLS + DASH_AFTER.len());
    for (i, c) in symbols.iter().enumerate() {
        if DASH_AFTER.contains(&i) {
            out.push('-');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// MSB-first bit writer over the 16 raw bytes.
#[derive(Default)]
struct Bits {
    bytes: [u8; RAW_LEN],
    len: usize,
}

impl Bits {
    fn push(&mut self, value: u8, width: usize) {
        for i in (0..width).rev() {
            if value & (1 << i) != 0 {
                self.bytes[self.len / 8] |= 0x80 >> (self.len % 8);
            }
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        raw: String,
        code: String,
        hash: String,
    }

    fn vectors() -> Vec<Vector> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/integration/testdata/vectors/bypasscode.json"
        );
        let text = std::fs::read_to_string(path).expect("read vectors");
        serde_json::from_str::<Vectors>(&text)
            .expect("vectors JSON")
            .vectors
    }

    #[test]
    fn vectors_pass_in_every_direction() {
        let vectors = vectors();
        assert!(!vectors.is_empty());
        for v in vectors {
            let from_raw = BypassCode::from_hex(&v.raw).expect("raw");
            assert_eq!(from_raw.to_code(), v.code, "{}", v.raw);
            assert_eq!(from_raw.escrow_hash().expect("hash"), v.hash);
            let from_code = BypassCode::from_code(&v.code).expect("code");
            assert_eq!(from_code.to_hex(), v.raw);
            let lower = BypassCode::from_code(&v.code.to_lowercase()).expect("lower case");
            assert_eq!(lower, from_raw);
            let undashed = BypassCode::from_code(&v.code.replace('-', "")).expect("no dashes");
            assert_eq!(undashed, from_raw);
            let upper_hex = BypassCode::from_hex(&v.raw.to_uppercase()).expect("upper hex");
            assert_eq!(upper_hex, from_raw);
        }
    }

    #[test]
    fn raw_code_raw_round_trips() {
        // Fixed patterns at the edges, then many random values.
        let mut cases = vec![
            [0u8; RAW_LEN],
            [0xff; RAW_LEN],
            [0x80; RAW_LEN],
            [0x01; RAW_LEN],
        ];
        for _ in 0..2000 {
            let mut raw = [0u8; RAW_LEN];
            openssl::rand::rand_bytes(&mut raw).expect("rand");
            cases.push(raw);
        }
        for raw in cases {
            let code = BypassCode::from_bytes(raw);
            let text = code.to_code();
            assert_eq!(text.len(), 31);
            assert_eq!(BypassCode::from_code(&text), Ok(code.clone()), "{text}");
            assert_eq!(BypassCode::from_hex(&code.to_hex()), Ok(code));
        }
        assert!(BypassCode::random().expect("random") != BypassCode::random().expect("random"));
    }

    #[test]
    fn invalid_input_is_named() {
        let ok = "3UM43-PUYVY-QYD1-UVCC-HEHJ-FKA4";
        let cases: Vec<(String, BypassError)> = vec![
            (
                "1ea8".into(),
                BypassError::RawLength {
                    expected: 32,
                    found: 4,
                },
            ),
            (
                "1ea841db5edfafe6075b5ae0d845d25g".into(),
                BypassError::BadHex('g'),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(BypassCode::from_hex(&raw), Err(want), "{raw}");
        }
        let bad_codes: Vec<(String, BypassError)> = vec![
            (ok[..30].into(), BypassError::CodeLength(25)),
            (format!("{ok}0"), BypassError::CodeLength(27)),
            (
                "3UM4-3PUYVY-QYD1-UVCC-HEHJ-FKA4".into(),
                BypassError::Dashes,
            ),
            (
                ok.replace('3', "B"),
                BypassError::BadSymbol {
                    symbol: 'B',
                    position: 1,
                    alphabet: "0123456789ACDEFGHJKLMNPQRTUVWXYZ",
                },
            ),
            (ok.replace("A4", "A8"), BypassError::FinalSymbol('8')),
            (ok.replace("A4", "AZ"), BypassError::FinalSymbol('Z')),
        ];
        for (code, want) in bad_codes {
            assert_eq!(BypassCode::from_code(&code), Err(want), "{code}");
        }
        assert!(format!("{:?}", BypassCode::from_bytes([7; RAW_LEN])).contains(".."));
    }
}
