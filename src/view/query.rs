//! Read paths of the view: resolve (now and as of a past seq or time), single records and
//! cursor-paginated listings, on a [`Reader`] (the latest state, or one snapshot), with
//! [`View`] shorthands that read the latest state. Nothing here writes.

use rocksdb::{Direction, IteratorMode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::plan::{self, HistoryEntry, Table};
use super::{Reader, View, ViewError};
use crate::domain::catalog::CatalogEntry;
use crate::domain::event::{CommandResult, LogId, ScopeRef};
use crate::domain::resolve::{MatchedRule, ResolveQuery, resolve};
use crate::domain::state::{BundleRecord, CatalogState, SlotRecord};
use std::collections::BTreeSet;

use crate::domain::bundle::BundleKind;
use crate::domain::{
    BundleId, BundleVersion, Environment, LifecycleState, RegistryEvent, Rejection, Slot, TenantId,
    Timestamp,
};

/// A raw key and value read from a table.
type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Which state to resolve against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveAt {
    /// The current view.
    Now,
    /// Just after the event with this seq in the family's partition.
    Seq(u64),
    /// The last change observed at or before this time.
    Time(Timestamp),
}

/// One resolve answer, before it is shaped for HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Rule that matched.
    pub rule: MatchedRule,
    /// Tenant of the matching scope.
    pub tenant_id: TenantId,
    /// Slot of the matching scope.
    pub slot: Slot,
    /// The bundle.
    pub record: BundleRecord,
    /// The change that bound it.
    pub activation: HistoryEntry,
    /// The canary of the matched scope, when one runs (resolve of now only).
    pub canary: Option<CanaryAnswer>,
}

/// A scope's canary as resolve reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CanaryAnswer {
    /// The canary's version.
    pub bundle_version: BundleVersion,
    /// Its share, in basis points.
    pub share_bp: u32,
    /// Whether this answer is the canary (the routing key's slice is inside the share).
    pub served: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Events only: whether the scan reached the end of the log (a follower waits before
    /// asking again); false when it stopped at `limit` matches or at its scan bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_end: Option<bool>,
}

/// Which bundles a listing keeps (`GET /v1/bundles` and the console's bundles page).
/// Every field narrows; the default keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleFilter {
    /// One family.
    pub family: Option<BundleId>,
    /// One lifecycle state.
    pub state: Option<LifecycleState>,
    /// MODEL or POLICY.
    pub kind: Option<BundleKind>,
    /// Bound now (PRIMARY, DEGRADE or CANARY of any tenant) in this environment.
    pub environment: Option<Environment>,
    /// Awaiting approval: nominated (CANDIDATE), or sent back for a fresh approval by an
    /// automated rollback.
    pub awaiting_approval: bool,
    /// Case-insensitive text found in the bundle_id, the version, or a metadata key or
    /// value.
    pub text: Option<String>,
}

impl BundleFilter {
    /// Whether `rec` passes every field but `environment` (which needs the slots).
    pub fn matches(&self, rec: &BundleRecord) -> bool {
        let b = &rec.bundle;
        self.family.as_ref().is_none_or(|f| &b.bundle_id == f)
            && self.state.is_none_or(|s| rec.state == s)
            && self.kind.is_none_or(|k| b.kind == k)
            && (!self.awaiting_approval
                || rec.state == LifecycleState::Candidate
                || (rec.needs_reapproval && rec.state == LifecycleState::Approved))
            && self.text.as_deref().is_none_or(|t| {
                let t = t.to_lowercase();
                let has = |s: &str| s.to_lowercase().contains(&t);
                has(b.bundle_id.as_str())
                    || has(&b.bundle_version.to_string())
                    || b.metadata.iter().any(|(k, v)| has(k) || has(v))
            })
    }
}

/// Shorthands that read the latest state of the view.
impl View {
    /// See [`Reader::resolve`].
    pub fn resolve(
        &self,
        q: &ResolveQuery,
        at: ResolveAt,
    ) -> Result<Result<Resolved, Rejection>, ViewError> {
        self.reader().resolve(q, at)
    }

    /// See [`Reader::bundle`].
    pub fn bundle(
        &self,
        id: &BundleId,
        v: &BundleVersion,
    ) -> Result<Option<BundleRecord>, ViewError> {
        self.reader().bundle(id, v)
    }

