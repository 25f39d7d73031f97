//! The preflight: before a run, a few harmless calls on the run's own
//! fresh ids learn the target's [`Profile`]:
//!
//! 1. the API version: a read of a customer that cannot exist, at each
//!    version the client knows, newest first, until one is not 400
//!    `invalid_api_version` (the answer expected is 404
//!    `customer_not_found`; a 401 or 403 is a key the target refuses);
//! 2. the route family: `rpc` if its create, check and track answer
//!    (a create with neither id nor email is 400; a check or track of a
//!    feature that does not exist is 404 `feature_not_found`), else `v1`
//!    if its do; reads go to `customers.get` where it answers, else to
//!    `GET /v1/customers/{id}`;
//! 3. auto-create: a check of a fresh customer at that version (a success
//!    and the customer read back: it creates it; 404
//!    `customer_not_found`: it does not), then, if not, at each older
//!    version the client knows (this creates one customer, whose id
//!    carries the run's id and `-pre`, outside every group: nothing
//!    judges it);
//! 4. the key of a failed request: the create with neither id nor email
//!    sent twice with one fresh `Idempotency-Key` (the same 4xx twice: it
//!    was given back; 409 the second time: it was kept).
//!
//! `--routes` and `--api-version` give those facts instead (the target
//! must still answer on them); a `--target-profile` gives every fact, and
//! each is confirmed by the same probes (a fact the target contradicts is
//! exit 2, naming it). A route that does not exist answers 404 with
//! another code (or none), or 405. Only a 400 `invalid_api_version` moves
//! the search to an older version, and only routes that do not exist to
//! the other family: any other answer ends the preflight with what came
//! back, rather than learn a wrong fact from a passing error.

use cusim::model::{ApiVersion, FailedKey, Family, Route};
use serde_json::{json, Value};

use super::client::{Client, Reply, Wire};
use super::profile::Profile;
use super::CheckError;

/// What the user gave instead of the preflight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    pub routes: Option<Family>,
    pub api_version: Option<ApiVersion>,
    /// A whole profile (`--target-profile`): every fact is confirmed.
    pub profile: Option<Profile>,
    /// Whether `routes` and `api_version` come from the profile file.
    pub from_file: bool,
}

impl Given {
    /// Where a given fact came from, for messages: `flag` or the file.
    fn by(&self, flag: &'static str) -> &'static str {
        if self.from_file {
            "--target-profile"
        } else {
            flag
        }
    }
}

/// The profile in force, and how each fact was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub profile: Profile,
    /// One line per fact: learned (with what answered) or given.
    pub lines: Vec<String>,
}

/// How one probe went.
#[derive(Debug, Clone, PartialEq)]
enum Probe {
    /// The route answered as one that exists (the status and code).
    Present(u16, String),
    /// 400 `invalid_api_version`.
    BadVersion,
    /// 404 with another code (or no JSON), or 405: no such route.
    Absent(u16, String),
    /// Any other answer.
    Other(u16, String),
}

