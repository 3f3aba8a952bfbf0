//! The registry's pure core: identities, bundles, commands, events, the lifecycle state
//! machine (`decide` + `apply`), roles, the platform catalog and resolution. It does no I/O
//! and imports no tokio, rdkafka, rocksdb or axum; time arrives as an argument.

pub mod auth;
pub mod autopilot;
pub mod bundle;
pub mod catalog;
pub mod checkpoint;
pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod ids;
pub mod resolve;
pub mod state;
pub mod trust;

pub use auth::{Grants, Role, RoleGrant};
pub use bundle::{GateReceipt, ModelBundle, ModelBundleRef};
pub use catalog::{Catalog, CatalogEntry, Posture};
pub use command::{Command, CommandEnvelope, CommandType};
pub use decide::StateRead;
pub use error::{ErrorCode, Rejection};
pub use event::{CommandResult, LifecycleState, Outcome, RegistryEvent, RegistryEventType};
pub use ids::{Actor, BundleId, BundleVersion, Environment, ScopeKey, Slot, TenantId, Timestamp};
pub use state::{CatalogState, CommandInput, Decision, PartitionState};