    /// See [`Reader::bundles`].
    pub fn bundles(
        &self,
        family: Option<&BundleId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<BundleRecord>, ViewError> {
        self.reader().bundles(family, cursor, limit)
    }

    /// See [`Reader::catalog_state`].
    pub fn catalog_state(&self) -> Result<CatalogState, ViewError> {
        self.reader().catalog_state()
    }

    /// See [`Reader::bundles_where`].
    pub fn bundles_where(
        &self,
        filter: &BundleFilter,
        cursor: Option<&str>,
        limit: usize,
        max_scanned: usize,
    ) -> Result<Page<BundleRecord>, ViewError> {
        self.reader()
            .bundles_where(filter, cursor, limit, max_scanned)
    }

    /// See [`Reader::slots`].
    pub fn slots(
        &self,
        family: &BundleId,
        env: Option<&str>,
    ) -> Result<Vec<(ScopeRef, SlotRecord)>, ViewError> {
        self.reader().slots(family, env)
    }

    /// See [`Reader::history`].
    pub fn history(
        &self,
        id: &BundleId,
        scope: &ScopeRef,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, ViewError> {
        self.reader().history(id, scope, cursor, limit)
    }

    /// See [`Reader::events`].
    pub fn events(
        &self,
        family: Option<&BundleId>,
        cursor: Option<&str>,
        limit: usize,
        max_scanned: usize,
        keep: impl Fn(&RegistryEvent) -> bool,
    ) -> Result<Page<RegistryEvent>, ViewError> {
        self.reader()
            .events(family, cursor, limit, max_scanned, keep)
    }

    /// See [`Reader::result`].
    pub fn result(&self, command_id: Uuid) -> Result<Option<CommandResult>, ViewError> {
        self.reader().result(command_id)
    }

    /// See [`Reader::event_at`].
    pub fn event_at(
        &self,
        log: LogId,
        partition: i32,
        seq: u64,
    ) -> Result<Option<RegistryEvent>, ViewError> {
        self.reader().event_at(log, partition, seq)
    }

    /// See [`Reader::catalog`].
    pub fn catalog(&self) -> Result<(u64, Vec<CatalogEntry>), ViewError> {
        self.reader().catalog()
    }
}

impl Reader<'_> {
    fn decode<T: DeserializeOwned>(t: Table, bytes: &[u8]) -> Result<T, ViewError> {
        serde_json::from_slice(bytes).map_err(|e| ViewError::Corrupt {
            table: t.name(),
            detail: e.to_string(),
        })
    }

    fn decode_event(bytes: &[u8]) -> Result<RegistryEvent, ViewError> {
        crate::codec::decode_event(bytes).map_err(|e| ViewError::Corrupt {
            table: Table::Events.name(),
            detail: e.to_string(),
        })
    }

    /// Scans `t` under `prefix`, after the key in `cursor`, up to `limit` entries.
    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, Option<String>), ViewError> {
        let after = cursor.and_then(|c| hex::decode(c).ok());
        let start = after.clone().unwrap_or_else(|| prefix.to_vec());
        let mut out = Vec::new();
        let mut more = false;
        for item in self.iter(t, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if after.as_deref() == Some(&k[..]) {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push((k, v));
        }
        let next = if more {
            out.last().map(|(k, _)| hex::encode(k))
        } else {
            None
        };
        Ok((out, next))
    }

    fn history_entries(
        &self,
        id: &BundleId,
        scope: &ScopeRef,
    ) -> Result<Vec<HistoryEntry>, ViewError> {
        let prefix = plan::history_prefix(id, scope);
        let mut out = Vec::new();
        for item in self.iter(
            Table::History,
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(Self::decode(Table::History, &v)?);
        }
        Ok(out)
    }

    /// The change that bound `scope`'s slot as of `at`, if anything was bound then.
    fn binding_at(
        &self,
        id: &BundleId,
        scope: &ScopeRef,
        at: ResolveAt,
    ) -> Result<Option<HistoryEntry>, ViewError> {
        if at == ResolveAt::Now {
            // Every binding change writes a history entry, so the newest one is the current
            // binding: one reverse seek instead of a scan (the resolve hot path).
            let prefix = plan::history_prefix(id, scope);
            let mut upper = prefix.clone();
            upper.extend_from_slice(&[0xFF; 12]);
            let mut it = self.iter(
                Table::History,
                IteratorMode::From(&upper, Direction::Reverse),
            );
            return match it.next().transpose()? {
                Some((k, v)) if k.starts_with(&prefix) => {
                    let h: HistoryEntry = Self::decode(Table::History, &v)?;
                    Ok(bound_by(h))
                }
                _ => Ok(None),
            };
        }
        let entries = self.history_entries(id, scope)?;
        let hit = entries.into_iter().rev().find(|h| match at {
            ResolveAt::Now => true,
            ResolveAt::Seq(s) => h.seq <= s,
            ResolveAt::Time(t) => h.observed_at_utc <= t,
        });
        Ok(hit.and_then(bound_by))
    }

    /// Resolves `q` at `at` by the fixed rule order. `Ok(Err(_))` is NO_ACTIVE_BUNDLE.
    pub fn resolve(
        &self,
        q: &ResolveQuery,
        at: ResolveAt,
    ) -> Result<Result<Resolved, Rejection>, ViewError> {
        let found = resolve(q, |tenant, slot| {
            let scope = ScopeRef {
                environment: q.environment.clone(),
                tenant_id: tenant.clone(),
                slot,
            };
            self.binding_at(&q.bundle_id, &scope, at)
        })?;
        let (rule, tenant_id, slot, activation) = match found {
            Ok(hit) => hit,
            Err(no_active) => return Ok(Err(no_active)),
        };
        let record = self
            .bundle(&q.bundle_id, &activation.bundle_version)?
            .ok_or_else(|| ViewError::Corrupt {
                table: "bundles",
                detail: format!("bound version {} missing", activation.bundle_version),
            })?;
        let mut resolved = Resolved {
            rule,
            tenant_id,
            slot,
            record,
            activation,
            canary: None,
        };
        if at == ResolveAt::Now && slot == Slot::Primary {
            self.with_canary(q, &mut resolved)?;
        }
        Ok(Ok(resolved))
    }

    /// Adds the canary of the matched scope, and answers it when the routing key's slice
    /// falls inside its share.
    fn with_canary(&self, q: &ResolveQuery, r: &mut Resolved) -> Result<(), ViewError> {
        let scope = ScopeRef {
            environment: q.environment.clone(),
            tenant_id: r.tenant_id.clone(),
            slot: Slot::Canary,
        };
        let Some(rec) =
            self.get_json::<SlotRecord>(Table::Slots, &plan::slot_key(&q.bundle_id, &scope))?
        else {
            return Ok(());
        };
        let Some((v, share_bp, served)) =
            crate::domain::resolve::pick_canary(q, &r.tenant_id, Some(&rec))
        else {
            return Ok(());
        };
        if served
            && let (Some(record), Some(activation)) = (
                self.bundle(&q.bundle_id, &v)?,
                self.binding_at(&q.bundle_id, &scope, ResolveAt::Now)?,
            )
        {
            r.record = record;
            r.activation = activation;
            r.slot = Slot::Canary;
        }
        r.canary = Some(CanaryAnswer {
            bundle_version: v,
            share_bp,
            served: r.slot == Slot::Canary,
        });
        Ok(())
    }

    /// One bundle version.
    pub fn bundle(
        &self,
        id: &BundleId,
        v: &BundleVersion,
    ) -> Result<Option<BundleRecord>, ViewError> {
        self.get_json(Table::Bundles, &plan::bundle_key(id, v))
    }

    /// Bundles, optionally of one family, in key order.
    pub fn bundles(
        &self,
        family: Option<&BundleId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<BundleRecord>, ViewError> {
        let prefix = family
            .map(|f| format!("{f}\0").into_bytes())
            .unwrap_or_default();
        let (rows, next_cursor) = self.scan(Table::Bundles, &prefix, cursor, limit)?;
        let items = rows
            .iter()
            .map(|(_, v)| Self::decode(Table::Bundles, v))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_cursor,
            at_end: None,
        })
    }

