//! Passwords, bearer tokens and ids.
//!
//! Invariant: the store never holds a password or a token in clear; passwords are kept as
//! argon2id PHC strings and tokens as their BLAKE3 hash (tokens are 256 random bits, so a fast
//! hash is as strong as a slow one for them).

use crate::error::{Result, StoreError};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

const TOKEN_PREFIX: &str = "cpm_";

pub fn hash_password(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(StoreError::Invalid("a password cannot be empty".into()));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| StoreError::Internal(format!("cannot hash password: {error}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

pub fn new_token() -> Result<String> {
    Ok(format!("{TOKEN_PREFIX}{}", random_hex(32)?))
}

pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// A new random id; the prefix tells what it names (`f` folder, `o` object, `d` device).
pub fn new_id(prefix: char) -> Result<String> {
    Ok(format!("{prefix}{}", random_hex(12)?))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|error| StoreError::Internal(format!("no randomness: {error}")))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() -> Result<()> {
        let phc = hash_password("correct horse")?;
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert!(hash_password("").is_err());
        Ok(())
    }

    #[test]
    fn tokens_and_ids_are_random_and_prefixed() -> Result<()> {
        let (a, b) = (new_token()?, new_token()?);
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 4 + 64);
        assert_ne!(token_hash(&a), a);
        assert!(new_id('o')?.starts_with('o'));
        Ok(())
    }
}
