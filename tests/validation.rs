//! SPEC §2: the id rule, its messages and their order, the same for
//! create, check and track.

mod support;

use cusim::flow::Request;
use cusim::model::{validate_customer_id, validation_error, ApiError, ErrorCode, FieldError, IdError};
use proptest::prelude::*;
use support::*;

/// Inputs chosen so that each rule, and each precedence between rules, shows.
const BAD_IDS: &[&str] = &[
    "",
    "user@example",
    "a b",
    "a.b",
    "a!b",
    "a/b",
    "héllo",
    "tab\there",
    "@ .!",    // @ wins over space, period and others
    " .!",     // space wins over period
    ".!",      // period wins over other characters
    "ok!?",    // the first other bad character is named
    "ünïcode", // non-ASCII letters are not letters here
];

fn create_error(sim: &mut Sim, id: &str) -> ApiError {
    sim.run(&create(Some(id), None, Some("e@example.com"))).expect_err("a bad id is refused")
}

#[test]
fn every_message_matches_the_spec() {
    let mut sim = Sim::new(cusim::flow::Strategy::Safe, free_catalog());
    let mut lines = Vec::new();
    for id in BAD_IDS {
        let error = create_error(&mut sim, id);
        lines.push(format!("{id:?} -> {} {} {}", error.http_status(), error.code, error.message));
    }
    let several = validation_error(&[
        FieldError::customer_id("id", &IdError::Empty),
        FieldError::customer_id("customer_id", &IdError::InvalidChar('!')),
    ]);
    lines.push(format!("several -> {} {} {}", several.http_status(), several.code, several.message));
    insta::assert_snapshot!("validation_messages", lines.join("\n"));
}

#[test]
fn create_check_and_track_reject_bad_ids_alike_before_touching_anything() {
    for_each_strategy(|strategy| {
        for id in BAD_IDS {
            let mut sim = Sim::new(strategy, free_catalog());
            let from_create = create_error(&mut sim, id);
            let from_check = sim.run(&Request::check(id, "words")).expect_err("check refuses a bad id");
            let from_track = sim.run(&Request::track(id, "words", 1)).expect_err("track refuses a bad id");
            let from_get = sim.run(&Request::get(id)).expect_err("get refuses a bad id");
            let expected = validate_customer_id(id).expect_err("a bad id").to_string();
            assert_eq!(from_create.message, format!("id: {expected}"));
            assert_eq!(from_get.message, format!("id: {expected}"));
            for error in [&from_check, &from_track] {
                assert_eq!(error.message, format!("customer_id: {expected}"));
            }
            for error in [&from_create, &from_check, &from_track, &from_get] {
                assert_eq!(error.code, ErrorCode::InvalidInputs);
                assert_eq!(error.http_status(), 400);
            }
            assert_eq!(sim.world.seq(), 0, "{id:?}: validation happens before any backend call");
        }
    });
}

#[test]
fn a_good_id_passes_every_entry_point() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        for id in ["a", "A-1_b", "0", "-", "_", "cus_123"] {
            sim.run(&create(Some(id), None, None)).unwrap();
            sim.run(&Request::check(id, "words")).unwrap();
            sim.run(&Request::track(id, "words", 1)).unwrap();
        }
    });
}

/// The rule restated the way a reader checks it by eye: which rule an
/// input breaks first.
fn first_broken_rule(s: &str) -> Option<IdError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if s.is_empty() {
        Some(IdError::Empty)
    } else if s.contains('@') {
        Some(IdError::ContainsAt)
    } else if s.contains(' ') {
        Some(IdError::ContainsSpace)
    } else if s.contains('.') {
        Some(IdError::ContainsPeriod)
    } else {
        s.chars().find(|c| !allowed(*c)).map(IdError::InvalidChar)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_string_of_the_pattern_is_accepted(id in "[a-zA-Z0-9_-]{1,48}") {
        prop_assert_eq!(validate_customer_id(&id), Ok(()));
    }

    #[test]
    fn every_other_string_is_rejected_by_its_first_broken_rule(id in any::<String>()) {
        let matches_pattern = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        prop_assume!(!matches_pattern);
        let error = validate_customer_id(&id).expect_err("outside the pattern");
        prop_assert_eq!(Some(error.clone()), first_broken_rule(&id));
        if let IdError::InvalidChar(c) = error {
            prop_assert!(!matches!(c, '@' | ' ' | '.'));
            prop_assert_eq!(Some(c), id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')));
        }
    }

    #[test]
    fn one_bad_character_in_a_good_id_is_named(
        prefix in "[a-zA-Z0-9_-]{0,10}",
        suffix in "[a-zA-Z0-9_-]{0,10}",
        bad in any::<char>().prop_filter("not an id character", |c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')),
    ) {
        let id = format!("{prefix}{bad}{suffix}");
        let message = validate_customer_id(&id).expect_err("one bad character").to_string();
        let expected = match bad {
            '@' => "cannot contain @ symbol. Use only letters, numbers, underscores, and hyphens.".to_owned(),
            ' ' => "cannot contain spaces. Use only letters, numbers, underscores, and hyphens.".to_owned(),
            '.' => "cannot contain periods. Use only letters, numbers, underscores, and hyphens.".to_owned(),
            c => format!("cannot contain '{c}'. Use only letters, numbers, underscores, and hyphens."),
        };
        prop_assert_eq!(message, expected);
    }
}