fn code_of(body: &Result<Value, String>) -> String {
    body.as_ref().ok().and_then(|b| b.get("code")).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn brief(status: u16, body: &Result<Value, String>) -> String {
    match body {
        Ok(body) => format!("{status} {}", body.to_string().chars().take(160).collect::<String>()),
        Err(why) => format!("{status} ({})", why.chars().take(160).collect::<String>()),
    }
}

/// The request that probes `route` at `version`: harmless, on fresh id
/// `id` (a read of it, a create with neither id nor email, a check or
/// track of a feature that does not exist).
fn probe_wire(route: Route, version: ApiVersion, id: &str, key: Option<&str>) -> Wire {
    let nofeature = format!("{id}-nofeature");
    let (method, path, body) = match route {
        Route::CustomerById => (hyper::Method::GET, format!("/v1/customers/{id}"), None),
        Route::Get => (hyper::Method::POST, "/v1/customers.get".to_owned(), Some(json!({"customer_id": id}))),
        Route::Customers => (hyper::Method::POST, "/v1/customers".to_owned(), Some(json!({"id": null}))),
        Route::GetOrCreate => (
            hyper::Method::POST,
            "/v1/customers.get_or_create".to_owned(),
            Some(json!({"customer_id": null})),
        ),
        Route::Check | Route::BalancesCheck => (
            hyper::Method::POST,
            if route == Route::Check { "/v1/check" } else { "/v1/balances.check" }.to_owned(),
            Some(json!({"customer_id": id, "feature_id": nofeature})),
        ),
        Route::Track | Route::BalancesTrack => (
            hyper::Method::POST,
            if route == Route::Track { "/v1/track" } else { "/v1/balances.track" }.to_owned(),
            Some(json!({"customer_id": id, "feature_id": nofeature, "value": 1})),
        ),
    };
    Wire { method, path, version, idempotency_key: key.map(str::to_owned), body }
}

/// A check of fresh customer `id` and `feature` on `routes` at `version`.
fn auto_create_wire(routes: Family, version: ApiVersion, id: &str, feature: &str) -> Wire {
    let mut wire = probe_wire(routes.routes()[2], version, id, None);
    wire.body = Some(json!({"customer_id": id, "feature_id": feature}));
    wire
}

struct Prober<'c> {
    client: &'c mut Client,
    run_id: String,
    /// Fresh ids drawn so far.
    drawn: usize,
}

impl Prober<'_> {
    fn fresh(&mut self, what: &str) -> String {
        self.drawn += 1;
        format!("{}-pre{}-{what}", self.run_id, self.drawn)
    }

    async fn send(&mut self, wire: Wire) -> Result<(u16, Result<Value, String>), CheckError> {
        let described = format!("{} {}", wire.method, wire.path);
        match self.client.send_wire(wire).await {
            Reply::Unknown(reason) => Err(CheckError::Unreachable(format!("{described}: {reason}"))),
            Reply::Answered { status: status @ (401 | 403), body } => {
                let message =
                    body.ok().and_then(|b| b.get("message").and_then(Value::as_str).map(str::to_owned));
                Err(CheckError::BadInput(format!(
                    "--secret-key: the target refused it ({status} on {described}: {})",
                    message.unwrap_or_else(|| "no message".into())
                )))
            }
            Reply::Answered { status, body } => Ok((status, body)),
        }
    }

    /// Probes `route` at `version`.
    async fn probe(&mut self, route: Route, version: ApiVersion) -> Result<Probe, CheckError> {
        let id = self.fresh("probe");
        let (status, body) = self.send(probe_wire(route, version, &id, None)).await?;
        let code = code_of(&body);
        let expected = match route {
            Route::CustomerById | Route::Get => status == 404 && code == "customer_not_found",
            Route::Customers | Route::GetOrCreate => status == 400 && code != "invalid_api_version",
            // A server may look the customer up before the feature.
            _ => status == 404 && matches!(code.as_str(), "feature_not_found" | "customer_not_found"),
        };
        Ok(if expected {
            Probe::Present(status, code)
        } else if status == 400 && code == "invalid_api_version" {
            Probe::BadVersion
        } else if status == 405
            || (status == 404 && !matches!(code.as_str(), "customer_not_found" | "feature_not_found"))
        {
            Probe::Absent(status, brief(status, &body))
        } else {
            Probe::Other(status, brief(status, &body))
        })
    }

    /// Whether a read of `id` at `version` by `reads` finds it.
    async fn read_finds(&mut self, id: &str, version: ApiVersion, reads: Family) -> Result<bool, CheckError> {
        let (status, body) = self.send(probe_wire(reads.routes()[1], version, id, None)).await?;
        Ok(match (status, code_of(&body).as_str()) {
            (200..=299, _) => true,
            (404, "customer_not_found") => false,
            _ => {
                return Err(CheckError::Unspoken(format!(
                    "a read of a customer a check may have made answered {}",
                    brief(status, &body)
                )))
            }
        })
    }

    /// Whether a check of a fresh customer on `routes` at `version`
    /// creates it (read back by `reads` at `version`).
    async fn creates_at(
        &mut self,
        routes: Family,
        version: ApiVersion,
        feature: &str,
        reads: Family,
    ) -> Result<bool, CheckError> {
        let id = self.fresh("auto");
        let (status, _) = self.send(auto_create_wire(routes, version, &id, feature)).await?;
        Ok((200..300).contains(&status) && self.read_finds(&id, version, reads).await?)
    }

    /// Probes `family`'s create, check and track at `version`.
    async fn family(
        &mut self,
        family: Family,
        version: ApiVersion,
    ) -> Result<Vec<(Route, Probe)>, CheckError> {
        let [create, _, check, track] = family.routes();
        let mut answers = Vec::new();
        for route in [create, check, track] {
            answers.push((route, self.probe(route, version).await?));
        }
        Ok(answers)
    }
}

