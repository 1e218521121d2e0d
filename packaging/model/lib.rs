//! Intentionally empty: this crate only carries the model package's metadata (see Cargo.toml).
