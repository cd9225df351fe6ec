//! The daemon's metadata database: SQLite in WAL mode at `<data-root>/berthd.db`.
//!
//! Every change is one transaction, so a crash leaves either the old state or the new one
//! (DESIGN.md, "State on disk"). The schema is versioned in `schema_version` and brought
//! up to date at open by `migrate`, also in one transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use thiserror::Error;

use crate::container_record::ContainerRecord;

/// The file name inside the data root.
pub const DB_FILE: &str = "berthd.db";

/// Space held next to the database for the writes that free space (see
/// [`MetadataStore::freeing`]). SQLite needs room to record even a DELETE.
const RESERVE_FILE: &str = "berthd.db.reserve";
const RESERVE_BYTES: usize = 1 << 20;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: a released
/// migration is never edited, or databases that already ran it would silently differ.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. `config` holds the JSON the daemon needs to recreate the object.
    r#"
    CREATE TABLE engine (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- A random UUID, stable across restarts: `docker info`'s ID.
    INSERT INTO engine (key, value) VALUES ('id', lower(
        hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
        substr(hex(randomblob(2)), 2) || '-' ||
        substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' ||
        hex(randomblob(6))));
    CREATE TABLE containers (
        id      TEXT PRIMARY KEY,
        name    TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        config  TEXT NOT NULL
    );
    -- name is NULL for an untagged (dangling) image.
    CREATE TABLE images (
        id      TEXT PRIMARY KEY,
        name    TEXT UNIQUE,
        created INTEGER NOT NULL,
        config  TEXT NOT NULL
    );
    "#,
    // 2: volumes of the local driver. `config` is the JSON of `VolumeRecord`; the data
    // itself is under `<data-root>/volumes/<name>/_data`.
    r#"
    CREATE TABLE volumes (
        name    TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        config  TEXT NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the metadata database {path}: {source} (is --data-root writable, and on a local filesystem?)")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the metadata database {path} cannot use WAL journaling (journal_mode is {mode:?}); put --data-root on a local filesystem")]
    NoWal { path: PathBuf, mode: String },
    #[error("the metadata database {path} has schema version {found}, newer than this berthd's {SCHEMA_VERSION}: it was written by a newer berthd; run that one, or restore a backup")]
    TooNew { path: PathBuf, found: u32 },
    #[error("cannot migrate the metadata database {path} to schema version {to}: {source}")]
    Migrate {
        path: PathBuf,
        to: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error("metadata database query failed: {0}")]
    Query(#[from] rusqlite::Error),
}

/// Numbers `/info` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub containers: i64,
    pub images: i64,
}

/// An open, migrated database. One connection: SQLite serializes writers anyway, and the
/// daemon's writes are small.
#[derive(Debug)]
pub struct MetadataStore {
    conn: Connection,
    reserve: PathBuf,
}

impl MetadataStore {
    /// Opens (creating if needed) `<data_root>/berthd.db`, switches it to WAL and migrates it.
    pub fn open(data_root: &Path) -> Result<Self, StoreError> {
        let path = data_root.join(DB_FILE);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        // Another process (a second berthd, a sqlite3 shell) may hold the lock briefly.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // WAL: readers do not block the writer, and a commit is one append. The pragma
        // answers with the mode actually in effect (e.g. "delete" on filesystems without
        // shared memory), so check it rather than assume.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path, mode });
        }
        // In WAL mode NORMAL keeps every commit atomic and the file consistent after a
        // crash; only the last commits before a power loss may be rolled back.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrate(&mut conn, &path)?;
        let store = Self {
            conn,
            reserve: data_root.join(RESERVE_FILE),
        };
        store.hold_reserve();
        Ok(store)
    }

    /// Takes the reserve if it is not held and there is room for it.
    fn hold_reserve(&self) {
        if self.reserve.exists() {
            return;
        }
        let written = std::fs::File::create(&self.reserve).and_then(|mut f| {
            std::io::Write::write_all(&mut f, &[0u8; RESERVE_BYTES])?;
            f.sync_all()
        });
        if let Err(e) = written {
            tracing::debug!(%e, "no room for the metadata reserve yet");
            let _ = std::fs::remove_file(&self.reserve);
        }
    }

    /// Runs a write that a user makes to free space (removing a container or a volume,
    /// and the state changes on the way). When the data root is full, SQLite cannot
    /// record it, and the user could free nothing through berthd: then the reserve is
    /// given up and the write tried again. It is taken back once a removal went through.
    fn freeing<T>(
        &self,
        write: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        match write(&self.conn) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DiskFull && self.reserve.exists() =>
            {
                tracing::warn!(
                    path = %self.reserve.display(),
                    "the data root is full: giving up the metadata reserve for this change"
                );
                let _ = std::fs::remove_file(&self.reserve);
                write(&self.conn)
            }
            other => other,
        }
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(read_version(&self.conn)?)
    }

    /// The engine's stable ID (`docker info`'s `ID`).
    pub fn engine_id(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM engine WHERE key = 'id'", [], |row| {
                row.get(0)
            })?)
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        Ok(self.conn.query_row(
            "SELECT (SELECT count(*) FROM containers), (SELECT count(*) FROM images)",
            [],
            |row| {
                Ok(Counts {
                    containers: row.get(0)?,
                    images: row.get(1)?,
                })
            },
        )?)
    }
}