    /// Bundles that pass `filter`, in key order (family, then version), reading at most
    /// `max_scanned` records: like [`Reader::events`], a filter that matches little
    /// answers a short page whose `next_cursor` marks where the scan stopped, and `at_end`
    /// tells whether it reached the end.
    pub fn bundles_where(
        &self,
        filter: &BundleFilter,
        cursor: Option<&str>,
        limit: usize,
        max_scanned: usize,
    ) -> Result<Page<BundleRecord>, ViewError> {
        let bound = match &filter.environment {
            Some(env) => Some(self.bound_in(env, filter.family.as_ref())?),
            None => None,
        };
        let prefix = filter
            .family
            .as_ref()
            .map(|f| format!("{f}\0").into_bytes())
            .unwrap_or_default();
        let after = cursor.and_then(|c| hex::decode(c).ok());
        let start = after.clone().unwrap_or_else(|| prefix.clone());
        let (mut items, mut scanned, mut last) = (Vec::new(), 0usize, None);
        // Text search skips, before decoding, every record whose JSON does not hold the
        // text: JSON escapes only quotes, backslashes and control characters, so for any
        // other ASCII text a case-insensitive match in a decoded field is one in the
        // record's bytes, ASCII-lowercased.
        let needle =
            filter.text.as_deref().map(str::to_lowercase).filter(|t| {
                t.is_ascii() && !t.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
            });
        let finder = needle
            .as_deref()
            .map(|t| memchr::memmem::Finder::new(t.as_bytes()).into_owned());
        let mut at_end = true;
        for item in self.iter(
            Table::Bundles,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if after.as_deref() == Some(&k[..]) {
                continue;
            }
            if items.len() == limit || scanned == max_scanned {
                at_end = false;
                break;
            }
            scanned += 1;
            last = Some(k);
            if let Some(f) = &finder
                && f.find(&v.to_ascii_lowercase()).is_none()
            {
                continue;
            }
            let rec: BundleRecord = Self::decode(Table::Bundles, &v)?;
            let in_env = bound.as_ref().is_none_or(|b| {
                b.contains(&(
                    rec.bundle.bundle_id.clone(),
                    rec.bundle.bundle_version.clone(),
                ))
            });
            if in_env && filter.matches(&rec) {
                items.push(rec);
            }
        }
        Ok(Page {
            items,
            next_cursor: if at_end {
                None
            } else {
                last.map(|k| hex::encode(&k))
            },
            at_end: Some(at_end),
        })
    }

