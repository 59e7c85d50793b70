//! Storage: a narrow key-value [`Engine`] (sled in production, memory in
//! tests) under a typed [`Store`] that knows depd's records.
//!
//! Invariants:
//! - every value is a versioned record (`record.rs`): one version byte, then
//!   bincode; a reader that meets an unknown version fails loudly instead of
//!   misreading;
//! - [`Engine::commit`] is atomic and durable: when it returns `Ok`, every
//!   write of the batch is on disk, and after a crash either all or none are;
//! - engine calls block, so async code runs them on the blocking pool
//!   ([`Store::blocking`]), never on an actor or request thread.

pub mod fsutil;
mod group;
mod index;
mod inventory;
pub mod mdm;
mod memory;
mod open;
mod record;
pub mod secrets;
mod sled_engine;

#[cfg(test)]
mod conformance;

pub use inventory::{
    AssignQueue, AssignmentCounts, DeviceCounts, DeviceIn, DeviceJson, DeviceList, DeviceQuery,
    EventBody, OutboxEntry, PageApply, PageSummary, PendingEvent,
};
pub use memory::MemoryEngine;
pub use open::{
    Opened, Rotation, open_and_load, open_data_dir, open_data_dir_with, pending_key_path, rotate,
};
pub use record::{
    AssignResult, CycleOutcome, Record, RecordError, StoredAssigner, StoredAssignment,
    StoredConfig, StoredCycle, StoredDevice, StoredEventBody, StoredMeta, StoredOutboxEntry,
    StoredPki, StoredProfiles, StoredRules, StoredSync, StoredTokens, SyncPhase,
};
pub use sled_engine::SledEngine;

use crate::domain::name::DepName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("stored record {key}: {source}")]
    Record {
        key: String,
        #[source]
        source: RecordError,
    },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// Another process (a running daemon) holds the directory's lock.
    #[error("{0} is in use by another process (is depd running?)")]
    Locked(String),
}

/// The engine-neutral key-value API every backend implements. Keys and
/// values are bytes; ordering is bytewise.
pub trait Engine: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries whose key starts with `prefix`, in key order, beginning
    /// strictly after `after` when given, at most `limit` of them.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// The first key starting with `prefix`, without reading its value.
    fn first_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .scan(prefix, None, 1)?
            .into_iter()
            .next()
            .map(|(k, _)| k))
    }

    /// Applies all writes atomically: readers see all or none of them.
    /// They are durable after the next [`Engine::flush`] (or any later
    /// commit); a crash before that loses them, never part of them, and
    /// never a batch without the batches applied before it.
    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Applies all writes atomically and durably (flushed before returning).
    fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.apply(writes)?;
        self.flush()
    }

    /// Makes everything committed so far durable (a no-op for engines whose
    /// commit already is).
    fn flush(&self) -> Result<(), StoreError>;
}

/// Fields stored per DEP name. The key of a field is
/// `n/<name>\0<field>`: names cannot contain NUL (see [`DepName`]), so one
/// prefix scan reads exactly one name. The inventory, assignment records,
/// webhook outbox and removals are many records per name and live under
/// other prefixes (`inventory/`), so [`Store::load_all`] stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Meta,
    Tokens,
    PkiStaging,
    PkiCurrent,
    Config,
    Assigner,
    Sync,
    Rules,
    Profiles,
}

impl Field {
    const ALL: [Field; 9] = [
        Field::Meta,
        Field::Tokens,
        Field::PkiStaging,
        Field::PkiCurrent,
        Field::Config,
        Field::Assigner,
        Field::Sync,
        Field::Rules,
        Field::Profiles,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Field::Meta => "meta",
            Field::Tokens => "tokens",
            Field::PkiStaging => "pki.staging",
            Field::PkiCurrent => "pki.current",
            Field::Config => "config",
            Field::Assigner => "assigner",
            Field::Sync => "sync",
            Field::Rules => "rules",
            Field::Profiles => "profiles",
        }
    }

    fn parse(s: &[u8]) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str().as_bytes() == s)
    }

    /// Fields that hold OAuth secrets or private keys: sealed at rest
    /// (`secrets.rs`).
    fn is_secret(self) -> bool {
        matches!(self, Field::Tokens | Field::PkiStaging | Field::PkiCurrent)
    }
}

