//! Durable storage: Parquet data files named in one manifest, `catalog.json`, that is replaced
//! atomically (write a temporary file, fsync it, rename it over the old one, fsync the folder).
//!
//! A change is committed exactly when its manifest rename reaches the disk: data files are written
//! and synced before it, so a crash at any point leaves either the old manifest (and perhaps
//! unreferenced data files, which [`Store::open`] deletes) or the new one with all its files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::file_types;
use crate::access::{AccessCatalog, Acl};
use crate::error::SemsqlError;

const MANIFEST: &str = "catalog.json";
const DATA_DIR: &str = "data";
const INDEX_DIR: &str = "indexes";
const MANIFEST_FORMAT: u32 = 1;

pub type StorageResult<T> = Result<T, SemsqlError>;

/// What the manifest records of one managed table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableEntry {
    pub schema: Schema,
    /// Data files in `data/`, in row order.
    pub files: Vec<String>,
    /// Column defaults as SQL expressions.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// PRIMARY KEY and UNIQUE constraints (see `engine::unique_keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<super::unique_keys::KeyEntry>,
    /// Bumped by every committed change, for conflict detection between transactions.
    pub version: u64,
    /// Which table this is: a table dropped and made again under the same name gets a new
    /// id, so a transaction that wrote to the old one cannot commit into the new one. Tables
    /// made before ids existed have the empty id.
    #[serde(default)]
    pub id: String,
}

/// A `CREATE VIEW` or `CREATE EXTERNAL TABLE` statement, with the schema unqualified names in it
/// resolved against when it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Definition {
    pub sql: String,
    pub default_schema: String,
}

/// The whole durable catalog: schemas, their managed tables, and external table definitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub schemas: BTreeMap<String, SchemaEntry>,
    /// Roles, and models' owners and grants (see `crate::access`).
    #[serde(default)]
    pub access: AccessCatalog,
}

/// A vector index, as `CREATE INDEX ... USING hnsw` defined it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub table: String,
    pub column: String,
    /// pgvector's operator class: `vector_l2_ops`, `vector_cosine_ops` or `vector_ip_ops`.
    pub operator_class: String,
    pub m: usize,
    pub ef_construction: usize,
    /// The graph's file in `indexes/`. It only saves rebuilding: a missing, damaged or stale
    /// file is rebuilt from the table.
    pub file: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchemaEntry {
    pub tables: BTreeMap<String, TableEntry>,
    /// Vector indexes by name (index names share the schema's namespace with tables).
    #[serde(default)]
    pub indexes: BTreeMap<String, IndexEntry>,
    /// Views and external tables, kept as the statements that made them and replayed at start.
    #[serde(default)]
    pub definitions: BTreeMap<String, Definition>,
    /// The schema's owner and grants (`None`: PostgreSQL 15's default, see `crate::access`).
    #[serde(default)]
    pub acl: Option<Acl>,
    /// Owners and grants of the schema's tables, views and external tables, by name; dropped
    /// with the relation in the same commit.
    #[serde(default)]
    pub relation_acls: BTreeMap<String, Acl>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            schemas: BTreeMap::from([("public".to_owned(), SchemaEntry::default())]),
            access: AccessCatalog::default(),
        }
    }
}

impl Manifest {
    fn referenced_index_files(&self) -> BTreeSet<String> {
        self.schemas
            .values()
            .flat_map(|schema| schema.indexes.values())
            .map(|index| index.file.clone())
            .collect()
    }

    fn referenced_files(&self) -> BTreeSet<String> {
        self.schemas
            .values()
            .flat_map(|schema| schema.tables.values())
            .flat_map(|table| table.files.iter().cloned())
            .collect()
    }
}

/// The data folder: reads and writes data files and commits manifests.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The last committed manifest; its lock also serializes commits.
    manifest: Mutex<Manifest>,
}

impl Store {
    /// Opens (or creates) a data folder, and removes what interrupted writes left behind.
    pub fn open(dir: &Path) -> StorageResult<(Arc<Store>, Manifest)> {
        for sub in [DATA_DIR, INDEX_DIR] {
            fs::create_dir_all(dir.join(sub)).map_err(|err| {
                SemsqlError::Storage(format!(
                    "cannot create data directory {}: {err}",
                    dir.display()
                ))
            })?;
        }
        let manifest_path = dir.join(MANIFEST);
        let manifest = if manifest_path.exists() {
            let text = fs::read_to_string(&manifest_path)?;
            let manifest: Manifest = serde_json::from_str(&text).map_err(|err| {
                SemsqlError::Storage(format!("{} is damaged: {err}", manifest_path.display()))
            })?;
            if manifest.format != MANIFEST_FORMAT {
                return Err(SemsqlError::Storage(format!(
                    "{} has format {}, this semsql reads format {MANIFEST_FORMAT}",
                    manifest_path.display(),
                    manifest.format
                )));
            }
            manifest
        } else {
            Manifest::default()
        };
        let store = Store {
            dir: dir.to_owned(),
            manifest: Mutex::new(manifest.clone()),
        };
        if !manifest_path.exists() {
            store.write_manifest(&manifest)?;
        }
        store.remove_unreferenced_files(&manifest)?;
        Ok((Arc::new(store), manifest))
    }