    /// The catalog log's state now, keys included: its events replayed from the view in
    /// order, as the processor's [`CatalogState`] holds it. The catalog log is small
    /// (catalog changes and key registrations), so a replay is cheap.
    pub fn catalog_state(&self) -> Result<CatalogState, ViewError> {
        let mut state = CatalogState::new();
        let prefix = [1u8];
        for item in self.iter(
            Table::Events,
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let e = Self::decode_event(&v)?;
            // A gap or fork cannot reach the view (the applier checks the chain first).
            let _ = state.apply(&e);
        }
        Ok(state)
    }

    /// The versions bound now (PRIMARY, DEGRADE or CANARY, any tenant) in `env`,
    /// of one family or all.
    fn bound_in(
        &self,
        env: &Environment,
        family: Option<&BundleId>,
    ) -> Result<BTreeSet<(BundleId, BundleVersion)>, ViewError> {
        let prefix = family
            .map(|f| format!("{f}\0").into_bytes())
            .unwrap_or_default();
        let (rows, _) = self.scan(Table::Slots, &prefix, None, usize::MAX)?;
        let mut out = BTreeSet::new();
        for (k, v) in rows {
            let key = String::from_utf8_lossy(&k);
            let parts: Vec<&str> = key.split('\0').collect();
            if parts.get(1) != Some(&env.as_str()) {
                continue;
            }
            let id: BundleId = parts[0].parse().map_err(|_| corrupt_key(&key))?;
            let rec: SlotRecord = Self::decode(Table::Slots, &v)?;
            if let Some(version) = rec.bound() {
                out.insert((id, version.clone()));
            }
        }
        Ok(out)
    }

