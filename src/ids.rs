//! Identifiers: time-ordered random ids (ULIDs) wrapped in one newtype per entity, so that a tenant
//! id can never be passed where a user id is expected. Ids carry no personal data, which is why they
//! may appear in record keys, URLs and logs.

use std::fmt;
use std::str::FromStr;

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ulid::{Generator, Ulid};

/// ULIDs made within one millisecond are random relative to each other; a generator makes them
/// increase, so that "newest first" and cursors over ids never skip a record made meanwhile.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

fn monotonic_ulid() -> Ulid {
    GENERATOR
        .lock()
        .ok()
        .and_then(|mut generator| generator.generate().ok())
        // The generator fails only after 2^80 ids in one millisecond; a random id is then fine.
        .unwrap_or_else(|| Ulid::from_datetime(std::time::SystemTime::now()))
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Ulid);

        impl $name {
            /// A new id, later than every id made before it in this process.
            pub fn new() -> Self {
                Self(monotonic_ulid())
            }

            /// The 16 big-endian bytes used in record keys; they sort by creation time.
            pub fn to_bytes(self) -> [u8; 16] {
                self.0.to_bytes()
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Ulid::from_bytes(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0.to_string())
            }
        }

        impl FromStr for $name {
            type Err = ulid::DecodeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s).map(Self)
            }
        }
    };
}

id_type!(
    /// One client organisation (or business unit) and its isolated key space.
    TenantId
);
id_type!(
    /// A console user: an operator or a member of one tenant.
    UserId
);
id_type!(
    /// A cryptographic key, so that sealed values name the key that opens them.
    KeyId
);
id_type!(
    /// One imported record of tenant data: an interaction, account, contact or signal.
    RecordId
);
id_type!(
    /// One run of an import, with its report and (while it runs) its undo journal.
    ImportId
);
id_type!(
    /// An API key of one tenant; the id is the public part of the key (`rpk_<id>_<secret>`).
    ApiKeyId
);
id_type!(
    /// A webhook integration of one tenant; the id is the last segment of its webhook URL.
    IntegrationId
);
id_type!(
    /// One batch of feedback requests (its messages, skip counts and send progress).
    FeedbackBatchId
);
id_type!(
    /// One alert in a tenant's alerts inbox (a negative review, later churn risk).
    AlertId
);
id_type!(
    /// One legal hold of a tenant (see `retention::holds`).
    HoldId
);
id_type!(
    /// One retention sweep of a tenant, with its stored report.
    RetentionRunId
);
id_type!(
    /// One data-subject request of a tenant (see `privacy::requests`).
    RequestId
);
