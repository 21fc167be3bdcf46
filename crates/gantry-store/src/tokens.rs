//! API tokens: created with a role, stored as the SHA-256 hash of their secret, verified in constant
//! time, revoked (never deleted, so the audit log's actors stay resolvable).
//!
//! A token is `gantry_<id>_<64 hex digits>`: the id finds the row, the 32 random bytes are the secret.
//! A plain SHA-256 is enough because the secret is 256 uniformly random bits: nobody can guess it
//! from its hash, and slow password hashes (argon2, bcrypt) only help low-entropy human passwords.

use crate::error::{Error, Result};
use crate::model::{UnixMillis, actions};
use crate::store::{EventRow, Store, insert_event};
use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The prefix of every token (helps secret scanners and people recognise one).
pub const TOKEN_PREFIX: &str = "gantry_";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including tokens.
    Admin,
    /// Everything on any workload, queues and the strategy; not tokens.
    Operator,
    /// Submit, and see and cancel its own workloads.
    Submitter,
    /// Read only.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Submitter, Role::Viewer];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Submitter => "submitter",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    /// Parses `admin`, `operator`, `submitter` or `viewer`.
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "role",
                    format!("{s:?} is not a role (admin, operator, submitter, viewer)"),
                )
            })
    }
}

/// A stored token, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Id (part of the token text).
    pub id: i64,
    /// Who it is for; the owner of the workloads it submits.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<UnixMillis>,
}

/// A token just created: its record and its secret text, which is shown this once and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The record.
    pub info: TokenInfo,
    /// The token text to hand to the client.
    pub secret: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("info", &self.info)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// 32 random bytes from the operating system (`/dev/urandom`), for [`Store::create_token`].
pub fn random_secret() -> Result<[u8; 32]> {
    use std::io::Read;
    let path = "/dev/urandom";
    let mut bytes = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
    Ok(bytes)
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The 32 bytes of 64 lower-case hex digits.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// SHA-256 of a secret.
fn hash(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Compares two hashes in time independent of where they differ.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Splits `gantry_<id>_<hex>` into the id and the secret bytes.
fn parse_token(text: &str) -> Option<(i64, [u8; 32])> {
    let rest = text.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, unhex32(secret)?))
}

/// Reads a `tokens` row (without the hash).
fn read_token(r: &Row<'_>) -> Result<TokenInfo> {
    let role: String = r.get(2)?;
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role
            .parse()
            .map_err(|_| Error::Corrupt(format!("unknown token role {role:?}")))?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

impl Store {
    /// Creates a token for `name` with `role` from 32 random bytes (use [`random_secret`]), with a
    /// `token.create` event. Only the hash is stored: the returned text is the one chance to see it.
    pub fn create_token(
        &mut self,
        name: &str,
        role: Role,
        random: [u8; 32],
        actor: &str,
        now: UnixMillis,
    ) -> Result<NewToken> {
        if name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), &hash(&random)[..], now],
        )?;
        let id = tx.last_insert_rowid();
        let subject = id.to_string();
        insert_event(
            &tx,
            &EventRow {
                subject: Some(&subject),
                actor,
                action: actions::TOKEN_CREATE,
                reason: Some(&format!("{name} as {role}")),
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(NewToken {
            info: TokenInfo {
                id,
                name: name.to_string(),
                role,
                created_at: now,
                revoked_at: None,
            },
            secret: format!("{TOKEN_PREFIX}{id}_{}", hex(&random)),
        })
    }

    /// The token that `text` proves, if it is well formed, known, matches and is not revoked.
    /// The hashes are compared in constant time; a malformed or unknown token is simply `None`.
    pub fn verify_token(&self, text: &str) -> Result<Option<TokenInfo>> {
        let Some((id, secret)) = parse_token(text) else {
            return Ok(None);
        };
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, role, created_at, revoked_at, hash FROM tokens WHERE id = ?1",
        )?;
        let mut rows = st.query([id])?;
        let Some(row) = rows.next()? else {
            // Same work as a known id, so timing does not tell which ids exist.
            let _ = same_hash(&hash(&secret), &[0u8; 32]);
            return Ok(None);
        };
        let stored: Vec<u8> = row.get(5)?;
        let stored: [u8; 32] = stored
            .try_into()
            .map_err(|_| Error::Corrupt(format!("token {id} hash length")))?;
        let info = read_token(row)?;
        Ok((same_hash(&hash(&secret), &stored) && info.revoked_at.is_none()).then_some(info))
    }

    /// Every token (revoked ones too), by id.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY id",
        )?;
        st.query_and_then([], read_token)?.collect()
    }

    /// Revokes token `id` (from now on it verifies as `None`), with a `token.revoke` event; revoking a
    /// revoked token changes nothing and keeps the first time. Returns the record.
    pub fn revoke_token(&mut self, id: i64, actor: &str, now: UnixMillis) -> Result<TokenInfo> {
        let tx = self.write()?;
        let changed = tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        if changed == 1 {
            let subject = id.to_string();
            insert_event(
                &tx,
                &EventRow {
                    subject: Some(&subject),
                    actor,
                    action: actions::TOKEN_REVOKE,
                    ..EventRow::default()
                },
                now,
            )?;
        }
        let info = tx
            .prepare_cached(
                "SELECT id, name, role, created_at, revoked_at FROM tokens WHERE id = ?1",
            )?
            .query_and_then([id], read_token)?
            .next()
            .transpose()?
            .ok_or_else(|| Error::NotFound {
                what: "token",
                id: id.to_string(),
            })?;
        tx.commit()?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_parsing_is_strict() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(unhex32(&hex(&bytes)), Some(bytes));
        let text = format!("{TOKEN_PREFIX}12_{}", hex(&bytes));
        assert_eq!(parse_token(&text), Some((12, bytes)));
        for bad in [
            "",
            "gantry_",
            "gantry_12",
            "gantry__00",
            "gantry_-1_00",
            "token_12_00",
            &format!("{TOKEN_PREFIX}12_{}", hex(&bytes).to_uppercase()),
            &format!("{TOKEN_PREFIX}12_{}0", hex(&bytes)),
            &format!("{TOKEN_PREFIX}x_{}", hex(&bytes)),
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        assert!(same_hash(&bytes, &bytes));
        let mut other = bytes;
        other[31] ^= 1;
        assert!(!same_hash(&bytes, &other));
    }

    #[test]
    fn roles_parse() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
