//! Mosquitto's password file, read and written as `mosquitto_passwd` does, so that a file
//! made for Mosquitto works here as it is and one made by `dynamq passwd` works there.
//!
//! One `user:hash` line per user; empty lines and lines starting with `#` are skipped. Two
//! hash formats, both with standard base64 (padded):
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 of the password with the salt, 64
//!   bytes (what `mosquitto_passwd` 2.x writes: 101 iterations, a 12-byte salt).
//! - `$6$<salt>$<hash>`: SHA-512 of the password followed by the salt (Mosquitto 1.x).
//!
//! The derived hash is compared in constant time. Nothing is cached: each CONNECT with a
//! password derives its hash again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Iterations `mosquitto_passwd` 2.x uses, and so `dynamq passwd`.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt bytes `mosquitto_passwd` 2.x uses.
const SALT_LEN: usize = 12;
/// SHA-512's output, the length of every hash in the file.
const HASH_LEN: usize = 64;
/// Above this many PBKDF2 iterations a verification takes long enough (about a millisecond
/// at 10,000) that it runs on the blocking pool, not on a runtime thread.
pub const BLOCKING_ITERATIONS: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("cannot read password file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("password file {}, line {line}: {msg}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

/// A password hash as stored in the file.
#[derive(Clone, PartialEq, Eq)]
pub enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

/// Never shows the hash (it is as good as the password against a dictionary).
impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hash::Pbkdf2 { iterations, .. } => write!(f, "$7$ ({iterations} iterations)"),
            Hash::Sha512 { .. } => f.write_str("$6$"),
        }
    }
}

impl Hash {
    /// Parses `$7$...` or `$6$...`; the error says what is wrong, not the hash.
    pub fn parse(s: &str) -> Result<Hash, String> {
        let decode = |what: &str, b64: &str| {
            B64.decode(b64)
                .map_err(|e| format!("{what} is not valid base64: {e}"))
        };
        if let Some(rest) = s.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(it), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("a $7$ hash must be $7$<iterations>$<salt>$<hash>".into());
            };
            let iterations: u32 = it
                .parse()
                .map_err(|_| format!("iteration count {it:?} is not a number"))?;
            if iterations == 0 {
                return Err("iteration count is 0".into());
            }
            let salt = decode("the salt", salt)?;
            let hash = decode("the hash", hash)?;
            check_lengths(&salt, &hash)?;
            Ok(Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            })
        } else if let Some(rest) = s.strip_prefix("$6$") {
            let Some((salt, hash)) = rest.split_once('$') else {
                return Err("a $6$ hash must be $6$<salt>$<hash>".into());
            };
            let salt = decode("the salt", salt)?;
            let hash = decode("the hash", hash)?;
            check_lengths(&salt, &hash)?;
            Ok(Hash::Sha512 { salt, hash })
        } else {
            Err("not a $7$ or $6$ hash (a plain-text password? `mosquitto_passwd -U` hashes a file of them)".into())
        }
    }

    /// A new `$7$` hash of `password` with a random salt, as `mosquitto_passwd` makes it.
    pub fn new_pbkdf2(password: &[u8]) -> Hash {
        let salt: [u8; SALT_LEN] = rand::random();
        let iterations = DEFAULT_ITERATIONS;
        let mut hash = vec![0u8; HASH_LEN];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut hash);
        Hash::Pbkdf2 {
            iterations,
            salt: salt.to_vec(),
            hash,
        }
    }

    /// The text as it goes in the file.
    pub fn encode(&self) -> String {
        match self {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => format!("$7${iterations}${}${}", B64.encode(salt), B64.encode(hash)),
            Hash::Sha512 { salt, hash } => format!("$6${}${}", B64.encode(salt), B64.encode(hash)),
        }
    }

    /// True if `password` hashes to this; the comparison takes the same time wherever the
    /// first difference is.
    pub fn verify(&self, password: &[u8]) -> bool {
        let mut out = [0u8; HASH_LEN];
        let expected = match self {
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                hash
            }
            Hash::Sha512 { salt, hash } => {
                let digest = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                out.copy_from_slice(digest.as_slice());
                hash
            }
        };
        out.as_slice().ct_eq(expected.as_slice()).into()
    }

    /// Whether verifying this is slow enough to belong on the blocking pool.
    pub fn is_costly(&self) -> bool {
        matches!(self, Hash::Pbkdf2 { iterations, .. } if *iterations > BLOCKING_ITERATIONS)
    }
}

