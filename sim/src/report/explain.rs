//! `cusim explain`: what an invariant means, which races of the catalog
//! (SPEC §8) break it, and which built-in scenario shows it; or the same
//! for a race.
//!
//! Which race breaks which invariant is not written down twice: it comes
//! from the built-in scenarios' expectations ([`crate::corpus::builtin::BUILTINS`]),
//! the same table `cusim explore --all` holds the harness to.

use cusim::flow::Strategy;
use serde::Serialize;

use crate::corpus::builtin::{Builtin, BUILTINS};
use crate::judge::races::Race;
use crate::judge::Invariant;

/// The words for one invariant.
pub struct InvariantText {
    /// SPEC §6's "holds when", word for word in substance.
    pub holds_when: &'static str,
    /// Why a user of the billing server cares.
    pub why: &'static str,
    /// What the oracle reads to decide it.
    pub checked: &'static str,
}

pub fn invariant_text(invariant: Invariant) -> InvariantText {
    use Invariant::*;
    let (holds_when, why, checked) = match invariant {
        UniqueCustomer => (
            "At most one customer row per (org, env, id), and at most one id-less row per (org, env, \
             lower(email)). Every successful create of the same id returns the same internal_id.",
            "A second row splits one customer in two: products, usage and Stripe billing land on \
             whichever row a later request happens to find.",
            "After quiescence, the committed rows are grouped by key; every successful create and \
             settle read of the same id is compared by internal_id.",
        ),
        DefaultsPresent => (
            "At quiescence every customer that should have default products has exactly one product \
             per default group, the selected one (trial before paid before free, then by product id). \
             A claimed id-less row keeps the products it had.",
            "A customer created without its free plan cannot use the product; two products in one \
             group bill twice.",
            "The oracle works out what each customer is owed from the request (or seed) that inserted \
             it and the catalog, independently of the flows, and compares the committed products.",
        ),
        NoInternalError => (
            "No request fails with internal_error because of another request.",
            "A concurrent insert's unique violation (23505) surfacing as a 500 is an outage for a \
             client that did nothing wrong.",
            "Every response of the run, settle reads included.",
        ),
        FreshCache => (
            "At quiescence a cached customer equals the DB's view of it.",
            "A stale entry serves the wrong products, balances or Stripe id until it expires.",
            "Every cache entry is compared with the committed customer it names, and must name it by \
             the same id and tenant.",
        ),
        SingleStripeCustomer => (
            "At most one Stripe customer per internal customer, and the customer's processor names it.",
            "An orphaned Stripe customer means a second set of invoices, or payment methods attached \
             to a customer the server no longer points at.",
            "The Stripe model's customers are grouped by the internal customer they were made for and \
             compared with each row's processor.",
        ),
        UsageConserved => (
            "At quiescence, per customer and feature, the DB's usage equals the sum of the accepted \
             track values, and the cache agrees.",
            "Lost usage is lost revenue, or a customer let past their allowance.",
            "Accepted tracks are summed per customer and feature and compared with the committed \
             balances and every cached copy.",
        ),
        ClaimCorrect => (
            "A create {id: X} returns a customer whose id is X, and the row still has id X at the end.",
            "Two ids claiming one id-less row leave one client holding a customer that is now \
             somebody else's.",
            "Every successful create with an id, against its response and the committed row.",
        ),
        ResponsesSeeDefaults => (
            "No successful response shows a customer without its defaults (settle reads included).",
            "A client told the customer has no plan acts on it: a check denied, an upgrade offered.",
            "Every successful response that shows a customer, against what that customer is owed.",
        ),
        TenantIsolation => (
            "No request reads or writes another (org, env).",
            "One tenant's request touching another tenant's customer is a data leak.",
            "The in-memory model records every row each statement touched; any row of another \
             (org, env) than the request's is a breach.",
        ),
        Terminates => (
            "Every request finishes: no deadlock left unresolved, no livelock, no transaction left open.",
            "A request that never answers holds its connection and its locks until a timeout.",
            "The run's end: quiescent, or stalled (requests waiting for a transaction nobody will \
             end), or the step cap (a livelock), or a transaction left open.",
        ),
    };
    InvariantText { holds_when, why, checked }
}

