//! The one integration-test binary: every file here is a module, so everything links once.

// A panic is how a test, and a test helper, reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A test reads best as one story from set-up to the last assertion, however long.
#![allow(clippy::too_many_lines)]

mod helpers;

mod account360;
mod alerts;
mod analysis;
mod api;
mod at_rest;
mod audit;
mod backup;
mod browser;
mod cli;
mod console;
mod csrf;
mod dashboard;
mod dsar;
mod durability;
mod erasure;
mod erasure_mentions;
mod feedback;
mod formats;
mod headers;
mod health;
mod inference;
mod ingest;
mod isolation;
mod keys;
mod leads;
mod login;
mod metrics;
mod models;
mod offboarding;
mod packaging;
mod pii;
mod privacy;
mod qa;
mod references;
mod remote;
mod retention;
mod reviews;
mod roles;
mod search;
mod second_factor;
