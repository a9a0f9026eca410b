//! Secrets kept out of sight. In memory they are [`crate::config::Secret`]s, whose `Debug`
//! never shows them; but other crates log what they hold too (the AWS SDK, at trace level,
//! prints the access key id of the credentials it signs with), so the log writer
//! ([`Redacting`]) also replaces each configured secret value in every line. At rest: a
//! configuration file (`--config`) or backend file (`--backend-conf`) that holds a secret
//! (the HTTP token, AWS credentials) and that other users can read gets a warning at start
//! naming the file and the fix.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use dynamq_store::backend_conf::BackendConf;

use crate::config::Config;

/// One warning line for each of the files given that holds a secret and whose mode lets its
/// group or others read it.
pub fn exposed_files(config: Option<&Path>, backend_conf: Option<&Path>) -> Vec<String> {
    let mut warnings = Vec::new();
    let files = [
        (config, "an HTTP token or AWS credentials"),
        (backend_conf, "AWS credentials"),
    ];
    for (i, (path, what)) in files.into_iter().enumerate() {
        let Some(path) = path else { continue };
        let Some(mode) = open_mode(path) else {
            continue;
        };
        // Read again only when its mode is open: the start has already read it once.
        let holds = if i == 0 {
            Config::load(path).is_ok_and(|c| c.holds_secret())
        } else {
            BackendConf::from_file(path).is_ok_and(|c| c.holds_secret())
        };
        if holds {
            warnings.push(format!(
                "{} holds {what} and is readable by other users (mode {mode:03o}): \
                 chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    warnings
}

/// The log's writer (standard error) with every configured secret replaced by
/// `<redacted>` in each line. tracing's formatter writes an event in one `write` call, so a
/// secret is never split across two. Secrets shorter than `MIN_REDACTED` bytes are not
/// looked for: they would blank common words out of every line.
#[derive(Clone, Debug, Default)]
pub struct Redacting {
    secrets: Arc<[String]>,
}

/// Shortest secret the log writer looks for.
const MIN_REDACTED: usize = 4;

impl Redacting {
    /// A writer that hides the secret values of `config` (the HTTP token, AWS credentials).
    pub fn for_config(config: &Config) -> Redacting {
        let d = &config.store.dynamo;
        let secrets = [
            config.listeners.http_token.as_ref(),
            d.access_key_id.as_ref(),
            d.secret_access_key.as_ref(),
        ];
        Redacting {
            secrets: secrets
                .into_iter()
                .flatten()
                .map(|s| s.expose().to_owned())
                .filter(|s| s.len() >= MIN_REDACTED)
                .collect(),
        }
    }

    /// `line` with every secret replaced.
    fn redact<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Ok(text) = std::str::from_utf8(line) else {
            return line.into();
        };
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return line.into();
        }
        let mut text = text.to_owned();
        for s in self.secrets.iter() {
            text = text.replace(s.as_str(), "<redacted>");
        }
        text.into_bytes().into()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> RedactingWriter {
        RedactingWriter(self.clone())
    }
}

/// One event's writer (see [`Redacting`]).
#[derive(Debug)]
pub struct RedactingWriter(Redacting);

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&self.0.redact(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The permission bits of `path` if its group or others may read it (or anything else).
#[cfg(unix)]
fn open_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn open_mode(_path: &Path) -> Option<u32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn open_files_with_secrets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("dynamq.toml");
        let backend = dir.path().join("backend.conf");
        let plain = dir.path().join("plain.toml");
        std::fs::write(&conf, "[listeners]\nhttp_token = \"tok-123\"\n").unwrap();
        std::fs::write(
            &backend,
            "backend.dynamo.pool1.aws_secret_access_key = abc\n",
        )
        .unwrap();
        std::fs::write(&plain, "node_name = \"n\"\n").unwrap();
        for p in [&conf, &backend, &plain] {
            chmod(p, 0o644);
        }
        let w = exposed_files(Some(&conf), Some(&backend));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("dynamq.toml") && w[0].contains("chmod 600"),
            "{w:?}"
        );
        assert!(w[0].contains("644"), "{w:?}");
        assert!(w[1].contains("backend.conf"), "{w:?}");
        assert!(
            w.iter()
                .all(|l| !l.contains("tok-123") && !l.contains("abc"))
        );
        // A file without a secret, or one only its owner reads: nothing to say.
        assert!(exposed_files(Some(&plain), None).is_empty());
        chmod(&conf, 0o600);
        chmod(&backend, 0o400);
        assert!(exposed_files(Some(&conf), Some(&backend)).is_empty());
    }

    #[test]
    fn the_log_writer_hides_configured_secrets() {
        let mut cfg = Config::default();
        cfg.listeners.http_token = Some("tok-123456".into());
        cfg.store.dynamo.access_key_id = Some("AKIAXYZ".into());
        cfg.store.dynamo.secret_access_key = Some("abc".into()); // too short to look for
        let r = Redacting::for_config(&cfg);
        let line = b"Credentials { access_key_id: \"AKIAXYZ\" } Bearer tok-123456 abc\n";
        assert_eq!(
            &*r.redact(line),
            &b"Credentials { access_key_id: \"<redacted>\" } Bearer <redacted> abc\n"[..]
        );
        assert!(matches!(
            r.redact(b"nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
