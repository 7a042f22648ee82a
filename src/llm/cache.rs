//! The answer cache: moka in memory, bounded in bytes, over redb in the data folder, so answers
//! survive restarts.
//!
//! Entries are keyed by a SHA-256 over everything that decides an answer (see
//! [`super::batch::cache_key`]). Each stored value carries a checksum of its key and bytes; a
//! value that fails it is dropped and counted, never served. A cache file redb cannot open, or
//! whose integrity check fails, is moved aside and a new one is made.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};
use sha2::{Digest, Sha256};

pub type CacheKey = [u8; 32];

const ANSWERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("answers");
const CACHE_FILE: &str = "llm-cache.redb";
const CHECKSUM_LEN: usize = 8;

/// Counters shown in `semsql.llm_cache`.
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub memory_hits: AtomicU64,
    pub disk_hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    /// Stored values that failed their checksum (dropped, not served).
    pub corrupt_values: AtomicU64,
    /// Cache files found damaged at start and rebuilt.
    pub rebuilds: AtomicU64,
}

pub struct AnswerCache {
    memory: moka::future::Cache<CacheKey, Arc<Vec<u8>>>,
    /// `None` without a data folder, and after [`AnswerCache::close`].
    disk: std::sync::Mutex<Option<Arc<Database>>>,
    path: Option<PathBuf>,
    pub counters: CacheCounters,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn checksum(key: &CacheKey, value: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(value)
        .finalize();
    let mut sum = [0; CHECKSUM_LEN];
    sum.copy_from_slice(&digest[..CHECKSUM_LEN]);
    sum
}

impl AnswerCache {
    /// A cache holding at most `memory_bytes` in memory, persisted under `data_dir` if given.
    pub fn open(data_dir: Option<&Path>, memory_bytes: u64) -> Self {
        let memory = moka::future::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_key: &CacheKey, value: &Arc<Vec<u8>>| {
                (32 + value.len()).try_into().unwrap_or(u32::MAX)
            })
            .build();
        let counters = CacheCounters::default();
        let path = data_dir.map(|dir| dir.join(CACHE_FILE));
        let disk = path
            .as_deref()
            .and_then(|path| open_or_rebuild(path, &counters))
            .map(Arc::new);
        AnswerCache {
            memory,
            disk: std::sync::Mutex::new(disk),
            path,
            counters,
        }
    }

    /// The cached values for `keys`, in order.
    pub async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<Vec<u8>>>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let value = self.memory.get(key).await;
            if value.is_some() {
                self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            } else {
                missing.push(index);
            }
            found.push(value);
        }
        if missing.is_empty() {
            return found;
        }
        if let Some(disk) = self.disk() {
            let wanted: Vec<CacheKey> = missing.iter().map(|&index| keys[index]).collect();
            let read = tokio::task::spawn_blocking(move || read_disk(&disk, &wanted))
                .await
                .unwrap_or_else(|_| Ok(Vec::new()));
            match read {
                Ok(values) => {
                    for (&index, value) in missing.iter().zip(values) {
                        match value {
                            DiskValue::Found(bytes) => {
                                let bytes = Arc::new(bytes);
                                self.memory.insert(keys[index], bytes.clone()).await;
                                self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                                found[index] = Some(bytes);
                            }
                            DiskValue::Corrupt => {
                                self.counters.corrupt_values.fetch_add(1, Ordering::Relaxed);
                            }
                            DiskValue::Absent => {}
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "the LM cache could not be read; asking the model")
                }
            }
        }
        let misses = found.iter().filter(|value| value.is_none()).count();
        self.counters
            .misses
            .fetch_add(misses as u64, Ordering::Relaxed);
        found
    }

    /// Stores answers in both tiers.
    pub async fn put_many(&self, entries: Vec<(CacheKey, Vec<u8>)>) {
        if entries.is_empty() {
            return;
        }
        self.counters
            .writes
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        for (key, value) in &entries {
            self.memory.insert(*key, Arc::new(value.clone())).await;
        }
        if let Some(disk) = self.disk() {
            let written = tokio::task::spawn_blocking(move || write_disk(&disk, &entries)).await;
            if let Ok(Err(err)) = written {
                tracing::warn!(%err, "an answer could not be written to the LM cache");
            }
        }
    }

    fn disk(&self) -> Option<Arc<Database>> {
        self.disk.lock().expect("cache lock").clone()
    }

    /// Closes the cache file (at shutdown): later lookups use the memory tier only. The file is
    /// released once in-flight reads and writes finish.
    pub fn close(&self) {
        self.disk.lock().expect("cache lock").take();
    }

    /// Entries and bytes in memory, and entries on disk.
    pub fn sizes(&self) -> (u64, u64, Option<u64>) {
        let disk_entries = self.disk().and_then(|disk| {
            let read = disk.begin_read().ok()?;
            match read.open_table(ANSWERS) {
                Ok(table) => table.len().ok(),
                Err(_) => Some(0),
            }
        });
        (
            self.memory.entry_count(),
            self.memory.weighted_size(),
            disk_entries,
        )
    }

    /// Waits for moka's pending bookkeeping so that sizes are exact.
    pub async fn settle(&self) {
        self.memory.run_pending_tasks().await;
    }
}