const NAME_PREFIX: &[u8] = b"n/";

fn name_prefix(name: &DepName) -> Vec<u8> {
    let mut key = NAME_PREFIX.to_vec();
    key.extend_from_slice(name.as_str().as_bytes());
    key.push(0);
    key
}

fn field_key(name: &DepName, field: Field) -> Vec<u8> {
    let mut key = name_prefix(name);
    key.extend_from_slice(field.as_str().as_bytes());
    key
}

/// Everything stored for one DEP name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameData {
    pub meta: Option<StoredMeta>,
    pub tokens: Option<StoredTokens>,
    pub pki_staging: Option<StoredPki>,
    pub pki_current: Option<StoredPki>,
    pub config: Option<StoredConfig>,
    pub assigner: Option<StoredAssigner>,
    pub sync: Option<StoredSync>,
    pub rules: Option<StoredRules>,
    pub profiles: Option<StoredProfiles>,
}

/// A set of changes to one name's fields, committed atomically.
#[derive(Debug, Default)]
pub struct NameWrite {
    writes: Vec<Write>,
    /// Positions in `writes` of puts to secret fields, sealed on commit.
    secret: Vec<usize>,
}

impl NameWrite {
    pub fn put<R: Record>(&mut self, name: &DepName, field: Field, value: &R) -> &mut Self {
        if field.is_secret() {
            self.secret.push(self.writes.len());
        }
        self.writes
            .push(Write::Put(field_key(name, field), record::encode(value)));
        self
    }

    pub fn delete(&mut self, name: &DepName, field: Field) -> &mut Self {
        self.writes.push(Write::Delete(field_key(name, field)));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// The typed store shared by the registry and the DEP-name actors.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    /// Seals and opens the secret fields (`secrets.rs`).
    key: Arc<secrets::SecretsKey>,
    /// Bounds the storage calls running at once. With thousands of names
    /// syncing together, unbounded calls grew the blocking pool to hundreds
    /// of threads (memory, contention in the engine) for no gain on a few
    /// cores; waiting callers queue here instead.
    permits: Arc<tokio::sync::Semaphore>,
    /// The same for the MDM service's requests ([`Store::blocking_mdm`]).
    mdm_permits: Arc<tokio::sync::Semaphore>,
    /// The in-memory index of each name's devices and assignment records
    /// (`index.rs`), built from the stored segments on first use.
    indexes: Arc<Mutex<IndexCache>>,
    /// Whether the store held records of the one-key-per-record layout
    /// when it was opened. Nothing writes that layout any more, so a store
    /// without them never needs to look for them again: building a name's
    /// index then reads its two segment prefixes, not five.
    legacy: bool,
    /// The MDM webhook outbox's next sequence number, read from the
    /// stored events on first use (`mdm/`).
    mdm_seq: Arc<Mutex<Option<u64>>>,
    /// Durable commits of concurrent writers share flushes (`group.rs`).
    group: Arc<group::GroupCommit>,
    /// The same for callers that wait without a thread.
    group_async: Arc<group::AsyncGroupCommit>,
}

/// One name's index; `None` until loaded (or after a panic while it was
/// being changed, or after it was evicted), when it is rebuilt from what is
/// stored.
type IndexSlot = Arc<Mutex<Option<index::NameIndex>>>;

/// The names' indexes. Small indexes (below [`SMALL_INDEX`] serials) are
/// cheap to rebuild (one or two segments), so when together they hold more
/// than [`SMALL_INDEXES_MAX`] serials the least recently used are dropped:
/// ten thousand names of 100 devices do not keep a million entries in
/// memory. Large indexes stay: rebuilding one reads its whole inventory.
struct IndexCache {
    slots: HashMap<DepName, CachedIndex>,
    tick: u64,
    small_serials: usize,
    /// [`SMALL_INDEXES_MAX`], smaller in tests.
    max_small: usize,
}

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache {
            slots: HashMap::new(),
            tick: 0,
            small_serials: 0,
            max_small: SMALL_INDEXES_MAX,
        }
    }
}

