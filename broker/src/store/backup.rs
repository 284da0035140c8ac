//! Backups of the embedded store and the keys beside it
//! (`jitgate-broker backup` and `restore`).
//!
//! A backup is one file of JSON lines: a [`Header`], the data directory's
//! key files, every [`Entry`] of the store as of one instant, and an
//! [`End`] giving the number of entries and their digest, so a file cut
//! short or edited is refused rather than restored in part. It holds the
//! CA's and the signing keys' secrets: it is written readable by its owner
//! only, and should be kept like the data directory itself.

use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dump::{self, Entry, Tally};
use super::sled::{SledStore, FORMAT, STORE_DIR};
use super::{Store, StoreError};
use crate::audit::anchor::AnchorSigner;
use crate::audit::verify::{verify_stored, Broken};
use crate::tls;

/// The layout of backup files this broker writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// The files of a data directory a backup carries besides the store:
/// without them a restored broker would have a new CA (agents pin the old
/// one), a new command key (agents would refuse its commands) and a new
/// audit key (the signed heads would not verify).
pub const KEY_FILES: [&str; 4] = [
    tls::CA_CERT_FILE,
    tls::CA_KEY_FILE,
    tls::COMMAND_KEY_FILE,
    tls::AUDIT_KEY_FILE,
];

/// What a backup file starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// [`BACKUP_FORMAT`] of the broker that wrote it.
    pub backup_format: u32,
    /// The store [`FORMAT`] of the broker that wrote it.
    pub store_format: u32,
    pub broker_version: String,
    pub taken_at: DateTime<Utc>,
}

/// A file of the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub name: String,
    pub base64: String,
}

/// What a backup file ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    pub entries: u64,
    pub digest: String,
}

/// One line of a backup file. Entries are most lines and are written and
/// read one at a time: boxing them would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Backup(Header),
    KeyFile(KeyFile),
    Entry(Entry),
    End(End),
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} of the backup: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("the backup is of format {found}, newer than this broker's ({BACKUP_FORMAT}); restore it with the jitgate-broker that took it")]
    NewerBackup { found: u32 },
    #[error("the backup holds a store of format {found}, newer than this broker's ({FORMAT}); restore it with the jitgate-broker that took it")]
    NewerStore { found: u32 },
    #[error("the backup ends early (no end line after {entries} entries): it was cut short; nothing should be restored from it")]
    CutShort { entries: u64 },
    #[error("the backup's entries do not match its end line ({found} entries read, {expected} recorded, or their digest differs): it was changed after it was taken")]
    Differs { expected: u64, found: u64 },
    #[error("the backup lacks {0}")]
    MissingKeyFile(String),
    #[error(
        "{0} is not empty: restore into a new data directory (the broker stopped), never over a live one"
    )]
    NotEmpty(String),
    #[error("the restored store differs from the backup: {0}")]
    Restored(String),
    #[error("the restored audit chain does not verify: {0}")]
    Chain(Broken),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a backup or a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub audit_records: u64,
    pub key_files: usize,
    pub taken_at: DateTime<Utc>,
}

