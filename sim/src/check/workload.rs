//! What the checker's clients send: rounds ("groups") built from the same
//! blocks as the scenario generators, drawn from a seed. Every group uses
//! ids and emails of its own, prefixed with the run's id, so a run never
//! meets what an earlier run left on the same server.
//!
//! A group is a few setup calls, sent one after another, then one lane per
//! client: the clients are released together and each sends its lane's
//! calls in order (an operation, then a read of what it wrote, which is
//! what read-your-writes is judged on).

use std::path::Path;

use cusim::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::judge::races::Race;

/// The building blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// Creates of one id, released together.
    SameId,
    /// Id-less creates sharing one email (its case varied).
    SharedEmail,
    /// An id-less customer, then creates of different ids with its email.
    Claim,
    /// Creates of one id racing checks that auto-create it.
    CreateCheck,
    /// One customer's tracks (keyed and not, retried after a timeout)
    /// racing checks that fill its name (a cache invalidation) and
    /// checks that fill its cache.
    Usage,
}

impl Block {
    pub const ALL: [Block; 5] =
        [Block::SameId, Block::SharedEmail, Block::Claim, Block::CreateCheck, Block::Usage];

    pub fn as_str(self) -> &'static str {
        match self {
            Block::SameId => "same_id",
            Block::SharedEmail => "shared_email",
            Block::Claim => "claim",
            Block::CreateCheck => "create_check",
            Block::Usage => "usage",
        }
    }

    pub fn parse(text: &str) -> Option<Block> {
        Block::ALL.into_iter().find(|b| b.as_str() == text)
    }

    /// The races of the catalog (SPEC §8) that a finding of `invariant`
    /// in a group of this block most likely shows. A suspicion only:
    /// `--reproduce` confirms it on the model.
    pub fn suspects(self, invariant: &str) -> Vec<Race> {
        match (self, invariant) {
            (Block::SameId | Block::CreateCheck, "no_internal_error" | "unique_customer") => vec![Race::R1],
            (
                Block::SameId | Block::CreateCheck | Block::Usage,
                "defaults_present" | "responses_see_defaults",
            ) => vec![Race::R2],
            (Block::SharedEmail, "unique_customer") => vec![Race::R4],
            (Block::Claim, "claim_correct" | "unique_customer" | "read_your_writes") => vec![Race::R5],
            (Block::Usage, "usage_conserved" | "read_your_writes") => vec![Race::R8, Race::R9],
            _ => Vec::new(),
        }
    }
}

/// A customer's data sent along with a check or a track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    pub name: String,
}

/// One call a client makes over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `customers.get_or_create` (with `with_autumn_id`).
    Create {
        customer_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// `customers.get` (with `with_autumn_id`).
    Get { customer_id: String },
    /// `balances.check`; `auto_create` sends API version 2.0.0, under
    /// which a missing customer is created.
    Check {
        customer_id: String,
        feature_id: String,
        auto_create: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_data: Option<Data>,
    },
    /// `balances.track`, sent again up to `retries` times after a timeout,
    /// a lost connection or a 5xx: with the same `Idempotency-Key` when it
    /// has one (the same logical request), else as a new request.
    Track {
        customer_id: String,
        feature_id: String,
        value: u64,
        auto_create: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        #[serde(default)]
        retries: u32,
    },
}

impl Call {
    /// The customer id the call names, if any.
    pub fn customer_id(&self) -> Option<&str> {
        match self {
            Call::Create { customer_id, .. } => customer_id.as_deref(),
            Call::Get { customer_id } | Call::Check { customer_id, .. } | Call::Track { customer_id, .. } => {
                Some(customer_id)
            }
        }
    }
}

/// One round: setup calls, then a lane of calls per client, released together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub index: usize,
    pub block: Block,
    pub setup: Vec<Call>,
    pub lanes: Vec<Vec<Call>>,
}

/// A workload: which blocks, how often (weights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    /// Block name → weight (how often it is drawn relative to the others).
    pub blocks: std::collections::BTreeMap<String, u32>,
}

/// The built-in workloads: every block, or one.
pub const NAMES: [&str; 6] = ["mixed", "same-id", "shared-email", "claim", "create-check", "usage"];

