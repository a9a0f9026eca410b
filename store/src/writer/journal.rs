//! The writer's journal file: where ops go while the memory buffer is full, and what is
//! replayed at start after a crash or a restart.
//!
//! Append-only records `[len u32 LE][crc32 u32 LE][payload]`: the CRC (crc32fast, IEEE)
//! covers the length bytes and the payload; the payload is postcard ([`super::record_form`]).
//! One thread owns the file and does all its blocking I/O, in the order the batcher asks:
//! appends come in groups, each written then `fdatasync`ed before it is acknowledged; reads
//! never go past what was synced, so an op is applied to the store only once its record is
//! durable (a crash never leaves a journal that misses an op the store already has).
//!
//! A record whose length or checksum does not hold (a torn write at a crash, a bad sector)
//! stops the scan there: the bytes from that offset on are moved to
//! `journal.quarantine.<unix-ms>` in the same directory (never silently discarded) and the
//! journal is cut at the offset, so appends continue after the last good record.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::record_form;
use crate::op::WriteOp;

/// The journal's file name in its directory.
pub const JOURNAL_FILE: &str = "store.journal";
/// The prefix of quarantine files (`journal.quarantine.<unix-ms>`).
pub const QUARANTINE_PREFIX: &str = "journal.quarantine.";
/// Record header: length and CRC.
const HEADER: u64 = 8;

/// Where the journal lives and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The directory of the journal file (the broker's `data_dir`).
    pub dir: PathBuf,
    /// Most bytes the journal file holds; once full, ops that would go to it are dropped
    /// (counted in `dropped_journal_full`).
    pub max_bytes: u64,
}

impl JournalConfig {
    /// A journal in `dir` with the default bound (1 GiB).
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            max_bytes: 1 << 30,
        }
    }
}

/// What the journal held when it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Good records found (to be replayed, in order).
    pub records: u64,
    /// Their bytes (the journal's size after any cut).
    pub bytes: u64,
    /// Sequence number of the last good record (the writer continues after it).
    pub last_seq: Option<u64>,
    /// Where a corrupt record stopped the scan, and the quarantine file that holds the bytes
    /// from there on.
    pub quarantined: Option<(u64, PathBuf)>,
}

/// A request to the journal thread.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Append these encoded records and sync.
    Append(Vec<u8>),
    /// Read the next records after those already read, up to about this many bytes.
    Read(u64),
    /// Cut the file to empty (every record was applied).
    Truncate,
}

/// The journal thread's answers, in the order of the requests.
#[derive(Debug)]
pub(super) enum Reply {
    Opened(io::Result<Recovery>),
    /// The group was written and synced; on error it was cut off again.
    Appended(io::Result<()>),
    Read(ReadBatch),
    Truncated(io::Result<()>),
}

/// Records read back, in order.
#[derive(Debug, Default)]
pub(super) struct ReadBatch {
    pub(super) ops: Vec<(u64, WriteOp)>,
    /// The records from this offset on were corrupt: moved to a quarantine file, and the
    /// journal cut there (the batcher counts them as lost).
    pub(super) corrupt_at: Option<u64>,
}