fn write_line(out: &mut dyn Write, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// Writes a backup of `store` and the key files of `data_dir` to `out`:
/// the store as of one instant, while the broker keeps running (writers
/// wait for the entries to be written: give a local file).
pub fn take(
    store: &SledStore,
    data_dir: &Path,
    taken_at: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<Summary, BackupError> {
    let header = Header {
        backup_format: BACKUP_FORMAT,
        store_format: FORMAT,
        broker_version: env!("CARGO_PKG_VERSION").to_owned(),
        taken_at,
    };
    let to_out = |e: std::io::Error| BackupError::Io {
        path: "the backup".into(),
        source: e,
    };
    write_line(out, &Line::Backup(header)).map_err(to_out)?;
    for name in KEY_FILES {
        let path = data_dir.join(name);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let file = KeyFile {
            name: name.to_owned(),
            base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        write_line(out, &Line::KeyFile(file)).map_err(to_out)?;
    }
    let mut tally = Tally::default();
    let mut audit_records = 0;
    store.snapshot(&mut |entry| {
        tally.add(&entry);
        audit_records += u64::from(matches!(entry, Entry::Audit(_)));
        write_line(out, &Line::Entry(entry)).map_err(StoreError::backend)
    })?;
    let end = End {
        entries: tally.entries,
        digest: tally.digest(),
    };
    write_line(out, &Line::End(end)).map_err(to_out)?;
    out.flush().map_err(to_out)?;
    Ok(Summary {
        entries: tally.entries,
        audit_records,
        key_files: KEY_FILES.len(),
        taken_at,
    })
}

/// A backup being read: its header, then its entries; the end line is
/// checked against what was read before the last entry is let go of.
struct Reader<'a> {
    lines: Lines<'a>,
    header: Header,
    keys: Vec<KeyFile>,
    tally: Tally,
    audit_records: u64,
}

impl<'a> Reader<'a> {
    /// Reads the header, refusing a backup of a newer format.
    fn open(input: &'a mut dyn BufRead) -> Result<Self, BackupError> {
        let mut lines = Lines { input, number: 0 };
        let header = match lines.next()? {
            Some(Line::Backup(h)) => h,
            _ => return Err(lines.malformed("a backup starts with its header")),
        };
        if header.backup_format > BACKUP_FORMAT {
            return Err(BackupError::NewerBackup {
                found: header.backup_format,
            });
        }
        if header.store_format > FORMAT {
            return Err(BackupError::NewerStore {
                found: header.store_format,
            });
        }
        Ok(Self {
            lines,
            header,
            keys: Vec::new(),
            tally: Tally::default(),
            audit_records: 0,
        })
    }

    /// The next entry; `None` once the end line is read and matches every
    /// entry before it.
    fn next_entry(&mut self) -> Result<Option<Entry>, BackupError> {
        loop {
            match self.lines.next()? {
                Some(Line::KeyFile(k)) if self.tally.entries == 0 => self.keys.push(k),
                Some(Line::Entry(e)) => {
                    self.tally.add(&e);
                    self.audit_records += u64::from(matches!(e, Entry::Audit(_)));
                    return Ok(Some(e));
                }
                Some(Line::End(end)) => {
                    if self.lines.next()?.is_some() {
                        return Err(self.lines.malformed("a line after the end line"));
                    }
                    if end.entries != self.tally.entries || end.digest != self.tally.digest() {
                        return Err(BackupError::Differs {
                            expected: end.entries,
                            found: self.tally.entries,
                        });
                    }
                    return Ok(None);
                }
                Some(_) => return Err(self.lines.malformed("out of place")),
                None => {
                    return Err(BackupError::CutShort {
                        entries: self.tally.entries,
                    })
                }
            }
        }
    }

    /// A key file the backup carries, decoded.
    fn key_file(&self, name: &str) -> Result<Vec<u8>, BackupError> {
        let file = self
            .keys
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| BackupError::MissingKeyFile(name.to_owned()))?;
        base64::engine::general_purpose::STANDARD
            .decode(&file.base64)
            .map_err(|e| BackupError::MissingKeyFile(format!("{name} (unreadable: {e})")))
    }

    fn summary(&self) -> Summary {
        Summary {
            entries: self.tally.entries,
            audit_records: self.audit_records,
            key_files: self.keys.len(),
            taken_at: self.header.taken_at,
        }
    }
}

/// Reads a whole backup, checking it is complete and unchanged, and that
/// it carries every key file (what `backup` does to the file it wrote).
pub fn check(input: &mut dyn BufRead) -> Result<Summary, BackupError> {
    let mut reader = Reader::open(input)?;
    while reader.next_entry()?.is_some() {}
    for name in KEY_FILES {
        reader.key_file(name)?;
    }
    Ok(reader.summary())
}

/// Restores a backup read from `input` into `data_dir`, which must hold
/// no store and no key files yet (a new data directory, no broker
/// running). The store is loaded beside where it goes and checked (the
/// entries the end line promises, the same entries in the store, an audit
/// chain that verifies); only then are the key files written and the
/// store moved into place, so a failed restore leaves nothing a broker
/// would start on. `progress` hears the entries loaded so far.
pub async fn restore(
    input: &mut dyn BufRead,
    data_dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<Summary, BackupError> {
    let target = data_dir.join(STORE_DIR);
    if target.exists() || KEY_FILES.iter().any(|name| data_dir.join(name).exists()) {
        return Err(BackupError::NotEmpty(data_dir.display().to_string()));
    }
    let mut reader = Reader::open(input)?;
    let loading = data_dir.join(format!("{STORE_DIR}.restoring"));
    // What an earlier restore that failed left.
    if loading.exists() {
        std::fs::remove_dir_all(&loading).map_err(io(&loading))?;
    }
    let keys = match load(&mut reader, &loading, &mut progress).await {
        Ok(keys) => keys,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&loading);
            return Err(e);
        }
    };
    for (name, bytes) in keys {
        let path = data_dir.join(name);
        tls::write_private_bytes(&path, &bytes).map_err(|e| BackupError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    std::fs::rename(&loading, &target).map_err(io(&target))?;
    Ok(reader.summary())
}

/// Loads the backup's entries into a store at `dir` and checks it; gives
/// the key files to write once the store is closed.
async fn load(
    reader: &mut Reader<'_>,
    dir: &Path,
    progress: &mut impl FnMut(u64),
) -> Result<Vec<(&'static str, Vec<u8>)>, BackupError> {
    let store = SledStore::open(dir)?;
    let mut page = Vec::with_capacity(dump::PAGE);
    while let Some(entry) = reader.next_entry()? {
        page.push(entry);
        if page.len() == dump::PAGE {
            store.load(std::mem::take(&mut page)).await?;
            progress(reader.tally.entries);
        }
    }
    store.load(page).await?;
    progress(reader.tally.entries);
    let restored = dump::tally(&store).await?;
    if restored != reader.tally {
        return Err(BackupError::Restored(format!(
            "{} entries in the backup, {} in the store",
            reader.tally.entries, restored.entries
        )));
    }
    // The chain, and the signed head with the backup's own audit key.
    let audit_key: [u8; 32] = reader
        .key_file(tls::AUDIT_KEY_FILE)?
        .try_into()
        .map_err(|_| BackupError::MissingKeyFile(format!("{} (not 32 bytes)", tls::AUDIT_KEY_FILE)))?;
    let key = AnchorSigner::from_secret(&audit_key).verifier();
    let report = verify_stored(&store, Some(&key), |_| {}).await?;
    if let Some(broken) = report.broken {
        return Err(BackupError::Chain(broken));
    }
    KEY_FILES
        .iter()
        .map(|name| Ok((*name, reader.key_file(name)?)))
        .collect()
}

/// A backup's lines, numbered for errors.
struct Lines<'a> {
    input: &'a mut dyn BufRead,
    number: u64,
}

impl Lines<'_> {
    fn next(&mut self) -> Result<Option<Line>, BackupError> {
        let mut text = String::new();
        let read = self.input.read_line(&mut text).map_err(|e| BackupError::Io {
            path: "the backup".into(),
            source: e,
        })?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if !text.ends_with('\n') {
            // The last line of a file cut short mid-line.
            return Err(self.malformed("cut short mid-line"));
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| self.malformed(&e.to_string()))
    }

    fn malformed(&self, reason: &str) -> BackupError {
        BackupError::Malformed {
            line: self.number,
            reason: reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{config, entry, grant, request, user};
    use crate::store::Change;

    /// What the fixture's key file `name` holds: 32 bytes of its own.
    fn key_bytes(name: &str) -> Vec<u8> {
        let mut bytes = name.as_bytes().to_vec();
        bytes.resize(32, b'.');
        bytes
    }

    /// A data directory with key files and a store holding a grant and an
    /// audit chain; the store is opened where a broker keeps it.
    async fn data_dir() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        for name in KEY_FILES {
            tls::write_private_bytes(&dir.path().join(name), &key_bytes(name)).unwrap();
        }
        let store = SledStore::open(&dir.path().join(STORE_DIR)).unwrap();
        let alice = user("alice");
        let r = request(&alice, 0);
        let g = grant(&r, 0);
        store
            .commit(Change {
                configurations: vec![config("aws")],
                users: vec![alice],
                requests: vec![r],
                grants: vec![g],
                audit: vec![entry(), entry(), entry()],
                ..Change::default()
            })
            .await
            .unwrap();
        (dir, store)
    }

    async fn backup_text() -> String {
        let (dir, store) = data_dir().await;
        let mut out = Vec::new();
        let taken = take(&store, dir.path(), crate::store::conformance::t(0), &mut out).unwrap();
        assert_eq!(taken.audit_records, 3);
        String::from_utf8(out).unwrap()
    }

    async fn restore_text(text: &str) -> (tempfile::TempDir, Result<Summary, BackupError>) {
        let into = tempfile::tempdir().unwrap();
        let restored = restore(&mut text.as_bytes(), into.path(), |_| {}).await;
        (into, restored)
    }

    /// Nothing a broker would start on, nothing half restored: no store,
    /// no keys.
    fn left_nothing(dir: &Path) {
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "{dir:?}");
        for name in KEY_FILES {
            assert!(!dir.join(name).exists(), "{name}");
        }
    }

    #[tokio::test]
    async fn a_backup_restores_the_same_entries_and_keys() {
        let text = backup_text().await;
        let checked = check(&mut text.as_bytes()).unwrap();
        let (into, restored) = restore_text(&text).await;
        let restored = restored.unwrap();
        assert_eq!(restored, checked);
        assert_eq!(restored.key_files, KEY_FILES.len());
        for name in KEY_FILES {
            assert_eq!(std::fs::read(into.path().join(name)).unwrap(), key_bytes(name));
        }
        // The restore's own handle was just dropped.
        let store = crate::testing::open_sled_when_free(&into.path().join(STORE_DIR)).await;
        assert_eq!(dump::tally(&store).await.unwrap().entries, restored.entries);
        assert_eq!(store.audit_head().await.unwrap().seq, 3);
    }

    #[tokio::test]
    async fn a_backup_cut_short_is_refused_and_leaves_nothing() {
        let text = backup_text().await;
        let lines: Vec<&str> = text.lines().collect();
        // Without its end line, and cut mid-line.
        let without_end = lines[..lines.len() - 1].join("\n") + "\n";
        let (into, restored) = restore_text(&without_end).await;
        assert!(
            matches!(restored, Err(BackupError::CutShort { .. })),
            "{restored:?}"
        );
        left_nothing(into.path());
        let mid_line = &text[..text.len() - 10];
        let (into, restored) = restore_text(mid_line).await;
        assert!(
            matches!(restored, Err(BackupError::Malformed { .. })),
            "{restored:?}"
        );
        left_nothing(into.path());
        assert!(check(&mut without_end.as_bytes()).is_err());
    }

    #[tokio::test]
    async fn a_backup_changed_after_it_was_taken_is_refused() {
        let text = backup_text().await;
        // A valid entry, edited: the requester becomes someone else.
        let edited = text.replacen("alice", "mallory", 1);
        assert_ne!(edited, text);
        let (into, restored) = restore_text(&edited).await;
        assert!(
            matches!(restored, Err(BackupError::Differs { .. })),
            "{restored:?}"
        );
        left_nothing(into.path());
        // An entry dropped from the middle.
        let lines: Vec<&str> = text.lines().collect();
        let dropped = [&lines[..6], &lines[7..]].concat().join("\n") + "\n";
        let (_, restored) = restore_text(&dropped).await;
        assert!(
            matches!(restored, Err(BackupError::Differs { .. })),
            "{restored:?}"
        );
        // A line after the end.
        let (_, restored) = restore_text(&format!("{text}{}\n", lines[6])).await;
        assert!(
            matches!(restored, Err(BackupError::Malformed { .. })),
            "{restored:?}"
        );
    }

    #[tokio::test]
    async fn a_backup_of_a_newer_format_or_missing_a_key_is_refused() {
        let text = backup_text().await;
        let newer = text.replacen("\"backup_format\":1", "\"backup_format\":2", 1);
        let (_, restored) = restore_text(&newer).await;
        assert!(
            matches!(restored, Err(BackupError::NewerBackup { found: 2 })),
            "{restored:?}"
        );
        let newer_store = text.replacen(
            &format!("\"store_format\":{FORMAT}"),
            &format!("\"store_format\":{}", FORMAT + 1),
            1,
        );
        let (_, restored) = restore_text(&newer_store).await;
        assert!(
            matches!(restored, Err(BackupError::NewerStore { .. })),
            "{restored:?}"
        );
        let without_key: String = text
            .lines()
            .filter(|l| !l.contains("\"command.key\""))
            .map(|l| format!("{l}\n"))
            .collect();
        let (into, restored) = restore_text(&without_key).await;
        assert!(
            matches!(&restored, Err(BackupError::MissingKeyFile(k)) if k == tls::COMMAND_KEY_FILE),
            "{restored:?}"
        );
        left_nothing(into.path());
        let (_, restored) = restore_text("{\"entry\":{}}\n").await;
        assert!(
            matches!(restored, Err(BackupError::Malformed { line: 1, .. })),
            "{restored:?}"
        );
    }

    #[tokio::test]
    async fn a_backup_whose_signed_head_another_key_signed_is_refused() {
        let (dir, store) = data_dir().await;
        let head = store.audit_head().await.unwrap();
        // Signed by a key that is not the backup's audit key.
        let stranger = AnchorSigner::from_secret(&[9u8; 32]);
        store
            .commit(Change {
                audit_anchor: Some(stranger.sign(&head, crate::store::conformance::t(1))),
                ..Change::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        take(&store, dir.path(), crate::store::conformance::t(2), &mut out).unwrap();
        let (into, restored) = restore_text(&String::from_utf8(out).unwrap()).await;
        assert!(matches!(restored, Err(BackupError::Chain(_))), "{restored:?}");
        left_nothing(into.path());
        // Signed by the backup's own key, it restores.
        let (dir, store) = data_dir().await;
        let own = AnchorSigner::from_secret(&key_bytes(tls::AUDIT_KEY_FILE).try_into().unwrap());
        let head = store.audit_head().await.unwrap();
        store
            .commit(Change {
                audit_anchor: Some(own.sign(&head, crate::store::conformance::t(1))),
                ..Change::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        take(&store, dir.path(), crate::store::conformance::t(2), &mut out).unwrap();
        let (_, restored) = restore_text(&String::from_utf8(out).unwrap()).await;
        restored.unwrap();
    }

    #[tokio::test]
    async fn a_restore_never_lands_on_a_data_directory_in_use() {
        let text = backup_text().await;
        let (occupied, _store) = data_dir().await;
        let restored = restore(&mut text.as_bytes(), occupied.path(), |_| {}).await;
        assert!(matches!(restored, Err(BackupError::NotEmpty(_))), "{restored:?}");
        // Keys alone are enough to refuse.
        let keys_only = tempfile::tempdir().unwrap();
        std::fs::write(keys_only.path().join(tls::CA_KEY_FILE), b"k").unwrap();
        let restored = restore(&mut text.as_bytes(), keys_only.path(), |_| {}).await;
        assert!(matches!(restored, Err(BackupError::NotEmpty(_))), "{restored:?}");
    }

    #[tokio::test]
    async fn a_store_of_a_newer_format_is_refused_at_open() {
        // Marked without opening the store first: a store dropped in this
        // process keeps sled's file lock until its flusher's next wake.
        let dir = tempfile::tempdir().unwrap();
        super::super::sled::mark_format(dir.path(), FORMAT + 1).unwrap();
        let refused = SledStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains(&format!(
                "of format {}, newer than this broker's ({FORMAT})",
                FORMAT + 1
            )),
            "{refused}"
        );
        let current = tempfile::tempdir().unwrap();
        super::super::sled::mark_format(current.path(), FORMAT).unwrap();
        SledStore::open(current.path()).unwrap();
    }
}