/// Learns what `given` does not say of the target, with `client`'s
/// calls; `feature` is a feature the catalog grants (auto-create is
/// probed with a check of it).
pub async fn learn(
    client: &mut Client,
    run_id: &str,
    feature: &str,
    given: &Given,
) -> Result<Learned, CheckError> {
    let mut prober = Prober { client, run_id: run_id.to_owned(), drawn: 0 };
    match given.profile {
        None => discover(&mut prober, feature, given).await,
        Some(file) => {
            // The file's routes and version, and the rest learned on them:
            // then every fact of the file held against what was learned.
            let on = Given {
                routes: Some(file.routes),
                api_version: Some(file.api_version),
                profile: None,
                from_file: true,
            };
            let learned = discover(&mut prober, feature, &on).await?;
            let found = learned.profile;
            let contradicts = |field: &str, says: String, but: String| {
                Err(CheckError::Unspoken(format!("--target-profile says {field} {says}, but {but}")))
            };
            if file.reads == Family::Rpc && found.reads != Family::Rpc {
                return contradicts("reads", "rpc".into(), "customers.get does not answer".into());
            }
            if file.auto_create_at_api_version != found.auto_create_at_api_version {
                return contradicts(
                    "auto_create_at_api_version",
                    file.auto_create_at_api_version.to_string(),
                    format!(
                        "a check of a fresh customer at {} says {}",
                        file.api_version, found.auto_create_at_api_version
                    ),
                );
            }
            match (file.auto_create_version, found.auto_create_version) {
                (None, Some(v)) => {
                    return contradicts(
                        "auto_create_version",
                        "null".into(),
                        format!("a check at {v} creates a missing customer"),
                    )
                }
                (Some(v), _)
                    if v != file.api_version
                        && !prober.creates_at(file.routes, v, feature, found.reads).await? =>
                {
                    return contradicts(
                        "auto_create_version",
                        v.to_string(),
                        format!("a check of a fresh customer at {v} created none"),
                    );
                }
                _ => {}
            }
            if file.failed_key != found.failed_key {
                let name = |k: FailedKey| match k {
                    FailedKey::Kept => "kept",
                    FailedKey::GivenBack => "given_back",
                };
                return contradicts(
                    "failed_key",
                    name(file.failed_key).into(),
                    format!("the target's key is {}", name(found.failed_key)),
                );
            }
            let mut lines = vec!["every fact given by --target-profile, each confirmed:".to_owned()];
            lines.extend(learned.lines.into_iter().map(|l| format!("  {l}")));
            Ok(Learned { profile: file, lines })
        }
    }
}

