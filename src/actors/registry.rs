//! The registry: one [`DepNameActor`] per known DEP name. A name is known
//! when it has stored state, is declared in the configuration, or receives
//! its first API write (which the handler has already validated).

use super::dep_name::{DepNameActor, UpdateSettings};
use crate::domain::clock::SharedClock;
use crate::domain::name::DepName;
use crate::domain::state::NameState;
use crate::settings::Settings;
use crate::store::{NameData, Store};
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

struct Entry {
    addr: Addr<DepNameActor>,
    /// Created from storage or by an API write: kept when the
    /// configuration stops declaring it.
    stored: bool,
}

/// What the proxy's hot path reads about a name without a mailbox round
/// trip: its actor and the grant the actor publishes.
#[derive(Clone)]
pub struct Published {
    pub addr: Addr<DepNameActor>,
    pub grant: super::grant::SharedGrant,
}

/// Every running name's [`Published`] entry. Only the registry writes it,
/// as it starts and stops actors.
pub type Directory = Arc<std::sync::RwLock<std::collections::HashMap<DepName, Published>>>;

pub struct Registry {
    store: Store,
    settings: Arc<Settings>,
    clock: SharedClock,
    names: BTreeMap<DepName, Entry>,
    directory: Directory,
}

impl Registry {
    /// A registry with actors for every stored name and every configured one.
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        clock: SharedClock,
        stored: Vec<(DepName, NameData)>,
    ) -> Self {
        let mut registry = Registry {
            store,
            settings,
            clock,
            names: BTreeMap::new(),
            directory: Directory::default(),
        };
        for (name, data) in stored {
            registry.spawn_name(name, data, true);
        }
        let declared: Vec<DepName> = registry.settings.names.keys().cloned().collect();
        for name in declared {
            if !registry.names.contains_key(&name) {
                registry.spawn_name(name, NameData::default(), false);
            }
        }
        registry
    }

    /// The directory of running names, for readers outside the actors.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    fn spawn_name(&mut self, name: DepName, data: NameData, stored: bool) -> Addr<DepNameActor> {
        let grant = super::grant::SharedGrant::default();
        let actor = DepNameActor::new(
            NameState::new(name.clone(), data),
            self.store.clone(),
            self.settings.clone(),
            self.clock.clone(),
            grant.clone(),
        );
        let addr = actor.start();
        self.directory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                name.clone(),
                Published {
                    addr: addr.clone(),
                    grant,
                },
            );
        self.names.insert(
            name,
            Entry {
                addr: addr.clone(),
                stored,
            },
        );
        addr
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(crate::daemon::heap::QUIET, |act, _| {
            let store = act.store.clone();
            actix_web::rt::task::spawn_blocking(move || {
                crate::daemon::heap::release_if_quiet(|| {
                    let serials = store.release_idle_memory();
                    tracing::debug!(serials, "sync is quiet: small indexes freed");
                })
            });
        });
    }
}

/// The actor of a name; with `create`, one is started if the name is new.
#[derive(Message)]
#[rtype(result = "Option<Addr<DepNameActor>>")]
pub struct Resolve {
    pub name: DepName,
    pub create: bool,
}

impl Handler<Resolve> for Registry {
    type Result = Option<Addr<DepNameActor>>;
    fn handle(&mut self, msg: Resolve, _: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.names.get_mut(&msg.name) {
            entry.stored |= msg.create;
            return Some(entry.addr.clone());
        }
        if !msg.create {
            return None;
        }
        tracing::info!(dep_name = %msg.name, "new DEP name");
        Some(self.spawn_name(msg.name, NameData::default(), true))
    }
}

/// A name's actor, created (and the name stored) if the name is new,
/// unless depd already holds `max_dep_names` names.
#[derive(Message)]
#[rtype(result = "Result<Addr<DepNameActor>, NamesFull>")]
pub struct Create(pub DepName);

/// `max_dep_names` is reached: no new name until one is removed or the
/// limit raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamesFull {
    pub max: usize,
}

impl Handler<Create> for Registry {
    type Result = Result<Addr<DepNameActor>, NamesFull>;
    fn handle(&mut self, msg: Create, _: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.names.get_mut(&msg.0) {
            entry.stored = true;
            return Ok(entry.addr.clone());
        }
        let max = self.settings.max_dep_names;
        if self.names.len() >= max {
            tracing::warn!(dep_name = %msg.0, max, "refused a new DEP name: max_dep_names reached");
            return Err(NamesFull { max });
        }
        tracing::info!(dep_name = %msg.0, "new DEP name");
        Ok(self.spawn_name(msg.0, NameData::default(), true))
    }
}

/// Every known name, sorted.
#[derive(Message)]
#[rtype(result = "Vec<DepName>")]
pub struct ListNames;

impl Handler<ListNames> for Registry {
    type Result = Vec<DepName>;
    fn handle(&mut self, _: ListNames, _: &mut Self::Context) -> Self::Result {
        self.names.keys().cloned().collect()
    }
}

/// Apply reloaded settings: start newly declared names, drop names that are
/// neither declared nor stored, and hand every actor the new settings.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload(pub Arc<Settings>);

impl Handler<Reload> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Reload, _: &mut Self::Context) {
        self.settings = msg.0;
        let settings = self.settings.clone();
        let directory = self.directory.clone();
        self.names.retain(|name, entry| {
            let keep = entry.stored || settings.names.contains_key(name);
            if !keep {
                tracing::info!(dep_name = %name, "DEP name no longer configured; its actor stops");
                crate::metrics::remove_name(name.as_str());
                directory
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(name);
            }
            keep
        });
        for entry in self.names.values() {
            entry.addr.do_send(UpdateSettings(settings.clone()));
        }
        let declared: Vec<DepName> = settings.names.keys().cloned().collect();
        for name in declared {
            if !self.names.contains_key(&name) {
                tracing::info!(dep_name = %name, "DEP name added by configuration");
                self.spawn_name(name, NameData::default(), false);
            }
        }
    }
}

/// Answers when the registry's mailbox is being served: the systemd
/// watchdog pings only while this comes back in time.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Ping> for Registry {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Self::Context) {}
}