impl Workload {
    /// A built-in workload.
    pub fn named(name: &str) -> Option<Workload> {
        let blocks: Vec<Block> = match name {
            "mixed" => Block::ALL.to_vec(),
            other => vec![Block::parse(&other.replace('-', "_"))?],
        };
        Some(Workload {
            name: name.to_owned(),
            blocks: blocks.iter().map(|b| (b.as_str().to_owned(), 1)).collect(),
        })
    }

    /// A workload file: `{"name": …, "blocks": {"claim": 2, "usage": 1}}`.
    pub fn load(path: &Path) -> Result<Workload, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let workload: Workload = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: at {}: {}", path.display(), e.path(), e.inner()))?;
        workload.weights().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(workload)
    }

    /// The blocks and their weights, checked.
    fn weights(&self) -> Result<Vec<(Block, u32)>, String> {
        let mut weights = Vec::new();
        for (name, weight) in &self.blocks {
            let block = Block::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Block::ALL.iter().map(|b| b.as_str()).collect();
                format!("at blocks.{name}: unknown block (known: {})", known.join(", "))
            })?;
            if *weight > 1000 {
                return Err(format!("at blocks.{name}: weight {weight} is over 1000"));
            }
            if *weight > 0 {
                weights.push((block, *weight));
            }
        }
        if weights.is_empty() {
            return Err("at blocks: no block has a weight above 0".into());
        }
        Ok(weights)
    }

    /// Group `index` of the run `run_id`, for `width` clients, drawn from
    /// `rng`; `feature` is the feature checks and tracks name.
    pub fn group(&self, rng: &mut Rng, index: usize, run_id: &str, width: usize, feature: &str) -> Group {
        let weights = self.weights().expect("a workload is checked when it is made");
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut pick = rng.next_u64() % total;
        let mut block = weights[0].0;
        for (candidate, weight) in &weights {
            if pick < u64::from(*weight) {
                block = *candidate;
                break;
            }
            pick -= u64::from(*weight);
        }
        let width = width.max(2);
        let base = format!("{run_id}-g{index}");
        let (setup, lanes) = match block {
            Block::SameId => same_id(rng, &base, width),
            Block::SharedEmail => shared_email(rng, &base, width),
            Block::Claim => claim(&base, width),
            Block::CreateCheck => create_check(rng, &base, width, feature),
            Block::Usage => usage(rng, &base, width, feature),
        };
        Group { index, block, setup, lanes }
    }
}

fn create(id: &str) -> Call {
    Call::Create { customer_id: Some(id.to_owned()), email: None, name: None }
}

fn get(id: &str) -> Call {
    Call::Get { customer_id: id.to_owned() }
}

fn same_id(rng: &mut Rng, base: &str, width: usize) -> (Vec<Call>, Vec<Vec<Call>>) {
    let id = format!("{base}-a");
    let lanes = (0..width)
        .map(|_| {
            // Some creates bring a name: filling an empty one updates the row.
            let name = (rng.below(3) == 0).then(|| "Ann".to_owned());
            vec![Call::Create { customer_id: Some(id.clone()), email: None, name }, get(&id)]
        })
        .collect();
    (Vec::new(), lanes)
}

fn shared_email(rng: &mut Rng, base: &str, width: usize) -> (Vec<Call>, Vec<Vec<Call>>) {
    let lanes = (0..width)
        .map(|_| {
            // The same address, its case varied: emails match case-insensitively.
            let user = if rng.below(2) == 0 { "ann" } else { "Ann" };
            vec![Call::Create {
                customer_id: None,
                email: Some(format!("{user}.{base}@example.com")),
                name: None,
            }]
        })
        .collect();
    (Vec::new(), lanes)
}

fn claim(base: &str, width: usize) -> (Vec<Call>, Vec<Vec<Call>>) {
    let email = format!("claim.{base}@example.com");
    let setup = vec![Call::Create { customer_id: None, email: Some(email.clone()), name: None }];
    let lanes = (0..width)
        .map(|i| {
            let id = format!("{base}-c{i}");
            vec![
                Call::Create { customer_id: Some(id.clone()), email: Some(email.clone()), name: None },
                get(&id),
            ]
        })
        .collect();
    (setup, lanes)
}

