//! Token PKI and the other small cryptography of DEP: the RSA key and
//! self-signed certificate a DEP name gives Apple (`keypair`), decryption
//! of the `.p7m` token file Apple encrypts to that certificate (`p7m`), the
//! MAID JWT signed with it (`jwt`), and Activation Lock bypass codes
//! (`bypass`).

pub(crate) mod bypass;
pub(crate) mod jwt;
mod keypair;
mod p7m;

pub use keypair::{KeyError, KeyPair, MAX_VALIDITY_DAYS, validate_cn};
pub use p7m::{P7mError, decrypt_token_file, decrypt_token_file_with};