/// The words for one race (SPEC §8).
pub struct RaceText {
    pub symptom: &'static str,
    pub interleaving: &'static str,
}

pub fn race_text(race: Race) -> RaceText {
    let (symptom, interleaving) = match race {
        Race::R1 => (
            "internal_error on a same-id create",
            "A and B look the id up and find nothing; A inserts; B's insert hits 23505.",
        ),
        Race::R2 => (
            "defaults missing and cached stale",
            "A inserts; B reads the customer with 0 products and caches it; A's cache write finds the \
             key taken (in the model's legacy, a plain set: B's stale write lands after A's, or A's \
             cache read finds B's entry and A keeps it).",
        ),
        Race::R3 => (
            "defaults missing forever",
            "A inserts and crashes before attaching defaults; retries see \"exists\".",
        ),
        Race::R4 => (
            "duplicate id-less customers",
            "Two id:null creates with one email: both lookups are empty, both insert.",
        ),
        Race::R5 => (
            "an id-less row claimed twice",
            "{X, E} and {Y, E} both see the id-less row of email E; both set their id on it.",
        ),
        Race::R6 => (
            "two Stripe customers",
            "Two requests each find processor empty and call Stripe in different 5 s idempotency \
             buckets; the last processor write wins and the other Stripe customer is orphaned.",
        ),
        Race::R7 => (
            "a cache without the Stripe fields",
            "B caches the customer after A's phase 1; A's phase 2 updates do not invalidate it.",
        ),
        Race::R8 => (
            "lost usage (cache overwrite)",
            "Both miss the cache; A sets it and deducts; B's set overwrites it with an older snapshot.",
        ),
        Race::R9 => (
            "lost usage (invalidation before sync)",
            "An invalidation between the deduct and the sync drops the deduction.",
        ),
    };
    RaceText { symptom, interleaving }
}

/// The built-in scenario made for `race` (file `rN-…`).
pub fn builtin_of(race: Race) -> Option<&'static Builtin> {
    let prefix = format!("{}-", race.to_string().to_lowercase());
    BUILTINS.iter().find(|b| b.file.starts_with(&prefix))
}

/// `(race, strategy)`: the catalog's races that break `invariant`, under
/// the strategies they are found in.
pub fn races_breaking(invariant: Invariant) -> Vec<(Race, Vec<Strategy>)> {
    Race::ALL
        .into_iter()
        .filter_map(|race| {
            let builtin = builtin_of(race)?;
            let strategies: Vec<Strategy> =
                builtin.expected.iter().filter(|(_, i)| *i == invariant).map(|(s, _)| *s).collect();
            (!strategies.is_empty()).then_some((race, strategies))
        })
        .collect()
}