fn check_lengths(salt: &[u8], hash: &[u8]) -> Result<(), String> {
    if salt.is_empty() {
        return Err("the salt is empty".into());
    }
    if hash.len() != HASH_LEN {
        return Err(format!(
            "the hash is {} bytes, a SHA-512 hash is {HASH_LEN}",
            hash.len()
        ));
    }
    Ok(())
}

/// The users of a password file.
#[derive(Debug, Default)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, msg)| PasswordFileError::Line {
            path: path.to_owned(),
            line,
            msg,
        })
    }

    /// Parses the file's text; `Err((line number, what is wrong))` for the first bad line.
    pub fn parse(text: &str) -> Result<PasswordFile, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let Some((user, hash)) = split_line(line) else {
                continue;
            };
            let user = user.map_err(|msg| (n, msg))?;
            let hash = Hash::parse(hash).map_err(|msg| (n, format!("user {user:?}: {msg}")))?;
            if users.insert(user.to_owned(), hash).is_some() {
                return Err((n, format!("user {user:?} is listed twice")));
            }
        }
        Ok(PasswordFile { users })
    }

    pub fn get(&self, user: &str) -> Option<&Hash> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A line's user name and hash text; `None` for a blank or comment line.
fn split_line(line: &str) -> Option<(Result<&str, String>, &str)> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    Some(match line.split_once(':') {
        Some(("", _)) => (Err("empty user name".into()), ""),
        Some((user, hash)) => (Ok(user), hash),
        None => (Err("expected user:hash".into()), ""),
    })
}

/// The file's text with `user`'s hash set to `hash`: its line replaced where it is, or
/// added at the end; every other line (comments included) kept as it was.
pub fn set_user(text: &str, user: &str, hash: &Hash) -> String {
    let new_line = format!("{user}:{}", hash.encode());
    let mut out = String::with_capacity(text.len() + new_line.len() + 1);
    let mut done = false;
    for line in text.lines() {
        let is_user = matches!(split_line(line), Some((Ok(u), _)) if u == user);
        if is_user && !done {
            out.push_str(&new_line);
            done = true;
        } else if !is_user {
            out.push_str(line);
        } else {
            continue;
        }
        out.push('\n');
    }
    if !done {
        out.push_str(&new_line);
        out.push('\n');
    }
    out
}

