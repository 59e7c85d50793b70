//! Integration tests of the depd daemon: the real server on 127.0.0.1:0.

mod helpers;

mod auth;
mod cli;
mod cli_mdm;
mod client;
mod config_api;
mod crash;
mod daemon;
mod exchange;
mod faults;
mod import;
mod mdm;
mod mdm_crash;
mod mdm_hooks;
mod mdm_inspect;
mod mdm_push;
mod mdm_sim;
mod metrics;
mod names;
mod notify;
mod once;
mod pki;
mod proxy;
mod rules;
mod secrets;
mod security;
mod sync;
mod tokens;
