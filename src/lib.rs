//! Rapport: a self-hosted customer-conversation intelligence appliance.
//!
//! The binary (`src/main.rs`) only parses the command line and calls [`cli::run`]. Everything else
//! lives here so that the integration tests can drive the real parts. ARCHITECTURE.md has the map.

pub mod accounts;
pub mod alerts;
pub mod analysis;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod charts;
pub mod cli;
pub mod config;
pub mod context;
pub mod cpu;
pub mod crypto;
pub mod csv_cell;
pub mod error;
pub mod feedback;
pub mod health;
pub mod ids;
pub mod inference;
pub mod ingest;
pub mod init;
pub mod insights;
pub mod interactions;
pub mod leads;
pub mod mail;
pub mod metrics;
pub mod offboarding;
pub mod pii;
pub mod privacy;
pub mod qa;
pub mod records;
pub mod retention;
pub mod reviews;
pub mod rotation;
pub mod scheduler;
pub mod search;
pub mod signals;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod users;
pub mod watchdog;
pub mod web;
