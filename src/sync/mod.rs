//! Continuous device sync of one DEP name, as plain rules the name's actor
//! drives: nothing here knows about actors, timers or HTTP. Decisions go
//! in, writes and the next request come out; time and randomness are
//! passed in.
//!
//! - [`cycle`] — the fetch/sync state machine ([`cycle::Cycle`]): which
//!   request comes next, when a cycle ends, cursor errors, repeated cursors.
//! - [`backoff`] — waits: the jittered interval between cycles, exponential
//!   backoff after failures honouring `Retry-After`, slow retries when only
//!   a person can help.
//! - [`assigner`] — which devices get the assigner profile, queuing,
//!   batching and Apple's per-serial answers.
//! - [`webhook`] — the NanoDEP-compatible event of a page, its signature,
//!   and delivery retries.
//! - [`persist`] — the storage side: a page, an assignment answer, a
//!   profile change, each written atomically.
//!
//! How the actor drives it (all store calls on the blocking pool):
//!
//! 1. On start, `Cycle::new(data.sync.unwrap_or_default())`. A timer fires
//!    after [`backoff::next_cycle`] (or at once on `POST /v1/sync`); a name
//!    without tokens does not sync.
//! 2. `cycle.start(now)` (or `cycle.resync(now)` for `POST /v1/resync`)
//!    returns a [`cycle::Step`]; store `step.next.state()` under
//!    `Field::Sync` when it changed, adopt `step.next`, then send the
//!    [`cycle::Request`] with the page limit (capped by `/account`).
//! 3. A page: `step = cycle.on_page(&page, now)`; build the webhook event
//!    ([`webhook::event`], phase from `cycle.pending()`, id from
//!    [`webhook::new_event_id`]) when URLs are configured; then
//!    [`persist::apply_page`] with `step.next.state()` — one batch, flushed
//!    before the next request — and only then adopt `step.next`. An error:
//!    `cycle.on_error(&err, now)`, store the state, adopt.
//! 4. `Action::Request` → next request; `Action::Finished` → schedule the
//!    next cycle: after a failure `Backoff::after_failure(failures, &err)`
//!    (and set the token health when [`backoff::needs_a_person`]),
//!    otherwise the jittered interval. Prune old removals
//!    (`Store::prune_removals`).
//! 5. Assigner (the actor's `AssignJob`): a pass takes what was due when it
//!    began, batch by batch (`Store::due_serials_where`, at most
//!    `policy.batch_size(account)` serials, none sent before in the pass),
//!    one `/profile/devices` call per batch with the current profile, each
//!    answer recorded ([`persist::record_assignment`]) while the next batch
//!    is sent; the earliest remaining `next_retry_unix`
//!    (`Store::next_due_assignment`) schedules the next pass. A profile change
//!    runs [`persist::apply_profile_change`]. Removing a profile through
//!    depd calls `Store::record_removals`.
//! 6. Webhook: `Store::outbox_peek(name, 1)`, a [`webhook::Delivery`] per
//!    event, POST to each pending URL with [`webhook::SIGNATURE_HEADER`]
//!    when a secret is set, `Store::outbox_remove` once complete, else wait
//!    `Delivery::retry_in`.

pub mod assigner;
pub mod backoff;
pub mod cycle;
pub mod persist;
pub mod profiles;
pub mod rules;
pub mod webhook;