    fn remove_unreferenced_files(&self, manifest: &Manifest) -> StorageResult<()> {
        let _ = fs::remove_file(self.dir.join("catalog.json.tmp"));
        let referenced = manifest.referenced_files();
        for entry in fs::read_dir(self.dir.join(DATA_DIR))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                tracing::info!(file = %name, "removing data file left by an interrupted write");
                fs::remove_file(entry.path())?;
            }
        }
        let indexes = manifest.referenced_index_files();
        for entry in fs::read_dir(self.dir.join(INDEX_DIR))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !indexes.contains(&name) {
                tracing::info!(file = %name, "removing an index file no index names");
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Where the graph of the index whose file is `file` is saved.
    pub fn index_path(&self, file: &str) -> PathBuf {
        self.dir.join(INDEX_DIR).join(file)
    }

    /// Reads the last committed manifest without copying it.
    pub fn read<T>(&self, read: impl FnOnce(&Manifest) -> T) -> T {
        read(&self.manifest.lock().expect("manifest lock"))
    }

    /// A copy of the last committed manifest.
    pub fn manifest(&self) -> Manifest {
        self.manifest.lock().expect("manifest lock").clone()
    }

    /// Applies `change` to the manifest and commits it atomically. Nothing changes if `change`
    /// or the write fails.
    pub fn commit<T>(
        &self,
        change: impl FnOnce(&mut Manifest) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let mut current = self.manifest.lock().expect("manifest lock");
        let mut next = current.clone();
        let result = change(&mut next)?;
        self.write_manifest(&next)?;
        *current = next;
        Ok(result)
    }

    fn write_manifest(&self, manifest: &Manifest) -> StorageResult<()> {
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|err| SemsqlError::Storage(format!("cannot encode the catalog: {err}")))?;
        write_atomically(&self.dir.join(MANIFEST), &text)
    }

    /// Writes `batches` to a new data file and syncs it; `None` when there are no rows.
    pub fn write_data_file(
        &self,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> StorageResult<Option<String>> {
        if batches.iter().all(|batch| batch.num_rows() == 0) {
            return Ok(None);
        }
        let name = format!("{}.parquet", uuid::Uuid::new_v4().simple());
        let path = self.dir.join(DATA_DIR).join(&name);
        let write = || -> StorageResult<()> {
            let file = File::create(&path)?;
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let on_disk = file_types::file_schema(schema);
            let mut writer = ArrowWriter::try_new(file, on_disk.clone(), Some(properties))
                .map_err(|err| SemsqlError::Storage(format!("cannot write data file: {err}")))?;
            for batch in batches {
                let batch = file_types::to_file(batch, &on_disk)?;
                writer.write(&batch).map_err(|err| {
                    SemsqlError::Storage(format!("cannot write data file: {err}"))
                })?;
            }
            let file = writer
                .into_inner()
                .map_err(|err| SemsqlError::Storage(format!("cannot write data file: {err}")))?;
            file.sync_all()?;
            Ok(())
        };
        if let Err(err) = write() {
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        sync_dir(&self.dir.join(DATA_DIR))?;
        Ok(Some(name))
    }

    /// Reads one data file back, with the table's schema.
    pub fn read_data_file(
        &self,
        name: &str,
        schema: &SchemaRef,
    ) -> StorageResult<Vec<RecordBatch>> {
        let path = self.dir.join(DATA_DIR).join(name);
        let damaged = |err: &dyn std::fmt::Display| {
            SemsqlError::Storage(format!("data file {} is damaged: {err}", path.display()))
        };
        let file = File::open(&path).map_err(|err| damaged(&err))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|err| damaged(&err))?
            .build()
            .map_err(|err| damaged(&err))?;
        reader
            .map(|batch| {
                let batch = batch.map_err(|err| damaged(&err))?;
                // Parquet keeps field metadata loosely, and some types are stored in another
                // form (see `file_types`); the catalog's schema is the truth.
                file_types::from_file(&batch, schema).map_err(|err| damaged(&err))
            })
            .collect()
    }

    /// Deletes data files that a committed manifest no longer names.
    pub fn remove_data_files(&self, names: &[String]) {
        for name in names {
            if let Err(err) = fs::remove_file(self.dir.join(DATA_DIR).join(name)) {
                tracing::warn!(file = %name, %err, "could not remove a replaced data file");
            }
        }
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new contents:
/// write a temporary file beside it, sync it, rename it over, sync the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> StorageResult<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> StorageResult<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_commit_survives_reopening_and_orphans_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let batch = batch();
        let file = store
            .write_data_file(&batch.schema(), std::slice::from_ref(&batch))
            .unwrap()
            .unwrap();
        store
            .commit(|manifest| {
                manifest.schemas.get_mut("public").unwrap().tables.insert(
                    "t".into(),
                    TableEntry {
                        schema: batch.schema().as_ref().clone(),
                        files: vec![file.clone()],
                        defaults: BTreeMap::new(),
                        keys: Vec::new(),
                        version: 1,
                        id: String::new(),
                    },
                );
                Ok(())
            })
            .unwrap();
        // A data file written but never committed, as a crash would leave it.
        let orphan = store
            .write_data_file(&batch.schema(), std::slice::from_ref(&batch))
            .unwrap()
            .unwrap();
        drop(store);

        let (store, manifest) = Store::open(dir.path()).unwrap();
        let entry = &manifest.schemas["public"].tables["t"];
        assert_eq!(entry.files, vec![file.clone()]);
        let read = store.read_data_file(&file, &batch.schema()).unwrap();
        assert_eq!(read, vec![batch]);
        assert!(!dir.path().join(DATA_DIR).join(orphan).exists());
    }

    #[test]
    fn a_failed_change_leaves_the_manifest_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, before) = Store::open(dir.path()).unwrap();
        let result: StorageResult<()> = store.commit(|manifest| {
            manifest
                .schemas
                .insert("half_done".into(), SchemaEntry::default());
            Err(SemsqlError::Storage("refused".into()))
        });
        assert!(result.is_err());
        let (_, after) = Store::open(dir.path()).unwrap();
        assert_eq!(
            after.schemas.keys().collect::<Vec<_>>(),
            before.schemas.keys().collect::<Vec<_>>()
        );
    }
}