#[derive(Default)]
struct CachedIndex {
    slot: IndexSlot,
    used: u64,
    /// Serials in the index when it was last released (0 when unloaded).
    serials: usize,
}

/// Indexes with fewer serials than this may be dropped and rebuilt.
const SMALL_INDEX: usize = 65_536;

/// Serials kept in small indexes before the least recently used go.
const SMALL_INDEXES_MAX: usize = 262_144;

impl IndexCache {
    /// The name's slot, marked as just used.
    fn slot(&mut self, name: &DepName) -> IndexSlot {
        self.tick += 1;
        let tick = self.tick;
        let cached = self.slots.entry(name.clone()).or_default();
        cached.used = tick;
        cached.slot.clone()
    }

    /// Records the size of a name's index after use, and drops the least
    /// recently used small indexes (other than this one) while small ones
    /// hold too many serials. An index in use right now is skipped.
    fn released(&mut self, name: &DepName, serials: usize) {
        let Some(cached) = self.slots.get_mut(name) else {
            return;
        };
        let small = |n: usize| if n < SMALL_INDEX { n } else { 0 };
        self.small_serials = self.small_serials - small(cached.serials) + small(serials);
        cached.serials = serials;
        if self.small_serials <= self.max_small {
            return;
        }
        let mut victims: Vec<(u64, DepName)> = self
            .slots
            .iter()
            .filter(|(n, c)| *n != name && c.serials > 0 && c.serials < SMALL_INDEX)
            .map(|(n, c)| (c.used, n.clone()))
            .collect();
        victims.sort_unstable();
        for (_, victim) in victims {
            if self.small_serials <= self.max_small / 2 {
                break;
            }
            let Some(c) = self.slots.get_mut(&victim) else {
                continue;
            };
            if let Ok(mut ix) = c.slot.try_lock() {
                *ix = None;
                self.small_serials -= c.serials;
                c.serials = 0;
            }
        }
    }
}

impl IndexCache {
    /// Forgets every small index nobody is using (the daemon is idle):
    /// index and slot are freed, and the next use rebuilds the index from
    /// the name's one or two segments. A slot whose `Arc` is held only
    /// here cannot be in use, since new holders clone it under the
    /// cache's lock, which the caller holds. Returns the serials freed.
    fn forget_small(&mut self) -> usize {
        let mut freed = 0;
        self.slots.retain(|_, c| {
            let forget = c.serials < SMALL_INDEX && Arc::strong_count(&c.slot) == 1;
            if forget {
                freed += c.serials;
            }
            !forget
        });
        self.small_serials -= freed.min(self.small_serials);
        self.slots.shrink_to_fit();
        freed
    }
}

/// Storage calls running at once.
const CONCURRENT_CALLS: usize = 8;
/// MDM requests in storage at once. Each spends most of its time waiting
/// for the flush it shares with the others (group commit), so more of them
/// in flight means more requests per flush, not more CPU.
const MDM_CONCURRENT_CALLS: usize = 64;