/// Opens the cache file; a file redb cannot open or whose integrity check fails is moved to
/// `<file>.damaged` and replaced by an empty one. `None` when even that fails (the server then
/// runs with the memory tier only, and says so).
fn open_or_rebuild(path: &Path, counters: &CacheCounters) -> Option<Database> {
    let opened = match Database::create(path) {
        // Another server holds it: not damage, so it is left alone.
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            tracing::warn!(path = %path.display(), "the LM cache file is in use by another server; caching in memory only");
            return None;
        }
        opened => opened,
    };
    let opened =
        opened
            .map_err(|err| err.to_string())
            .and_then(|mut db| match db.check_integrity() {
                Ok(true) => Ok(db),
                Ok(false) => Err(
                    "it was damaged (redb repaired it, but its answers are not trusted)".to_owned(),
                ),
                Err(err) => Err(err.to_string()),
            });
    match opened {
        Ok(db) => Some(db),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "rebuilding the LM cache file");
            counters.rebuilds.fetch_add(1, Ordering::Relaxed);
            let mut damaged = path.as_os_str().to_owned();
            damaged.push(".damaged");
            if std::fs::rename(path, &damaged).is_err() {
                let _ = std::fs::remove_file(path);
            }
            match Database::create(path) {
                Ok(db) => Some(db),
                Err(err) => {
                    tracing::error!(path = %path.display(), %err, "no persistent LM cache");
                    None
                }
            }
        }
    }
}

enum DiskValue {
    Found(Vec<u8>),
    Corrupt,
    Absent,
}

fn read_disk(db: &Database, keys: &[CacheKey]) -> Result<Vec<DiskValue>, String> {
    read_disk_inner(db, keys).map_err(|err| err.to_string())
}

fn read_disk_inner(db: &Database, keys: &[CacheKey]) -> Result<Vec<DiskValue>, Box<redb::Error>> {
    let read = db.begin_read().map_err(|err| Box::new(err.into()))?;
    let table = match read.open_table(ANSWERS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(keys.iter().map(|_| DiskValue::Absent).collect())
        }
        Err(err) => return Err(Box::new(err.into())),
    };
    keys.iter()
        .map(|key| {
            let Some(stored) = table.get(key).map_err(|err| Box::new(err.into()))? else {
                return Ok(DiskValue::Absent);
            };
            let stored = stored.value();
            if stored.len() < CHECKSUM_LEN {
                return Ok(DiskValue::Corrupt);
            }
            let (sum, value) = stored.split_at(CHECKSUM_LEN);
            Ok(if sum == checksum(key, value) {
                DiskValue::Found(value.to_vec())
            } else {
                DiskValue::Corrupt
            })
        })
        .collect()
}

fn write_disk(db: &Database, entries: &[(CacheKey, Vec<u8>)]) -> Result<(), String> {
    let text = |err: &dyn std::fmt::Display| err.to_string();
    let mut write = db.begin_write().map_err(|err| text(&err))?;
    write.set_durability(Durability::Immediate);
    {
        let mut table = write.open_table(ANSWERS).map_err(|err| text(&err))?;
        for (key, value) in entries {
            let mut stored = Vec::with_capacity(CHECKSUM_LEN + value.len());
            stored.extend_from_slice(&checksum(key, value));
            stored.extend_from_slice(value);
            table
                .insert(key, stored.as_slice())
                .map_err(|err| text(&err))?;
        }
    }
    write.commit().map_err(|err| text(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_survive_reopening_and_damage_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let key = [7u8; 32];
        {
            let cache = AnswerCache::open(Some(dir.path()), 1 << 20);
            cache.put_many(vec![(key, b"true".to_vec())]).await;
        }
        let cache = AnswerCache::open(Some(dir.path()), 1 << 20);
        let found = cache.get_many(&[key, [8u8; 32]]).await;
        assert_eq!(found[0].as_deref().map(Vec::as_slice), Some(&b"true"[..]));
        assert!(found[1].is_none());
        assert_eq!(cache.counters.disk_hits.load(Ordering::Relaxed), 1);
        drop(cache);

        // Overwrite the whole file with garbage: it is rebuilt, and nothing is served from it.
        let path = dir.path().join(CACHE_FILE);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![0xA5; len]).unwrap();
        let cache = AnswerCache::open(Some(dir.path()), 1 << 20);
        assert_eq!(cache.counters.rebuilds.load(Ordering::Relaxed), 1);
        assert!(cache.get_many(&[key]).await[0].is_none());
        cache.put_many(vec![(key, b"false".to_vec())]).await;
        assert!(cache.get_many(&[key]).await[0].is_some());
    }
}
