//! The `mpr` command line: one binary that runs the service (`serve`, `topics ensure`,
//! `view rebuild`, `verify-audit`) and acts as its client (publish, lifecycle commands,
//! resolve, history, events, bundles, catalog). Client commands talk HTTP; output is a
//! readable table by default and JSON with `--json`. Exit codes: 0 success, 2 the registry
//! refused the request, 3 the registry is unavailable, 1 anything else.

/// Writes a line to stdout. When stdout is a closed pipe (`mpr bundles | head`), the process
/// ends quietly with status 0 instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod client;
mod ops;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::ClientError;

/// Exit code for a rejection.
pub const EXIT_REJECTED: i32 = 2;
/// Exit code for an unavailable service.
pub const EXIT_UNAVAILABLE: i32 = 3;

/// `mpr`: Model/Policy Registry.
#[derive(Debug, Parser)]
#[command(
    name = "mpr",
    version,
    about = "Model/Policy Registry: server and client"
)]
pub struct Cli {
    /// Config file (TOML). `MPR_` environment variables override it.
    #[arg(long, global = true, env = "MPR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Registry URL for client commands.
    #[arg(
        long,
        global = true,
        env = "MPR_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Bearer token for client commands.
    #[arg(long, global = true, env = "MPR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// A scope on the command line.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Environment.
    #[arg(long = "env")]
    pub env: String,
    /// Tenant (default `*`).
    #[arg(long = "tenant", default_value = "*")]
    pub tenant: String,
    /// The degrade slot.
    #[arg(long)]
    pub degrade: bool,
}