impl Store {
    /// A store whose secrets are sealed with a key made for this process
    /// alone (tests, dry runs): what it seals cannot be read after it.
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        // Random bytes come from the kernel; failing that, a fixed key
        // still keeps the store working (nothing persists past it).
        let key = secrets::SecretsKey::generate()
            .unwrap_or_else(|_| secrets::SecretsKey::from_array([7u8; 32]));
        Store::with_key(engine, key)
    }

    /// A store sealing its secrets with `key`.
    pub fn with_key(engine: Arc<dyn Engine>, key: secrets::SecretsKey) -> Self {
        Store {
            key: Arc::new(key),
            permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS)),
            mdm_permits: Arc::new(tokio::sync::Semaphore::new(MDM_CONCURRENT_CALLS)),
            indexes: Arc::default(),
            legacy: inventory::holds_legacy(engine.as_ref()),
            mdm_seq: Arc::default(),
            group: Arc::default(),
            group_async: Arc::default(),
            engine,
        }
    }

    pub fn memory() -> Self {
        Store::new(Arc::new(MemoryEngine::default()))
    }

    /// Opens a sled directory as it is, sealing with `key`. Daemon and
    /// tools open the data directory through [`open_data_dir`], which also
    /// checks the key against what is stored.
    pub fn open_sled(path: &std::path::Path, key: secrets::SecretsKey) -> Result<Self, StoreError> {
        Ok(Store::with_key(Arc::new(SledEngine::open(path)?), key))
    }

    /// The same store, sealing and opening with `key` from now on (no
    /// record is rewritten).
    fn rekeyed(&self, key: secrets::SecretsKey) -> Store {
        let mut next = self.clone();
        next.key = Arc::new(key);
        next
    }

    /// The id of the key this store seals with (safe to show).
    pub fn key_id(&self) -> String {
        self.key.id_hex()
    }

    /// Runs a storage call on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking_with(&self.permits, f).await
    }

    /// Runs an MDM request's storage call on the blocking pool, within
    /// the MDM service's own bound, so device traffic and DEP sync do not
    /// queue behind each other.
    pub async fn blocking_mdm<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking_with(&self.mdm_permits, f).await
    }

    async fn blocking_with<T, F>(
        &self,
        permits: &Arc<tokio::sync::Semaphore>,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&store)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Frees what only speeds up work that is not happening: the indexes
    /// of names with few devices (see [`IndexCache`]), rebuilt on their
    /// next use. Called when sync has been quiet for a while; returns the
    /// serials whose index entries were freed.
    pub fn release_idle_memory(&self) -> usize {
        self.indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget_small()
    }

    /// Every name with stored state, with its data, in name order.
    pub fn load_all(&self) -> Result<Vec<(DepName, NameData)>, StoreError> {
        let mut out: Vec<(DepName, NameData)> = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = self.engine.scan(NAME_PREFIX, after.as_deref(), 1024)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (key, value) in batch {
                let rest = &key[NAME_PREFIX.len()..];
                let Some(nul) = rest.iter().position(|b| *b == 0) else {
                    continue;
                };
                let (Ok(raw), Some(field)) = (
                    std::str::from_utf8(&rest[..nul]),
                    Field::parse(&rest[nul + 1..]),
                ) else {
                    continue;
                };
                let Ok(name) = DepName::parse(raw) else {
                    continue;
                };
                if out.last().map(|(n, _)| n) != Some(&name) {
                    out.push((name.clone(), NameData::default()));
                }
                if let Some((_, data)) = out.last_mut() {
                    set_field(data, field, &key, &value, &self.key)?;
                }
            }
        }
        Ok(out)
    }

    /// What is stored for one name (all fields `None` when nothing is).
    pub fn load_name(&self, name: &DepName) -> Result<NameData, StoreError> {
        let mut data = NameData::default();
        for field in Field::ALL {
            let key = field_key(name, field);
            if let Some(value) = self.engine.get(&key)? {
                set_field(&mut data, field, &key, &value, &self.key)?;
            }
        }
        Ok(data)
    }

    /// Commits a name's changes atomically and durably.
    pub fn commit(&self, write: NameWrite) -> Result<(), StoreError> {
        if write.is_empty() {
            return Ok(());
        }
        let mut writes = write.writes;
        for at in write.secret {
            if let Some(Write::Put(key, value)) = writes.get_mut(at) {
                *value = self.key.seal(key, value)?;
            }
        }
        self.engine.commit(writes)
    }

    /// Every secret record, as stored (sealed or, from before sealing,
    /// plain).
    fn secret_records(&self) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = self.engine.scan(NAME_PREFIX, after.as_deref(), 1024)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (key, value) in batch {
                let field = key
                    .iter()
                    .rposition(|b| *b == 0)
                    .and_then(|nul| Field::parse(&key[nul + 1..]));
                if field.is_some_and(Field::is_secret) {
                    out.push((key, value));
                }
            }
        }
        // The MDM service's sealed records.
        for prefix in mdm::SEALED_PREFIXES {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let batch = self.engine.scan(prefix, after.as_deref(), 1024)?;
                let Some((last, _)) = batch.last() else { break };
                after = Some(last.clone());
                out.extend(batch);
            }
        }
        Ok(out)
    }

    /// What the secret records say about keys: the ids of the keys that
    /// sealed them, and how many are still plain.
    pub fn secrets_scan(&self) -> Result<SecretsScan, StoreError> {
        let mut scan = SecretsScan::default();
        for (_, value) in self.secret_records()? {
            match secrets::sealed_key_id(&value) {
                Some(id) => {
                    scan.sealed += 1;
                    let id = secrets::hex(&id);
                    if !scan.key_ids.contains(&id) {
                        scan.key_ids.push(id);
                    }
                }
                None => scan.plain += 1,
            }
        }
        Ok(scan)
    }

    /// Seals every plain secret record (written before sealing existed),
    /// in one atomic commit. Returns how many were sealed.
    pub fn seal_plain_secrets(&self) -> Result<usize, StoreError> {
        let mut writes = Vec::new();
        for (key, value) in self.secret_records()? {
            if !secrets::is_sealed(&value) {
                let sealed = self.key.seal(&key, &value)?;
                writes.push(Write::Put(key, sealed));
            }
        }
        let n = writes.len();
        if n > 0 {
            self.engine.commit(writes)?;
        }
        Ok(n)
    }

    /// Seals every secret record again under `new`, in one atomic commit
    /// (key rotation). Every record must open with the current key first;
    /// if one does not, nothing is written. Returns the store on the new
    /// key and how many records were sealed.
    pub fn reseal(&self, new: secrets::SecretsKey) -> Result<(Store, usize), StoreError> {
        let mut writes = Vec::new();
        for (key, value) in self.secret_records()? {
            let plain = if secrets::is_sealed(&value) {
                self.key.open(&key, &value)?
            } else {
                value
            };
            writes.push(Write::Put(key.clone(), new.seal(&key, &plain)?));
        }
        let n = writes.len();
        if n > 0 {
            self.engine.commit(writes)?;
        }
        let mut next = self.clone();
        next.key = Arc::new(new);
        Ok((next, n))
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush()
    }
}

