//! Where a client's session tokens come from: the `SessionSource` trait,
//! and `DirectSession`, which opens `/session` itself (tools and tests;
//! the daemon's names use their actor).

use super::*;

/// Gives out session tokens and learns of rotated ones.
pub trait SessionSource {
    /// The current session token; `rejected` names a token Apple refused,
    /// so the source opens a new session instead of handing it out again.
    fn token(&self, rejected: Option<String>) -> LocalBoxFuture<'static, Result<String, DepError>>;
    /// Apple answered a request made with `old` with a new token.
    fn rotated(&self, old: &str, new: String);
}

/// A session source without an actor: opens sessions itself and keeps the
/// token. For tools and tests that talk to Apple directly.
pub struct DirectSession {
    target: Target,
    creds: Credentials,
    clock: SharedClock,
    token: Rc<RefCell<Option<String>>>,
}

impl DirectSession {
    pub fn new(target: Target, creds: Credentials, clock: SharedClock) -> Self {
        DirectSession {
            target,
            creds,
            clock,
            token: Rc::new(RefCell::new(None)),
        }
    }
}

impl SessionSource for DirectSession {
    fn token(&self, rejected: Option<String>) -> LocalBoxFuture<'static, Result<String, DepError>> {
        let current = self.token.borrow().clone();
        if let Some(t) = current
            && rejected.as_ref() != Some(&t)
        {
            return Box::pin(async move { Ok(t) });
        }
        let (target, creds, clock, slot) = (
            self.target.clone(),
            self.creds.clone(),
            self.clock.clone(),
            self.token.clone(),
        );
        Box::pin(async move {
            let t = open_session(&target, &creds, &clock).await?;
            *slot.borrow_mut() = Some(t.clone());
            Ok(t)
        })
    }

    fn rotated(&self, old: &str, new: String) {
        let mut slot = self.token.borrow_mut();
        if slot.as_deref() == Some(old) {
            *slot = Some(new);
        }
    }
}
