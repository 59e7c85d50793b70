//! Integration tests of the depd daemon: the real server on 127.0.0.1:0.

mod helpers;

mod auth;
mod client;
mod config_api;
mod daemon;
mod exchange;
mod names;
mod pki;
mod proxy;
mod sync;
mod tokens;