/// Why a container could not be recorded.
#[derive(Debug, Error)]
pub enum ContainerStoreError {
    #[error("the container name \"/{name}\" is already in use")]
    NameInUse { name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MetadataStore {
    /// Records a new container; a taken name fails (the UNIQUE constraint decides, so two
    /// racing creates cannot both win).
    pub fn insert_container(&self, record: &ContainerRecord) -> Result<(), ContainerStoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Query(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let created = chrono::Utc::now().timestamp();
        match self.conn.execute(
            "INSERT INTO containers (id, name, created, config) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![record.id, record.name, created, json],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ContainerStoreError::NameInUse {
                    name: record.name.clone(),
                })
            }
            Err(e) => Err(StoreError::Query(e).into()),
        }
    }

    /// Replaces a container's record (same id); the name column follows the record.
    pub fn update_container(&self, record: &ContainerRecord) -> Result<(), ContainerStoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Query(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        match self.freeing(|conn| {
            conn.execute(
                "UPDATE containers SET name = ?2, config = ?3 WHERE id = ?1",
                rusqlite::params![record.id, record.name, json],
            )
        }) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ContainerStoreError::NameInUse {
                    name: record.name.clone(),
                })
            }
            Err(e) => Err(StoreError::Query(e).into()),
        }
    }

    pub fn delete_container(&self, id: &str) -> Result<bool, StoreError> {
        let deleted =
            self.freeing(|conn| conn.execute("DELETE FROM containers WHERE id = ?1", [id]))? > 0;
        self.hold_reserve();
        Ok(deleted)
    }

    /// Every container, oldest first. A record that no longer parses is skipped with a
    /// warning rather than failing every listing.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, config FROM containers ORDER BY created, rowid")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            match serde_json::from_str(&json) {
                Ok(record) => out.push(record),
                Err(err) => tracing::warn!(%id, %err, "skipping an unreadable container record"),
            }
        }
        Ok(out)
    }
}

/// Why a volume could not be recorded.
#[derive(Debug, Error)]
pub enum VolumeStoreError {
    #[error("a volume named {name} already exists")]
    Exists { name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MetadataStore {
    /// Records a new volume; a taken name fails (the PRIMARY KEY decides).
    pub fn insert_volume(
        &self,
        name: &str,
        created: i64,
        config_json: &str,
    ) -> Result<(), VolumeStoreError> {
        match self.conn.execute(
            "INSERT INTO volumes (name, created, config) VALUES (?1, ?2, ?3)",
            rusqlite::params![name, created, config_json],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(VolumeStoreError::Exists {
                    name: name.to_owned(),
                })
            }
            Err(e) => Err(StoreError::Query(e).into()),
        }
    }

    pub fn delete_volume(&self, name: &str) -> Result<bool, StoreError> {
        let deleted =
            self.freeing(|conn| conn.execute("DELETE FROM volumes WHERE name = ?1", [name]))? > 0;
        self.hold_reserve();
        Ok(deleted)
    }

    /// Every volume as `(name, config JSON)`, oldest first.
    pub fn volumes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, config FROM volumes ORDER BY created, rowid")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn read_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

/// Brings the schema to `SCHEMA_VERSION` in one IMMEDIATE transaction (taking the write
/// lock up front, so two daemons starting at once cannot both migrate). Returns the
/// version the database had before.
fn migrate(conn: &mut Connection, path: &Path) -> Result<u32, StoreError> {
    let migrate_err = |to, source| StoreError::Migrate {
        path: path.to_owned(),
        to,
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| migrate_err(SCHEMA_VERSION, e))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(|e| migrate_err(SCHEMA_VERSION, e))?;
    let before = read_version(&tx).map_err(|e| migrate_err(SCHEMA_VERSION, e))?;
    if before > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: before,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(before as usize) {
        let to = index as u32 + 1;
        tx.execute_batch(sql).map_err(|e| migrate_err(to, e))?;
        tracing::info!(path = %path.display(), to, "migrated metadata schema");
    }
    if before != SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", [])
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
            })
            .map_err(|e| migrate_err(SCHEMA_VERSION, e))?;
    }
    tx.commit().map_err(|e| migrate_err(SCHEMA_VERSION, e))?;
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_migrates_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetadataStore::open(dir.path()).expect("open");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let id = store.engine_id().expect("id");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(store.counts().expect("counts"), Counts::default());
        drop(store);

        let store = MetadataStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.engine_id().expect("id"),
            id,
            "the ID is stable across restarts"
        );
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn container_names_are_unique() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetadataStore::open(dir.path()).expect("open");
        let insert = |id: &str| {
            store.conn.execute(
                "INSERT INTO containers (id, name, created, config) VALUES (?1, 'web', 0, '{}')",
                [id],
            )
        };
        insert("a").expect("first");
        assert!(insert("b").is_err());
        assert_eq!(store.counts().expect("counts").containers, 1);
    }

    #[test]
    fn volumes_are_recorded_by_unique_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetadataStore::open(dir.path()).expect("open");
        store.insert_volume("data", 1, "{}").expect("insert");
        assert!(matches!(
            store.insert_volume("data", 2, "{}"),
            Err(VolumeStoreError::Exists { .. })
        ));
        assert_eq!(
            store.volumes().expect("list"),
            vec![("data".into(), "{}".into())]
        );
        assert!(store.delete_volume("data").expect("delete"));
        assert!(!store.delete_volume("data").expect("delete again"));
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(MetadataStore::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join(DB_FILE)).expect("raw open");
        conn.execute("UPDATE schema_version SET version = 99", [])
            .expect("bump");
        drop(conn);
        let err = MetadataStore::open(dir.path()).expect_err("newer schema");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn open_errors_name_the_path() {
        let err = MetadataStore::open(Path::new("/nonexistent/berth")).expect_err("no dir");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/berth/berthd.db"), "{msg}");
    }
}