/// The preflight proper: learns every fact `given` does not say.
async fn discover(prober: &mut Prober<'_>, feature: &str, given: &Given) -> Result<Learned, CheckError> {
    let mut lines = Vec::new();

    // 1. The newest version a read answers at.
    let versions: Vec<ApiVersion> = match given.api_version {
        Some(version) => vec![version],
        None => ApiVersion::KNOWN.to_vec(),
    };
    let mut tried = Vec::new();
    let mut found = None;
    for version in &versions {
        let by_id = prober.probe(Route::CustomerById, *version).await?;
        let get = prober.probe(Route::Get, *version).await?;
        match (&by_id, &get) {
            (Probe::Present(..), _) | (_, Probe::Present(..)) => {
                found =
                    Some((*version, matches!(get, Probe::Present(..)), matches!(by_id, Probe::Present(..))));
                break;
            }
            (Probe::BadVersion, _) | (_, Probe::BadVersion) => {
                tried.push(format!("{version}: 400 invalid_api_version"))
            }
            (Probe::Other(..), _) | (_, Probe::Other(..)) => {
                return Err(CheckError::Unspoken(format!(
                    "a read of a customer that cannot exist at {version} answered neither 404 customer_not_found nor 400 invalid_api_version: GET /v1/customers/{{id}} {}, POST /v1/customers.get {}",
                    describe(&by_id),
                    describe(&get)
                )))
            }
            _ => tried.push(format!(
                "{version}: GET /v1/customers/{{id}} answered {}, POST /v1/customers.get answered {}",
                describe(&by_id),
                describe(&get)
            )),
        }
    }
    let Some((api_version, has_get, has_by_id)) = found else {
        let every_version_refused = tried.iter().all(|t| t.ends_with("400 invalid_api_version"));
        return Err(CheckError::Unspoken(if every_version_refused {
            format!("it accepts none of the API versions tried: {}", tried.join("; "))
        } else {
            format!(
                "it speaks neither route family: a read of a customer that cannot exist (404 customer_not_found on either family's read) answered {}",
                tried.join("; ")
            )
        }));
    };
    lines.push(match given.api_version {
        Some(_) => format!("x-api-version {api_version}: given by {}", given.by("--api-version")),
        None if tried.is_empty() => {
            format!("x-api-version {api_version}: the newest the client knows, accepted")
        }
        None => format!("x-api-version {api_version}: the newest accepted ({})", tried.join("; ")),
    });

    // 2. The route family.
    let speaks = |answers: &[(Route, Probe)]| answers.iter().all(|(_, p)| matches!(p, Probe::Present(..)));
    let routes = match given.routes {
        Some(family) => {
            let answers = prober.family(family, api_version).await?;
            if !speaks(&answers) {
                return Err(CheckError::Unspoken(format!(
                    "{} says routes {}, but the target does not answer them as the API does: {}",
                    given.by("--routes"),
                    family.as_str(),
                    listed(&answers)
                )));
            }
            lines.push(format!("routes {}: given by {}", family.as_str(), given.by("--routes")));
            family
        }
        None => {
            let rpc = prober.family(Family::Rpc, api_version).await?;
            // Only routes that do not exist send the search to the other
            // family, never a passing error.
            if let Some((route, probe)) =
                rpc.iter().find(|(_, p)| matches!(p, Probe::Other(..) | Probe::BadVersion))
            {
                return Err(CheckError::Unspoken(format!(
                    "{} answered {} (neither as a route that exists nor as one that does not)",
                    route.describe(),
                    describe(probe)
                )));
            }
            if speaks(&rpc) {
                lines.push(
                    "routes rpc: customers.get_or_create, balances.check and balances.track answer"
                        .to_owned(),
                );
                Family::Rpc
            } else {
                let v1 = prober.family(Family::V1, api_version).await?;
                if !speaks(&v1) {
                    return Err(CheckError::Unspoken(format!(
                        "it speaks neither route family: rpc: {}; v1: {}",
                        listed(&rpc),
                        listed(&v1)
                    )));
                }
                lines.push(format!("routes v1: the rpc routes do not all answer ({})", listed(&rpc)));
                Family::V1
            }
        }
    };
    let reads = if routes == Family::Rpc && has_get { Family::Rpc } else { Family::V1 };
    if reads == Family::V1 && !has_by_id {
        return Err(CheckError::Unspoken(
            "with the v1 routes, reads need GET /v1/customers/{id}, which does not answer as the API does"
                .into(),
        ));
    }
    lines.push(match (routes, reads) {
        (Family::Rpc, Family::V1) => {
            "reads by GET /v1/customers/{id}: customers.get does not answer".to_owned()
        }
        (_, Family::Rpc) => "reads by customers.get".to_owned(),
        (Family::V1, Family::V1) => "reads by GET /v1/customers/{id}".to_owned(),
    });

    // 3. Auto-create, at the version and then older ones.
    let mut auto_at = Vec::new();
    let mut auto_create_version = None;
    let older: Vec<ApiVersion> = ApiVersion::KNOWN.into_iter().filter(|v| *v < api_version).collect();
    for version in std::iter::once(api_version).chain(older) {
        let id = prober.fresh("auto");
        let (status, body) = prober.send(auto_create_wire(routes, version, &id, feature)).await?;
        let code = code_of(&body);
        match (status, code.as_str()) {
            (200..=299, _) if prober.read_finds(&id, api_version, reads).await? => {
                auto_create_version = Some(version);
                auto_at.push(format!("{version}: {status}, created"));
                break;
            }
            (200..=299, _) => auto_at.push(format!("{version}: {status}, but the customer is not found after")),
            (404, "customer_not_found") => auto_at.push(format!("{version}: 404 customer_not_found")),
            (400, "invalid_api_version") => auto_at.push(format!("{version}: 400 invalid_api_version")),
            _ => {
                return Err(CheckError::Unspoken(format!(
                    "a check of a fresh customer at {version} answered {}, neither a success nor customer_not_found",
                    brief(status, &body)
                )))
            }
        }
    }
    let auto_create_at_api_version = auto_create_version == Some(api_version);
    lines.push(format!(
        "{} (a check of a fresh customer at {})",
        match auto_create_version {
            Some(v) if v == api_version => format!("check and track auto-create at {v}"),
            Some(v) => format!("check and track auto-create at {v}, not at {api_version}"),
            None => "check and track create no missing customer at any version tried".to_owned(),
        },
        auto_at.join("; ")
    ));

    // 4. A failed request's key.
    let key = prober.fresh("key");
    let create = routes.routes()[0];
    let mut answers = Vec::new();
    for _ in 0..2 {
        let id = prober.fresh("probe");
        let (status, body) = prober.send(probe_wire(create, api_version, &id, Some(&key))).await?;
        answers.push((status, code_of(&body), brief(status, &body)));
    }
    let failed_key = match (&answers[0], &answers[1]) {
        ((409, ..), _) => {
            lines.push(format!(
                "a failed request's key is kept: a fresh Idempotency-Key was refused at its first use ({}); every keyed call will be refused",
                answers[0].2
            ));
            FailedKey::Kept
        }
        ((first, ..), (409, ..)) if (400..500).contains(first) => {
            lines.push(format!(
                "a failed request's key is kept: a create with neither id nor email was {}, sent again with its key 409",
                answers[0].0
            ));
            FailedKey::Kept
        }
        ((first, code, _), (second, again, _)) if (400..500).contains(first) && first == second && code == again => {
            lines.push(format!(
                "a failed request's key is given back: a create with neither id nor email was {first} {code}, and again with its key"
            ));
            FailedKey::GivenBack
        }
        ((_, _, first), (_, _, second)) => {
            return Err(CheckError::Unspoken(format!(
                "a create with neither id nor email, sent twice with one key, answered {first}, then {second}: neither a 4xx given back nor a 409"
            )))
        }
    };
    let profile =
        Profile { routes, reads, api_version, auto_create_at_api_version, auto_create_version, failed_key };
    Ok(Learned { profile, lines })
}

fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Present(status, code) => format!("{status} {code}"),
        Probe::BadVersion => "400 invalid_api_version".to_owned(),
        Probe::Absent(_, text) | Probe::Other(_, text) => text.clone(),
    }
}

fn listed(answers: &[(Route, Probe)]) -> String {
    answers
        .iter()
        .map(|(route, probe)| format!("{} {}", route.describe(), describe(probe)))
        .collect::<Vec<_>>()
        .join(", ")
}