/// The regression corpus (`fixtures/regressions/`), by file name without
/// `.json`: `SCENARIO--STRATEGY--INVARIANT[--RACE]` (the catalog race whose
/// interleaving the case holds, if any). Every symptom that
/// `cusim explore --all --shrink` finds in the built-in scenarios, side
/// effects of a race included. A test keeps this list equal to the folder.
pub const CORPUS: &[&str] = &[
    "clean-distinct-ids--legacy--usage_conserved",
    "clean-distinct-ids--transactional--usage_conserved",
    "clean-same-id-two-orgs--legacy--usage_conserved",
    "clean-same-id-two-orgs--transactional--usage_conserved",
    "r1-same-id-create--legacy--no_internal_error--r1",
    "r1-same-id-create--legacy--responses_see_defaults",
    "r2-stale-cache--legacy--fresh_cache--r2",
    "r2-stale-cache--legacy--no_internal_error--r1",
    "r2-stale-cache--legacy--responses_see_defaults",
    "r3-crash-before-defaults--legacy--defaults_present--r3",
    "r3-crash-before-defaults--legacy--no_internal_error--r1",
    "r3-crash-before-defaults--legacy--responses_see_defaults",
    "r4-idless-duplicates--legacy--responses_see_defaults",
    "r4-idless-duplicates--legacy--unique_customer--r4",
    "r5-double-claim--legacy--claim_correct--r5",
    "r6-two-stripe-customers--legacy--fresh_cache",
    "r6-two-stripe-customers--legacy--no_internal_error--r1",
    "r6-two-stripe-customers--legacy--responses_see_defaults",
    "r6-two-stripe-customers--legacy--single_stripe_customer--r6",
    "r6-two-stripe-customers--transactional--single_stripe_customer--r6",
    "r7-cache-without-stripe--legacy--defaults_present",
    "r7-cache-without-stripe--legacy--fresh_cache--r2",
    "r7-cache-without-stripe--legacy--no_internal_error--r1",
    "r7-cache-without-stripe--legacy--responses_see_defaults",
    "r7-cache-without-stripe--transactional--fresh_cache--r7",
    "r8-lost-usage-overwrite--legacy--fresh_cache",
    "r8-lost-usage-overwrite--legacy--usage_conserved",
    "r8-lost-usage-overwrite--legacy--usage_conserved--r8",
    "r8-lost-usage-overwrite--transactional--fresh_cache",
    "r8-lost-usage-overwrite--transactional--usage_conserved",
    "r8-lost-usage-overwrite--transactional--usage_conserved--r8",
    "r9-lost-usage-invalidation--legacy--fresh_cache",
    "r9-lost-usage-invalidation--legacy--usage_conserved",
    "r9-lost-usage-invalidation--legacy--usage_conserved--r9",
    "r9-lost-usage-invalidation--transactional--fresh_cache",
    "r9-lost-usage-invalidation--transactional--usage_conserved",
    "r9-lost-usage-invalidation--transactional--usage_conserved--r9",
    "w1-keyed-retry-after-lost-response--legacy--fresh_cache",
    "w1-keyed-retry-after-lost-response--legacy--usage_conserved",
    "w1-keyed-retry-after-lost-response--transactional--fresh_cache",
    "w1-keyed-retry-after-lost-response--transactional--usage_conserved",
    "w2-cache-evicted-before-sync--legacy--fresh_cache",
    "w2-cache-evicted-before-sync--legacy--usage_conserved",
    "w2-cache-evicted-before-sync--legacy--usage_conserved--r8",
    "w2-cache-evicted-before-sync--transactional--fresh_cache",
    "w2-cache-evicted-before-sync--transactional--usage_conserved",
    "w2-cache-evicted-before-sync--transactional--usage_conserved--r8",
    "w3-skewed-instances--legacy--fresh_cache",
    "w3-skewed-instances--transactional--fresh_cache",
    "w4-stripe-window--legacy--no_internal_error--r1",
    "w4-stripe-window--legacy--responses_see_defaults",
    "w4-stripe-window--legacy--single_stripe_customer",
    "w4-stripe-window--legacy--single_stripe_customer--r6",
    "w4-stripe-window--transactional--single_stripe_customer",
    "w4-stripe-window--transactional--single_stripe_customer--r6",
];