    /// Slots of a family (optionally of one environment), with their bound versions.
    pub fn slots(
        &self,
        family: &BundleId,
        env: Option<&str>,
    ) -> Result<Vec<(ScopeRef, SlotRecord)>, ViewError> {
        let prefix = match env {
            Some(e) => format!("{family}\0{e}\0").into_bytes(),
            None => format!("{family}\0").into_bytes(),
        };
        let (rows, _) = self.scan(Table::Slots, &prefix, None, usize::MAX)?;
        rows.iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(k);
                let parts: Vec<&str> = key.split('\0').collect();
                let scope = ScopeRef {
                    environment: parts[1].parse().map_err(|_| corrupt_key(&key))?,
                    tenant_id: parts[2].parse().map_err(|_| corrupt_key(&key))?,
                    slot: match parts[3] {
                        "PRIMARY" => Slot::Primary,
                        "DEGRADE" => Slot::Degrade,
                        "CANARY" => Slot::Canary,
                        _ => return Err(corrupt_key(&key)),
                    },
                };
                Ok((scope, Self::decode(Table::Slots, v)?))
            })
            .collect()
    }

    /// Activation history of one scope slot, oldest first.
    pub fn history(
        &self,
        id: &BundleId,
        scope: &ScopeRef,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, ViewError> {
        let (rows, next_cursor) = self.scan(
            Table::History,
            &plan::history_prefix(id, scope),
            cursor,
            limit,
        )?;
        let items = rows
            .iter()
            .map(|(_, v)| Self::decode(Table::History, v))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_cursor,
            at_end: None,
        })
    }

    /// Events, optionally of one family, filtered by `keep`, in log order, reading at most
    /// `max_scanned` events (matching or not). `next_cursor` marks the last event scanned,
    /// even at the end of the log; `at_end` tells whether the scan reached the end: a page
    /// shorter than `limit` may stop at the scan bound, with more to come after it.
    pub fn events(
        &self,
        family: Option<&BundleId>,
        cursor: Option<&str>,
        limit: usize,
        max_scanned: usize,
        keep: impl Fn(&RegistryEvent) -> bool,
    ) -> Result<Page<RegistryEvent>, ViewError> {
        let mut items = Vec::new();
        let mut cursor = cursor.map(str::to_owned);
        let mut scanned = 0usize;
        loop {
            let batch = limit
                .max(64)
                .min(max_scanned.saturating_sub(scanned).max(1));
            let (rows, next) = match family {
                Some(f) => {
                    let (rows, next) = self.scan(
                        Table::EventsByBundle,
                        format!("{f}\0").as_bytes(),
                        cursor.as_deref(),
                        batch,
                    )?;
                    let mut evs = Vec::with_capacity(rows.len());
                    for (k, _) in rows {
                        let pos = &k[f.as_str().len() + 1..];
                        let bytes = self.get_raw(Table::Events, pos)?.ok_or_else(|| {
                            ViewError::Corrupt {
                                table: "events",
                                detail: "indexed event missing".into(),
                            }
                        })?;
                        evs.push((k, Self::decode_event(&bytes)?));
                    }
                    (evs, next)
                }
                None => {
                    let (rows, next) = self.scan(Table::Events, &[], cursor.as_deref(), batch)?;
                    let evs = rows
                        .into_iter()
                        .map(|(k, v)| Ok((k, Self::decode_event(&v)?)))
                        .collect::<Result<Vec<_>, ViewError>>()?;
                    (evs, next)
                }
            };
            for (k, e) in rows {
                let key = hex::encode(&k);
                scanned += 1;
                if keep(&e) {
                    items.push(e);
                    if items.len() == limit {
                        return Ok(Page {
                            items,
                            next_cursor: Some(key),
                            at_end: Some(false),
                        });
                    }
                }
                cursor = Some(key);
            }
            if next.is_none() {
                // At the end of the log the cursor still marks the last event scanned, so
                // a follower can poll for what comes after it.
                return Ok(Page {
                    items,
                    next_cursor: cursor,
                    at_end: Some(true),
                });
            }
            if scanned >= max_scanned {
                return Ok(Page {
                    items,
                    next_cursor: cursor,
                    at_end: Some(false),
                });
            }
        }
    }

    /// A command's result.
    pub fn result(&self, command_id: Uuid) -> Result<Option<CommandResult>, ViewError> {
        self.get_json(Table::Results, command_id.as_bytes())
    }

    /// The event at `seq` of partition `partition` of `log`, if the view holds it.
    pub fn event_at(
        &self,
        log: LogId,
        partition: i32,
        seq: u64,
    ) -> Result<Option<RegistryEvent>, ViewError> {
        self.get_raw(Table::Events, &plan::position_key(log, partition, seq))?
            .map(|bytes| Self::decode_event(&bytes))
            .transpose()
    }

    /// The platform catalog: version and entries.
    pub fn catalog(&self) -> Result<(u64, Vec<CatalogEntry>), ViewError> {
        let version = self
            .get_json::<u64>(Table::Catalog, plan::CATALOG_VERSION_KEY)?
            .unwrap_or(0);
        let (rows, _) = self.scan(Table::Catalog, &[], None, usize::MAX)?;
        let entries = rows
            .iter()
            .filter(|(k, _)| &k[..] != plan::CATALOG_VERSION_KEY)
            .map(|(_, v)| Self::decode(Table::Catalog, v))
            .collect::<Result<_, _>>()?;
        Ok((version, entries))
    }
}

fn corrupt_key(key: &str) -> ViewError {
    ViewError::Corrupt {
        table: "slots",
        detail: format!("bad key {key:?}"),
    }
}

/// The binding a slot's newest history entry leaves: none after a canary was removed.
fn bound_by(h: HistoryEntry) -> Option<HistoryEntry> {
    (h.event_type != crate::domain::RegistryEventType::CanaryAborted).then_some(h)
}