/// One scope of one family (the policy and canary commands).
#[derive(Debug, Clone, Args)]
pub struct FamilyScopeArgs {
    /// Family.
    #[arg(long = "bundle-id")]
    pub bundle_id: String,
    /// Environment.
    #[arg(long = "env")]
    pub env: String,
    /// Tenant (default `*`).
    #[arg(long = "tenant", default_value = "*")]
    pub tenant: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the registry (creates missing topics first).
    Serve,
    /// Topic administration.
    Topics {
        /// What to do.
        #[command(subcommand)]
        action: TopicsCmd,
    },
    /// View administration.
    View {
        /// What to do.
        #[command(subcommand)]
        action: ViewCmd,
    },
    /// Audit every events partition and the catalog log: the hash chain and the registry's
    /// signature on every record; reports each record not on the signed chain.
    VerifyAudit {
        /// A signed checkpoint (`GET /v1/audit/checkpoints`) the log must still hold: its
        /// signature by a registry key, and its head on the partition's signed chain.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Publish a bundle from a PublishBundleRequest JSON file.
    Publish {
        /// The file.
        file: PathBuf,
    },
    /// REGISTERED -> CANDIDATE.
    Nominate(TargetArgs),
    /// CANDIDATE -> APPROVED.
    Approve(TargetArgs),
    /// CANDIDATE -> REJECTED.
    Reject(TargetArgs),
    /// APPROVED -> RETIRED.
    Retire(TargetArgs),
    /// Activate ID@VER in a scope.
    Promote {
        /// `bundle_id@version`.
        bundle: String,
        /// Scope.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// Only decide it against the registry's view and print what it would record
        /// (`POST /v1/promotions/dry-run`); nothing is written. A would-be refusal exits
        /// with 2, like a refusal.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-activate the previous bundle of a scope.
    Rollback {
        /// Family.
        #[arg(long = "bundle-id")]
        bundle_id: String,
        /// Scope.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Platform catalog.
    Catalog {
        /// What to do.
        #[command(subcommand)]
        action: CatalogCmd,
    },
    /// Which bundle is ACTIVE for a scope.
    Resolve {
        /// Family.
        #[arg(long = "bundle-id")]
        bundle_id: String,
        /// Environment.
        #[arg(long = "env")]
        env: String,
        /// Tenant.
        #[arg(long = "tenant")]
        tenant: Option<String>,
        /// Degrade mode.
        #[arg(long)]
        degrade: bool,
        /// As of this seq of the family's partition.
        #[arg(long = "as-of-seq")]
        as_of_seq: Option<u64>,
        /// As of this RFC 3339 time.
        #[arg(long = "as-of")]
        as_of: Option<String>,
        /// A request, user or account id: answered the scope's canary when the key's
        /// stable slice is inside the canary's share.
        #[arg(long = "routing-key")]
        routing_key: Option<String>,
    },
    /// Activation history of a scope slot.
    History {
        /// Family.
        #[arg(long = "bundle-id")]
        bundle_id: String,
        /// Scope.
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// The event log.
    Events {
        /// Only this family.
        #[arg(long = "bundle-id")]
        bundle_id: Option<String>,
        /// Keep polling for new events.
        #[arg(long)]
        follow: bool,
        /// Only events that record an automated decision (a rule that fired).
        #[arg(long)]
        automated: bool,
    },
    /// Registered bundles.
    Bundles {
        /// Only this family.
        #[arg(long = "bundle-id")]
        bundle_id: Option<String>,
    },
    /// Create an Ed25519 key: writes the private key to FILE (PKCS#8 PEM, mode 0600) and
    /// prints its key id and public key (offline).
    Keygen {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Register or revoke a principal's or a gate's public key (admin).
    Key {
        #[command(subcommand)]
        action: KeyCmd,
    },
    /// Print the `mpr-signature` header value that signs a JSON command (its RFC 8785
    /// form) with a private key (offline).
    Sign {
        /// PKCS#8 PEM private key.
        #[arg(long)]
        key: PathBuf,
        /// The command envelope, JSON.
        file: PathBuf,
    },
    /// Runtime signals (observer).
    Signal {
        #[command(subcommand)]
        action: SignalCmd,
    },
    /// A scope's rollback policy (deployer).
    Policy {
        #[command(subcommand)]
        action: PolicyCmd,
    },
    /// A scope's canary (deployer).
    Canary {
        #[command(subcommand)]
        action: CanaryCmd,
    },
    /// Sign a gate receipt (JSON) with a gate's private key; prints the receipt with its
    /// `signature` (offline).
    SignReceipt {
        /// PKCS#8 PEM private key of the gate.
        #[arg(long)]
        key: PathBuf,
        /// The receipt, JSON.
        file: PathBuf,
    },
}

/// Key registry commands.
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// REGISTER_KEY: a principal's key (it may sign commands naming that actor) or a
    /// gate's key (it may sign that gate's receipts).
    Register {
        /// principal or gate.
        #[arg(long)]
        kind: String,
        /// The actor or the gate name.
        #[arg(long)]
        owner: String,
        /// 64 hex characters (as `mpr keygen` prints).
        #[arg(long = "public-key")]
        public_key: String,
        /// Why (recorded in the event).
        #[arg(long)]
        reason: Option<String>,
    },
    /// REVOKE_KEY: the key signs nothing from the next catalog event on.
    Revoke {
        /// The key id.
        key_id: String,
        /// Why (recorded in the event).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `signal` subcommands.
#[derive(Debug, Subcommand)]
pub enum SignalCmd {
    /// Send one signal (`POST /v1/signals`), from a Signal JSON file, or built from flags.
    Send {
        /// A Signal JSON file (its `actor` defaults to the token's).
        #[arg(long, conflicts_with_all = ["bundle", "name"])]
        file: Option<PathBuf>,
        /// `bundle_id@version` the signal concerns (its digest is looked up).
        #[arg(long, requires = "name")]
        bundle: Option<String>,
        /// Environment.
        #[arg(long = "env", default_value = "prod")]
        env: String,
        /// Tenant (default `*`).
        #[arg(long = "tenant", default_value = "*")]
        tenant: String,
        /// METRIC or INCIDENT.
        #[arg(long, default_value = "METRIC")]
        kind: String,
        /// Metric name or incident class.
        #[arg(long)]
        name: Option<String>,
        /// The metric's value over the window, or the incident's severity (1 = SEV1).
        #[arg(long, default_value_t = 0.0)]
        value: f64,
        /// Window start, RFC 3339.
        #[arg(long = "window-start")]
        window_start: Option<String>,
        /// Window end, RFC 3339.
        #[arg(long = "window-end")]
        window_end: Option<String>,
        /// The system it comes from.
        #[arg(long, default_value = "mpr-cli")]
        source: String,
    },
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// SET_ROLLBACK_POLICY from a RollbackPolicy JSON file (`--clear` removes it).
    Set {
        #[command(flatten)]
        scope: FamilyScopeArgs,
        /// The policy file.
        #[arg(long, required_unless_present = "clear")]
        file: Option<PathBuf>,
        /// Clear the policy.
        #[arg(long)]
        clear: bool,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// A scope's policy, kept windows, guard-rail state, canary and automated decisions.
    Show {
        #[command(flatten)]
        scope: FamilyScopeArgs,
    },
}

/// `canary` subcommands.
#[derive(Debug, Subcommand)]
pub enum CanaryCmd {
    /// Bind ID@VER as the scope's CANARY with a share, next to its PRIMARY.
    Start {
        /// `bundle_id@version`.
        bundle: String,
        /// Environment.
        #[arg(long = "env")]
        env: String,
        /// Tenant (default `*`).
        #[arg(long = "tenant", default_value = "*")]
        tenant: String,
        /// Share of routing keys, in percent (0.01-99.99).
        #[arg(long)]
        percent: f64,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change the canary's share.
    Set {
        #[command(flatten)]
        scope: FamilyScopeArgs,
        /// Share of routing keys, in percent.
        #[arg(long)]
        percent: f64,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The canary becomes the PRIMARY.
    Complete {
        #[command(flatten)]
        scope: FamilyScopeArgs,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove the canary.
    Abort {
        #[command(flatten)]
        scope: FamilyScopeArgs,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `bundle_id@version` plus a reason.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// `bundle_id@version`.
    pub bundle: String,
    /// Why.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCmd {
    /// Create the registry's topics if missing.
    Ensure,
}

/// `view` subcommands.
#[derive(Debug, Subcommand)]
pub enum ViewCmd {
    /// Rebuild the view from the log into an empty directory.
    Rebuild {
        /// Source: `events` (the audit log) or `state` (the compacted changelog).
        #[arg(long, default_value = "events")]
        from: String,
        /// Target directory (default: the configured view path, which must be empty).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Print the content digest of a view directory (the registry must not be using it).
    Digest {
        /// The directory.
        path: PathBuf,
    },
    /// Compare two view directories key by key (neither in use by a registry): prints the
    /// keys that differ, table by table, and exits 1 when there are any.
    Diff {
        /// One view directory.
        a: PathBuf,
        /// The other.
        b: PathBuf,
        /// How many differing keys to print.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// `catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// Replace an environment's entry from a CatalogEntry JSON file.
    Set {
        /// The file.
        file: PathBuf,
    },
    /// Show the catalog.
    List,
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    let result = match &cli.command {
        Cmd::Serve
        | Cmd::Topics { .. }
        | Cmd::View { .. }
        | Cmd::VerifyAudit { .. }
        | Cmd::Openapi
        | Cmd::Keygen { .. }
        | Cmd::Sign { .. }
        | Cmd::SignReceipt { .. } => ops::run(&cli),
        _ => client::run(&cli),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
