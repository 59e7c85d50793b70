//! Apple Push Notification service, as an MDM server uses it: one wake-up
//! (`{"mdm": "<PushMagic>"}`) per enrollment, sent over HTTP/2 with the
//! topic's push certificate. `wire` is the request and the reading of
//! APNs's answers (runtime-free); `conn` opens the TLS + HTTP/2 connection
//! a topic's pushes share. The actor that owns a topic's connection and
//! the fan-out are in `actors/push/`.

pub mod cert;
pub mod conn;
pub mod wire;