/// Keys of the secret records, as found by [`Store::secrets_scan`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecretsScan {
    pub sealed: usize,
    pub plain: usize,
    /// Ids of the keys that sealed them, in the order first met.
    pub key_ids: Vec<String>,
}

fn set_field(
    data: &mut NameData,
    field: Field,
    key: &[u8],
    value: &[u8],
    secrets_key: &secrets::SecretsKey,
) -> Result<(), StoreError> {
    let err = |source| StoreError::Record {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        source,
    };
    // Plain secret records (from before sealing) are read as they are;
    // start-up seals them (`seal_plain_secrets`).
    let opened;
    let value = if field.is_secret() && secrets::is_sealed(value) {
        opened = secrets_key.open(key, value)?;
        opened.as_slice()
    } else {
        value
    };
    match field {
        Field::Meta => data.meta = Some(record::decode(value).map_err(err)?),
        Field::Tokens => data.tokens = Some(record::decode(value).map_err(err)?),
        Field::PkiStaging => data.pki_staging = Some(record::decode(value).map_err(err)?),
        Field::PkiCurrent => data.pki_current = Some(record::decode(value).map_err(err)?),
        Field::Config => data.config = Some(record::decode(value).map_err(err)?),
        Field::Assigner => data.assigner = Some(record::decode(value).map_err(err)?),
        Field::Sync => data.sync = Some(record::decode(value).map_err(err)?),
        Field::Rules => data.rules = Some(record::decode(value).map_err(err)?),
        Field::Profiles => data.profiles = Some(record::decode(value).map_err(err)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