/// The record bytes (header and payload) of one op.
pub(super) fn encode_record(seq: u64, op: &WriteOp) -> Result<Vec<u8>, postcard::Error> {
    let payload = record_form::encode(seq, op)?;
    let len = u32::try_from(payload.len()).map_err(|_| postcard::Error::SerializeBufferFull)?;
    let mut out = Vec::with_capacity(payload.len() + HEADER as usize);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(len, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Starts the thread that owns the journal in `config.dir`; its first reply is `Opened`.
pub(super) fn spawn(
    config: &JournalConfig,
    replies: mpsc::UnboundedSender<Reply>,
) -> io::Result<std::sync::mpsc::Sender<Cmd>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = config.dir.clone();
    std::thread::Builder::new()
        .name("dynamq-journal".into())
        .spawn(move || {
            let mut journal = match Journal::open(&dir) {
                Ok((j, recovery)) => {
                    let _ = replies.send(Reply::Opened(Ok(recovery)));
                    j
                }
                Err(e) => {
                    let _ = replies.send(Reply::Opened(Err(e)));
                    return;
                }
            };
            while let Ok(cmd) = rx.recv() {
                let reply = match cmd {
                    Cmd::Append(bytes) => Reply::Appended(journal.append(&bytes)),
                    Cmd::Read(max) => Reply::Read(journal.read(max)),
                    Cmd::Truncate => Reply::Truncated(journal.truncate()),
                };
                if replies.send(reply).is_err() {
                    break;
                }
            }
        })?;
    Ok(tx)
}

/// The open journal file.
struct Journal {
    dir: PathBuf,
    file: File,
    /// Bytes written and synced: appends go here, reads stop here.
    len: u64,
    /// Offset of the next record to read back.
    read_at: u64,
}

impl Journal {
    /// Opens (creating) the journal and checks every record; cuts off and quarantines a
    /// corrupt tail.
    fn open(dir: &Path) -> io::Result<(Journal, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(JOURNAL_FILE))?;
        let size = file.metadata()?.len();
        let mut journal = Journal {
            dir: dir.to_owned(),
            file,
            len: size,
            read_at: 0,
        };
        let mut recovery = Recovery::default();
        let mut reader = BufReader::new(&journal.file);
        reader.seek(SeekFrom::Start(0))?;
        let mut offset = 0;
        while offset < size {
            match read_record(&mut reader, size - offset)? {
                Some((n, seq, _)) => {
                    offset += n;
                    recovery.records += 1;
                    recovery.last_seq = Some(seq);
                }
                None => break,
            }
        }
        drop(reader);
        if offset < size {
            let path = journal.quarantine(offset)?;
            recovery.quarantined = Some((offset, path));
        }
        recovery.bytes = journal.len;
        Ok((journal, recovery))
    }

    /// Moves the bytes from `offset` on to a new quarantine file and cuts the journal there.
    fn quarantine(&mut self, offset: u64) -> io::Result<PathBuf> {
        let path = self.dir.join(format!(
            "{QUARANTINE_PREFIX}{}",
            crate::record::now_millis()
        ));
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        self.file.seek(SeekFrom::Start(offset))?;
        io::copy(&mut (&self.file).take(self.len - offset), &mut out)?;
        out.sync_all()?;
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        error!(offset, bytes = self.len - offset, quarantine = %path.display(),
            "store journal: corrupt record, replay stops here; the rest is kept in the quarantine file");
        self.len = offset;
        Ok(path)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let result = (|| {
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(bytes)?;
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut off what may have been written, so a later group follows good records.
                if let Err(e2) = self.file.set_len(self.len) {
                    warn!(error = %e2, "store journal: cannot cut a failed append");
                }
                Err(e)
            }
        }
    }

    fn read(&mut self, max: u64) -> ReadBatch {
        let mut batch = ReadBatch::default();
        let result = (|| -> io::Result<Option<u64>> {
            let mut reader = BufReader::new(&self.file);
            reader.seek(SeekFrom::Start(self.read_at))?;
            let mut taken = 0;
            while self.read_at < self.len && taken < max {
                match read_record(&mut reader, self.len - self.read_at)? {
                    Some((n, seq, op)) => {
                        self.read_at += n;
                        taken += n;
                        batch.ops.push((seq, op));
                    }
                    None => return Ok(Some(self.read_at)),
                }
            }
            Ok(None)
        })();
        let corrupt_at = match result {
            Ok(at) => at,
            Err(e) => {
                error!(error = %e, offset = self.read_at, "store journal: read failed");
                Some(self.read_at)
            }
        };
        if let Some(at) = corrupt_at {
            if let Err(e) = self.quarantine(at) {
                error!(error = %e, offset = at, "store journal: cannot quarantine the rest; cutting it off");
                if let Err(e) = self.file.set_len(at) {
                    error!(error = %e, "store journal: cannot cut the file");
                }
                self.len = at;
            }
            batch.corrupt_at = Some(at);
        }
        batch
    }

    fn truncate(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        self.read_at = 0;
        Ok(())
    }
}

/// Reads one record of at most `left` bytes: `(record bytes, seq, op)`, or `None` if its
/// length, checksum or payload is bad.
fn read_record(r: &mut impl Read, left: u64) -> io::Result<Option<(u64, u64, WriteOp)>> {
    if left < HEADER {
        return Ok(None);
    }
    let mut header = [0u8; 8];
    r.read_exact(&mut header)?;
    let [a, b, c, d, e, f, g, h] = header;
    let len = u32::from_le_bytes([a, b, c, d]);
    let sum = u32::from_le_bytes([e, f, g, h]);
    if u64::from(len) > left - HEADER {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if crc(len, &payload) != sum {
        return Ok(None);
    }
    match record_form::decode(&payload) {
        Ok((seq, op)) => Ok(Some((HEADER + u64::from(len), seq, op))),
        Err(e) => {
            warn!(error = %e, "store journal: a record with a good checksum does not decode");
            Ok(None)
        }
    }
}