/// A user name `mosquitto_passwd` would accept: not empty, no `:` (the separator), no
/// control characters, at most 65,535 bytes (an MQTT string).
pub fn valid_user_name(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= usize::from(u16::MAX)
        && !user.contains(':')
        && !user.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b pw alice secret` (Mosquitto 2.0.11).
    const MOSQUITTO_7: &str = "alice:$7$101$jJCTg+IgnMgex2YL$bFjYqCjMDwkj4il0CYhjTXUeLBVCmyH5PZKLBwn1o03PPwHXhWkpD5tVEIx/YH9cmkzLjtWghRpHVrJOXmypcw==\n";

    #[test]
    fn mosquitto_pbkdf2_file_verifies() {
        let f = PasswordFile::parse(MOSQUITTO_7).unwrap();
        let h = f.get("alice").unwrap();
        assert!(h.verify(b"secret"));
        assert!(!h.verify(b"secreT"));
        assert!(!h.verify(b""));
        assert!(f.get("bob").is_none());
        // The hash text goes back out as it came in.
        assert_eq!(format!("alice:{}\n", h.encode()), MOSQUITTO_7);
    }

    /// Written by `mosquitto_passwd -H sha512 -c -b pw olduser secret6` (the 1.x format).
    const MOSQUITTO_6: &str = "olduser:$6$jjbHyUQrxNjIKEep$OjpXQpeqQgdfViuyFq9CciWM2+IMQAKhjAfGJOTqe494eIj8/bneEtA3DBUMzQzm+JbMv0GpdslOZzN/mJXlNw==\n";

    #[test]
    fn mosquitto_sha512_file_verifies() {
        let f = PasswordFile::parse(MOSQUITTO_6).unwrap();
        let h = f.get("olduser").unwrap();
        assert!(matches!(h, Hash::Sha512 { .. }));
        assert!(h.verify(b"secret6"));
        assert!(!h.verify(b"secret"));
        assert_eq!(format!("olduser:{}\n", h.encode()), MOSQUITTO_6);
    }

    #[test]
    fn our_hash_round_trips_and_verifies() {
        let h = Hash::new_pbkdf2(b"p:ss w\xc3\xa9");
        let text = format!("# users\nbob:{}\n", h.encode());
        assert!(text.contains("$7$101$"));
        let f = PasswordFile::parse(&text).unwrap();
        assert!(f.get("bob").unwrap().verify("p:ss wé".as_bytes()));
        assert!(!f.get("bob").unwrap().verify(b"p:ss w"));
    }

    #[test]
    fn sha512_format() {
        let salt = b"0123456789ab".to_vec();
        let digest = Sha512::new()
            .chain_update(b"pw")
            .chain_update(&salt)
            .finalize();
        let h = Hash::Sha512 {
            salt,
            hash: digest.to_vec(),
        };
        let parsed = Hash::parse(&h.encode()).unwrap();
        assert!(parsed.verify(b"pw"));
        assert!(!parsed.verify(b"pW"));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let cases = [
            ("a:$7$101$c2FsdA==$aGFzaA==\n", 1, "64"),
            ("# c\n\nbob\n", 3, "user:hash"),
            ("x:plaintext\n", 1, "plain-text"),
            ("ok:$6$c2FsdA==\n", 1, "$6$<salt>$<hash>"),
            ("y:$7$lots$c2FsdA==$aGFzaA==\n", 1, "not a number"),
            ("z:$7$0$c2FsdA==$aGFzaA==\n", 1, "iteration count is 0"),
            ("w:$7$101$!!$aGFzaA==\n", 1, "base64"),
            (":$6$x$y\n", 1, "empty user name"),
            ("", 0, ""),
        ];
        for (text, line, needle) in cases {
            match PasswordFile::parse(text) {
                Ok(f) => assert_eq!(line, 0, "{text:?} parsed: {f:?}"),
                Err((n, msg)) => {
                    assert_eq!(n, line, "{text:?}: {msg}");
                    assert!(msg.contains(needle), "{text:?}: {msg}");
                }
            }
        }
        let twice = format!("{MOSQUITTO_7}{MOSQUITTO_7}");
        assert_eq!(PasswordFile::parse(&twice).unwrap_err().0, 2);
    }

    #[test]
    fn set_user_replaces_or_appends() {
        let h = Hash::new_pbkdf2(b"x");
        let text = "# keep\nalice:$6$a$b\nbob:$6$c$d\n";
        let out = set_user(text, "alice", &h);
        assert_eq!(out.lines().count(), 3);
        assert!(out.starts_with("# keep\nalice:$7$101$"));
        assert!(out.ends_with("bob:$6$c$d\n"));
        let out = set_user("bob:$6$c$d", "carol", &h);
        assert!(out.starts_with("bob:$6$c$d\ncarol:$7$"));
    }

    #[test]
    fn debug_shows_no_hash() {
        let h = Hash::parse(MOSQUITTO_7.trim().split_once(':').unwrap().1).unwrap();
        assert_eq!(format!("{h:?}"), "$7$ (101 iterations)");
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("alice"));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("a:b"));
        assert!(!valid_user_name("a\nb"));
    }
}
