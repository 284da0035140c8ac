//! Backup files given to `jitgate-broker restore`. An operator's, but a
//! file cut short, edited or from somewhere else must be refused with a
//! message, never crash the restore.

use jitgate_broker::store::backup::{check, KEY_FILES};

/// A backup file as `restore` reads it (header, key files, entries, end
/// line checked against the entries).
pub fn backup_file(data: &[u8]) {
    let mut input = data;
    if let Ok(summary) = check(&mut input) {
        // What checks carries every key file and all it promised.
        assert!(summary.key_files >= KEY_FILES.len(), "{summary:?}");
    }
}