fn create_check(rng: &mut Rng, base: &str, width: usize, feature: &str) -> (Vec<Call>, Vec<Vec<Call>>) {
    let id = format!("{base}-a");
    let lanes = (0..width)
        .map(|i| {
            let first = if i == 0 || rng.below(2) == 0 {
                create(&id)
            } else {
                Call::Check {
                    customer_id: id.clone(),
                    feature_id: feature.to_owned(),
                    auto_create: true,
                    customer_data: None,
                }
            };
            vec![first, get(&id)]
        })
        .collect();
    (Vec::new(), lanes)
}

fn usage(rng: &mut Rng, base: &str, width: usize, feature: &str) -> (Vec<Call>, Vec<Vec<Call>>) {
    let id = format!("{base}-a");
    // Created without a name, so that a check bringing one updates the row
    // and invalidates the cache.
    let setup = vec![create(&id)];
    let mut key = 0;
    let lanes = (0..width)
        .map(|i| {
            let mut lane = Vec::new();
            match (i, rng.below(4)) {
                (0, _) | (_, 0) => lane.push(Call::Check {
                    customer_id: id.clone(),
                    feature_id: feature.to_owned(),
                    auto_create: true,
                    customer_data: Some(Data { name: format!("Name {i}") }),
                }),
                (_, 1) => lane.push(Call::Check {
                    customer_id: id.clone(),
                    feature_id: feature.to_owned(),
                    auto_create: false,
                    customer_data: None,
                }),
                _ => {}
            }
            for _ in 0..1 + rng.below(2) {
                let keyed = rng.below(2) == 0;
                key += 1;
                lane.push(Call::Track {
                    customer_id: id.clone(),
                    feature_id: feature.to_owned(),
                    value: 1 + rng.below(5) as u64,
                    auto_create: rng.below(2) == 0,
                    idempotency_key: keyed.then(|| format!("{base}-k{key}")),
                    retries: 1,
                });
            }
            lane.push(get(&id));
            lane
        })
        .collect();
    (setup, lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_groups_and_ids_are_the_runs_own() {
        let workload = Workload::named("mixed").unwrap();
        let draw = |seed: u64, run: &str| {
            let mut rng = Rng::from_state(seed);
            (0..20).map(|i| workload.group(&mut rng, i, run, 4, "words")).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, "r1"), draw(7, "r1"));
        assert_ne!(draw(7, "r1"), draw(8, "r1"));
        let blocks: std::collections::BTreeSet<Block> = draw(7, "r1").iter().map(|g| g.block).collect();
        assert_eq!(blocks.len(), Block::ALL.len(), "20 groups of mixed draw every block");
        for group in draw(7, "r1") {
            for call in group.setup.iter().chain(group.lanes.iter().flatten()) {
                if let Some(id) = call.customer_id() {
                    assert!(id.starts_with("r1-g"), "{id}");
                    cusim::model::CustomerId::parse(id).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_workload_file_is_checked_field_by_field() {
        let dir = std::env::temp_dir().join(format!("cusim-workload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.json");
        std::fs::write(&path, r#"{"name": "w", "blocks": {"claim": 2, "teleport": 1}}"#).unwrap();
        let error = Workload::load(&path).unwrap_err();
        assert!(
            error.contains("w.json") && error.contains("blocks.teleport") && error.contains("unknown block"),
            "{error}"
        );
        std::fs::write(&path, r#"{"name": "w", "blocks": {"claim": "two"}}"#).unwrap();
        let error = Workload::load(&path).unwrap_err();
        assert!(error.contains("blocks.claim"), "{error}");
        std::fs::write(&path, r#"{"name": "w", "blocks": {"claim": 0}}"#).unwrap();
        assert!(Workload::load(&path).unwrap_err().contains("no block"));
        std::fs::write(&path, r#"{"name": "w", "blocks": {"claim": 2, "usage": 1}}"#).unwrap();
        let workload = Workload::load(&path).unwrap();
        let mut rng = Rng::from_state(1);
        let group = workload.group(&mut rng, 0, "r", 3, "words");
        assert!(matches!(group.block, Block::Claim | Block::Usage));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
