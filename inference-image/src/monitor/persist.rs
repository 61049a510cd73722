//! Monitoring history on disk: one SQLite file (WAL mode) in the state directory, one row per
//! minute bucket. Changed minutes are written in one transaction every flush interval, so a hard
//! kill loses at most that interval. A file that is corrupt, not ours, or from a model with other
//! features is set aside (renamed, with a warning) and the service starts fresh: never a crash loop.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use super::bucket::Bucket;

pub const FILE_NAME: &str = "monitor.sqlite";
/// "MLOP": marks the file as this service's.
const APPLICATION_ID: i64 = 0x4D4C_4F50;
const SCHEMA_VERSION: i64 = 1;

pub struct Store {
    conn: Connection,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot use the state directory {path}: {reason}")]
    Directory { path: PathBuf, reason: String },
    #[error("monitoring state {path}: {reason}")]
    Sqlite { path: PathBuf, reason: String },
}

impl Store {
    /// Opens (or creates) the store for a model whose bucket layout is described by `fingerprint`.
    /// Returns the store, the buckets it held, and a warning if an unusable file was set aside.
    pub fn open(
        dir: &Path,
        fingerprint: &str,
    ) -> Result<(Self, Vec<Bucket>, Option<String>), PersistError> {
        std::fs::create_dir_all(dir).map_err(|e| PersistError::Directory {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = dir.join(FILE_NAME);
        let mut warning = None;
        if path.exists() {
            match Self::load(&path, fingerprint) {
                Ok((store, buckets)) => return Ok((store, buckets, None)),
                Err(reason) => {
                    let aside = set_aside(&path)?;
                    warning = Some(format!(
                        "monitoring state {} could not be used ({reason}); moved it to {} and started fresh",
                        path.display(),
                        aside.display()
                    ));
                }
            }
        }
        let conn = Connection::open(&path).map_err(|e| sqlite_error(&path, e))?;
        let store = Self { conn, path };
        store
            .init(fingerprint)
            .map_err(|e| sqlite_error(&store.path, e))?;
        Ok((store, Vec::new(), warning))
    }

    fn load(path: &Path, fingerprint: &str) -> Result<(Self, Vec<Bucket>), String> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| e.to_string())?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| format!("not a readable SQLite file: {e}"))?;
        if check != "ok" {
            return Err(format!("integrity check failed: {check}"));
        }
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if app != APPLICATION_ID || version != SCHEMA_VERSION {
            return Err(format!(
                "not this service's file (application_id {app:#x}, schema {version})"
            ));
        }
        let stored: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'layout'", [], |r| {
                r.get(0)
            })
            .map_err(|e| format!("no layout recorded: {e}"))?;
        if stored != fingerprint {
            return Err("it was written for a model with other features or bins".to_string());
        }
        let mut buckets = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT data FROM buckets ORDER BY minute")
                .map_err(|e| e.to_string())?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| e.to_string())?;
            for row in rows {
                let text = row.map_err(|e| e.to_string())?;
                buckets.push(
                    serde_json::from_str::<Bucket>(&text)
                        .map_err(|e| format!("a bucket does not decode: {e}"))?,
                );
            }
        }
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.init(fingerprint).map_err(|e| e.to_string())?;
        Ok((store, buckets))
    }

    fn init(&self, fingerprint: &str) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn
            .pragma_update(None, "application_id", APPLICATION_ID)?;
        self.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION)?;
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS buckets (minute INTEGER PRIMARY KEY, data TEXT NOT NULL);",
        )?;
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('layout', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![fingerprint],
        )?;
        Ok(())
    }

    /// Writes `buckets` (replacing those minutes) and drops minutes before `keep_from`, atomically.
    pub fn save(&mut self, buckets: &[Bucket], keep_from: i64) -> Result<(), PersistError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sqlite_error(&path, e))?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO buckets (minute, data) VALUES (?1, ?2) ON CONFLICT(minute) DO UPDATE SET data = excluded.data")
                .map_err(|e| sqlite_error(&path, e))?;
            for b in buckets {
                let data = serde_json::to_string(b).expect("buckets serialize");
                stmt.execute(params![b.minute, data])
                    .map_err(|e| sqlite_error(&path, e))?;
            }
            tx.execute("DELETE FROM buckets WHERE minute < ?1", params![keep_from])
                .map_err(|e| sqlite_error(&path, e))?;
        }
        tx.commit().map_err(|e| sqlite_error(&path, e))
    }
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> PersistError {
    PersistError::Sqlite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Renames the file (and its WAL/SHM companions) out of the way.
fn set_aside(path: &Path) -> Result<PathBuf, PersistError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let aside = path.with_extension(format!("sqlite.set-aside-{stamp}"));
    std::fs::rename(path, &aside).map_err(|e| PersistError::Directory {
        path: path.to_path_buf(),
        reason: format!("cannot move the unusable state file aside: {e}"),
    })?;
    for suffix in ["-wal", "-shm"] {
        let companion = PathBuf::from(format!("{}{suffix}", path.display()));
        if companion.exists() {
            let _ = std::fs::rename(
                &companion,
                PathBuf::from(format!("{}{suffix}", aside.display())),
            );
        }
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trips_and_prunes() {
        let dir = tempdir("roundtrip");
        let (mut store, loaded, warning) = Store::open(&dir, "layout-a").unwrap();
        assert!(loaded.is_empty() && warning.is_none());
        let mut b = Bucket::new(100, 1, 3, &[2], 4);
        b.rows = 7;
        let mut c = b.clone();
        c.minute = 101;
        store.save(&[b.clone(), c.clone()], 0).unwrap();
        store.save(&[c.clone()], 101).unwrap();
        drop(store);
        let (_, loaded, warning) = Store::open(&dir, "layout-a").unwrap();
        assert!(warning.is_none());
        assert_eq!(loaded, vec![c]);
    }

    #[test]
    fn garbage_or_foreign_files_are_set_aside() {
        let dir = tempdir("garbage");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(FILE_NAME),
            b"this is not a database, just some bytes of text",
        )
        .unwrap();
        let (mut store, loaded, warning) = Store::open(&dir, "layout-a").unwrap();
        assert!(loaded.is_empty());
        assert!(warning.unwrap().contains("moved it to"));
        store.save(&[Bucket::new(5, 1, 3, &[2], 4)], 0).unwrap();
        drop(store);
        // Another model's layout: set aside too.
        let (_, loaded, warning) = Store::open(&dir, "layout-b").unwrap();
        assert!(loaded.is_empty());
        assert!(warning.unwrap().contains("other features"));
        let aside = std::fs::read_dir(&dir).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("set-aside")
        });
        assert!(aside.count() >= 2);
    }
}