/// `(scenario, strategy)` pairs of the corpus that break `invariant`.
pub fn corpus_breaking(invariant: Invariant) -> Vec<(&'static str, Strategy)> {
    CORPUS
        .iter()
        .filter_map(|stem| {
            let mut parts = stem.split("--");
            let (scenario, strategy, broken) = (parts.next()?, parts.next()?, parts.next()?);
            (broken == invariant.as_str()).then_some((scenario, Strategy::parse(strategy)?))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What `cusim explain` resolves a name to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Invariant(Invariant),
    Race(Race),
}

/// An invariant by name (`fresh_cache`, or `fresh-cache`), or a race (`R2`, `r2`).
pub fn topic(name: &str) -> Option<Topic> {
    let normal = name.trim().to_lowercase().replace('-', "_");
    if let Some(invariant) = Invariant::parse(&normal) {
        return Some(Topic::Invariant(invariant));
    }
    Race::ALL.into_iter().find(|r| r.to_string().to_lowercase() == normal).map(Topic::Race)
}

/// An explanation, for `--json`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub name: String,
    pub kind: &'static str,
    pub summary: String,
    pub why: Option<String>,
    pub checked: Option<String>,
    pub interleaving: Option<String>,
    /// Invariant: the races that break it; race: the invariants it breaks.
    pub related: Vec<Related>,
    /// Invariant: built-in scenarios where it breaks as a side effect of
    /// another race (from the regression corpus), as `scenario (strategy)`.
    pub also_broken_in: Vec<String>,
    /// `cusim replay`/`explore` commands that show it.
    pub try_commands: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Related {
    pub name: String,
    pub strategies: Vec<Strategy>,
    pub what: String,
    pub scenario: Option<String>,
}

fn strategies_text(strategies: &[Strategy]) -> String {
    let names: Vec<&str> = strategies.iter().map(|s| s.as_str()).collect();
    names.join(", ")
}

fn dedup_strategies(pairs: &[(Strategy, Invariant)]) -> Vec<Strategy> {
    let mut strategies: Vec<Strategy> = pairs.iter().map(|(s, _)| *s).collect();
    strategies.sort();
    strategies.dedup();
    strategies
}

pub fn explain(topic: Topic) -> Explanation {
    match topic {
        Topic::Invariant(invariant) => {
            let text = invariant_text(invariant);
            let related: Vec<Related> = races_breaking(invariant)
                .into_iter()
                .map(|(race, strategies)| Related {
                    name: race.to_string(),
                    what: race_text(race).symptom.to_owned(),
                    scenario: builtin_of(race).map(|b| b.name().to_owned()),
                    strategies,
                })
                .collect();
            let mut try_commands: Vec<String> = related
                .iter()
                .filter_map(|r| {
                    let scenario = r.scenario.as_ref()?;
                    Some(format!(
                        "cusim explore --scenario {scenario} --strategy {} --shrink",
                        r.strategies.first()?.as_str()
                    ))
                })
                .collect();
            if related.is_empty() {
                try_commands
                    .push(format!("cusim explore --all   # checks {invariant} on every built-in scenario"));
            }
            let headline: Vec<(String, Strategy)> = related
                .iter()
                .flat_map(|r| r.strategies.iter().map(|s| (r.scenario.clone().unwrap_or_default(), *s)))
                .collect();
            let also_broken_in = corpus_breaking(invariant)
                .into_iter()
                .filter(|(scenario, strategy)| !headline.iter().any(|(h, s)| h == scenario && s == strategy))
                .map(|(scenario, strategy)| format!("{scenario} ({strategy})"))
                .collect();
            Explanation {
                name: invariant.to_string(),
                kind: "invariant",
                also_broken_in,
                summary: text.holds_when.to_owned(),
                why: Some(text.why.to_owned()),
                checked: Some(text.checked.to_owned()),
                interleaving: None,
                related,
                try_commands,
            }
        }
        Topic::Race(race) => {
            let text = race_text(race);
            let builtin = builtin_of(race);
            let related: Vec<Related> = match builtin {
                None => Vec::new(),
                Some(builtin) => {
                    let side_effects = Invariant::ALL.into_iter().filter(|i| {
                        corpus_breaking(*i).iter().any(|(scenario, _)| *scenario == builtin.name())
                    });
                    let is_symptom = |i: Invariant| builtin.expected.iter().any(|(_, e)| *e == i);
                    let mut invariants: Vec<Invariant> =
                        builtin.expected.iter().map(|(_, i)| *i).chain(side_effects).collect();
                    // The race's own symptom first, then its side effects.
                    invariants.sort_by_key(|i| (!is_symptom(*i), *i));
                    invariants.dedup();
                    invariants
                        .into_iter()
                        .map(|invariant| {
                            let mut pairs: Vec<(Strategy, Invariant)> =
                                builtin.expected.iter().filter(|(_, i)| *i == invariant).copied().collect();
                            pairs.extend(
                                corpus_breaking(invariant)
                                    .into_iter()
                                    .filter(|(scenario, _)| *scenario == builtin.name())
                                    .map(|(_, strategy)| (strategy, invariant)),
                            );
                            Related {
                                name: invariant.to_string(),
                                what: if is_symptom(invariant) { "its symptom" } else { "a side effect" }
                                    .to_owned(),
                                strategies: dedup_strategies(&pairs),
                                scenario: Some(builtin.name().to_owned()),
                            }
                        })
                        .collect()
                }
            };
            let try_commands = builtin
                .map(|b| {
                    dedup_strategies(b.expected)
                        .into_iter()
                        .map(|s| format!("cusim explore --scenario {} --strategy {s} --shrink", b.name()))
                        .collect()
                })
                .unwrap_or_default();
            Explanation {
                name: race.to_string(),
                kind: "race",
                also_broken_in: Vec::new(),
                summary: text.symptom.to_owned(),
                why: None,
                checked: None,
                interleaving: Some(text.interleaving.to_owned()),
                related,
                try_commands,
            }
        }
    }
}

/// Wraps `text` at `width` columns, each line starting with `indent`.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The explanation as text for a terminal.
pub fn render(explanation: &Explanation) -> String {
    const WIDTH: usize = 78;
    let mut out = String::new();
    match explanation.kind {
        "invariant" => {
            out.push_str(&format!("{} (invariant)\n\n", explanation.name));
            out.push_str("Holds when:\n");
            out.push_str(&wrap(&explanation.summary, "  ", WIDTH));
            if let Some(why) = &explanation.why {
                out.push_str("\nWhy it matters:\n");
                out.push_str(&wrap(why, "  ", WIDTH));
            }
            if let Some(checked) = &explanation.checked {
                out.push_str("\nHow the oracle checks it:\n");
                out.push_str(&wrap(checked, "  ", WIDTH));
            }
            out.push_str("\nRaces that break it (SPEC §8):\n");
            if explanation.related.is_empty() {
                out.push_str(&wrap(
                    "None in the catalog: no built-in scenario breaks it under any strategy. It is \
                     checked after every run all the same.",
                    "  ",
                    WIDTH,
                ));
            }
            for related in &explanation.related {
                let line = format!(
                    "{}: {} (in {}); built-in scenario {}",
                    related.name,
                    related.what,
                    strategies_text(&related.strategies),
                    related.scenario.as_deref().unwrap_or("none")
                );
                out.push_str(&wrap(&line, "  ", WIDTH));
            }
            if !explanation.also_broken_in.is_empty() {
                out.push_str("\nAlso broken, as a side effect of another race, in:\n");
                out.push_str(&wrap(&explanation.also_broken_in.join(", "), "  ", WIDTH));
            }
        }
        _ => {
            out.push_str(&format!("{} (race): {}\n\n", explanation.name, explanation.summary));
            if let Some(interleaving) = &explanation.interleaving {
                out.push_str("Interleaving:\n");
                out.push_str(&wrap(interleaving, "  ", WIDTH));
            }
            out.push_str("\nInvariants it breaks:\n");
            for related in &explanation.related {
                let line = format!(
                    "{}: {} (in {})",
                    related.name,
                    related.what,
                    strategies_text(&related.strategies)
                );
                out.push_str(&wrap(&line, "  ", WIDTH));
            }
            if let Some(scenario) = explanation.related.first().and_then(|r| r.scenario.as_deref()) {
                out.push_str(&format!(
                    "\nBuilt-in scenario:\n  {scenario} (fixtures/scenarios/{scenario}.json)\n"
                ));
            }
        }
    }
    if !explanation.try_commands.is_empty() {
        out.push_str("\nSee it:\n");
        for command in &explanation.try_commands {
            out.push_str(&format!("  {command}\n"));
        }
    }
    out
}

/// Every invariant and race, one line each (`cusim explain` without a name).
pub fn list() -> String {
    let mut out = String::from("Invariants (SPEC §6), checked after every run:\n");
    for invariant in Invariant::ALL {
        let races: Vec<String> = races_breaking(invariant).into_iter().map(|(r, _)| r.to_string()).collect();
        let broken_by = if races.is_empty() { "-".to_owned() } else { races.join(" ") };
        out.push_str(&format!("  {:<24} broken by {broken_by}\n", invariant.as_str()));
    }
    out.push_str("\nRaces (SPEC §8):\n");
    for race in Race::ALL {
        out.push_str(&format!("  {race}  {}\n", race_text(race).symptom));
    }
    out.push_str("\n`cusim explain NAME` tells more about one of them.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_race_has_a_builtin_and_breaks_something() {
        for race in Race::ALL {
            let builtin = builtin_of(race).unwrap_or_else(|| panic!("{race} has no built-in scenario"));
            assert!(!builtin.expected.is_empty(), "{race}: {} expects nothing", builtin.name());
            assert!(
                Invariant::ALL.iter().any(|i| races_breaking(*i).iter().any(|(r, _)| *r == race)),
                "{race} breaks no invariant"
            );
        }
    }

    #[test]
    fn the_catalog_mapping_matches_spec_section_8() {
        let races = |i: Invariant| -> Vec<String> {
            races_breaking(i).into_iter().map(|(r, _)| r.to_string()).collect()
        };
        assert_eq!(races(Invariant::NoInternalError), ["R1"]);
        assert_eq!(races(Invariant::FreshCache), ["R2", "R7"]);
        assert_eq!(races(Invariant::UsageConserved), ["R8", "R9"]);
        assert_eq!(races(Invariant::SingleStripeCustomer), ["R6"]);
        assert!(races(Invariant::TenantIsolation).is_empty());
        let r6 = races_breaking(Invariant::SingleStripeCustomer);
        assert_eq!(r6[0].1, [Strategy::Legacy, Strategy::Transactional]);
    }

    #[test]
    fn the_corpus_list_is_the_regression_folder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/regressions");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|f| f.strip_suffix(".json").map(str::to_owned))
            .collect();
        files.sort();
        assert_eq!(files, CORPUS, "update explain::CORPUS to the files of fixtures/regressions/");
        for stem in CORPUS {
            let parts: Vec<&str> = stem.split("--").collect();
            assert!(crate::corpus::builtin::find(parts[0]).is_some(), "{stem}: no such built-in scenario");
            assert!(Strategy::parse(parts[1]).is_some() && Invariant::parse(parts[2]).is_some(), "{stem}");
            assert!(parts.len() == 3 || (parts.len() == 4 && topic(parts[3]).is_some()), "{stem}");
        }
    }

    #[test]
    fn names_resolve_loosely_and_strictly() {
        assert_eq!(topic("fresh_cache"), Some(Topic::Invariant(Invariant::FreshCache)));
        assert_eq!(topic("Fresh-Cache"), Some(Topic::Invariant(Invariant::FreshCache)));
        assert_eq!(topic("r2"), Some(Topic::Race(Race::R2)));
        assert_eq!(topic("R10"), None);
        assert_eq!(topic("fresh"), None);
    }

    #[test]
    fn text_names_the_races_and_the_scenario() {
        let text = render(&explain(Topic::Invariant(Invariant::NoInternalError)));
        assert!(text.contains("R1: internal_error on a same-id create (in legacy)"), "{text}");
        assert!(text.contains("r1-same-id-create"), "{text}");
        assert!(text.contains("cusim explore --scenario r1-same-id-create --strategy legacy"), "{text}");
        let race = render(&explain(Topic::Race(Race::R9)));
        assert!(race.contains("usage_conserved: its symptom (in legacy, transactional)"), "{race}");
        assert!(race.contains("fresh_cache: a side effect (in legacy, transactional)"), "{race}");
        let side = render(&explain(Topic::Invariant(Invariant::ResponsesSeeDefaults)));
        assert!(side.contains("Also broken, as a side effect of another race, in:"), "{side}");
        assert!(side.contains("r1-same-id-create (legacy)"), "{side}");
        assert!(!side.contains("r2-stale-cache (legacy),"), "the headline is not repeated: {side}");
        let quiet = render(&explain(Topic::Invariant(Invariant::Terminates)));
        assert!(quiet.contains("None in the catalog"), "{quiet}");
        for line in list().lines().chain(text.lines()) {
            assert!(line.chars().count() <= 80, "too wide: {line}");
        }
    }
}
