//! A DEP name's assignment rules, through its actor: the only writer of
//! the name's state. Storing new rules queues the devices whose target
//! changed (as an assigner profile change does); a preview computes the
//! same decisions and changes nothing.

use super::dep_name::{DepNameActor, NameOpError};
use crate::store::{StoreError, StoredRules};
use crate::sync::assigner::AssignPolicy;
use crate::sync::persist::{self, Preview};
use crate::sync::rules::{RuleError, RuleSet};
use actix::prelude::*;

/// Why rules were not stored or previewed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error(transparent)]
    Op(#[from] NameOpError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored rules, if any.
#[derive(Message)]
#[rtype(result = "Option<StoredRules>")]
pub struct GetRules;

impl Handler<GetRules> for DepNameActor {
    type Result = Option<StoredRules>;
    fn handle(&mut self, _: GetRules, _: &mut Self::Context) -> Self::Result {
        self.state.data().rules.clone()
    }
}

/// Replace the rules (an empty set removes them); answers the stored set.
#[derive(Message)]
#[rtype(result = "Result<RuleSet, RulesError>")]
pub struct PutRules(pub RuleSet);

impl Handler<PutRules> for DepNameActor {
    type Result = AtomicResponse<Self, Result<RuleSet, RulesError>>;
    fn handle(&mut self, PutRules(set): PutRules, _: &mut Self::Context) -> Self::Result {
        let assigner = self.assigner_profile();
        if let Err(e) = set.compile(assigner.as_deref()) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e.into()))));
        }
        let before = self.compiled_rules();
        let empty = set == RuleSet::default();
        let json = match serde_json::to_string(&set) {
            Ok(j) => j,
            Err(e) => {
                let e = StoreError::Engine(format!("encoding rules: {e}"));
                return AtomicResponse::new(Box::pin(fut::ready(Err(e.into()))));
            }
        };
        let change = self
            .state
            .put_rules((!empty).then_some(json), self.clock.now());
        self.commit_and::<RuleSet, RulesError>(change, set, move |act, ctx| {
            let after = act.compiled_rules();
            act.on_targets_changed(before, after, ctx);
        })
    }
}

/// What a candidate rule set would choose and move; changes nothing.
#[derive(Message)]
#[rtype(result = "Result<Preview, RulesError>")]
pub struct PreviewRules(pub RuleSet);

impl Handler<PreviewRules> for DepNameActor {
    type Result = ResponseFuture<Result<Preview, RulesError>>;
    fn handle(&mut self, PreviewRules(set): PreviewRules, _: &mut Self::Context) -> Self::Result {
        let assigner = self.assigner_profile();
        let new = match set.compile(assigner.as_deref()) {
            Ok(c) => c,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        let old = self.compiled_rules();
        let (store, name) = (self.store.clone(), self.state.name().clone());
        let policy = AssignPolicy::from_settings(&self.settings.assigner);
        let now = self.clock.now().unix_timestamp();
        Box::pin(async move {
            store
                .blocking(move |s| persist::preview(s, &name, &old, &new, &policy, now))
                .await
                .map_err(RulesError::from)
        })
    }
}
