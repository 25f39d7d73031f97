//! Arbitrary requests to the router, in process: every answer is JSON in
//! a documented shape, bad input is never a 5xx, and a rejected request
//! changes nothing in the store. The calls actually sent are counted (a
//! generated call no HTTP client could send is skipped), and a floor of
//! them is asserted, so skipped cases cannot pass for checked ones.

mod support;

use std::cell::Cell;

use cusim::flow::Strategy as Design;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use support::fuzz::{call, check_answer};
use support::*;

/// Generated sequences of calls.
const CASES: u32 = 600;
/// Calls that must actually be sent over them (a sequence holds 1 to 7).
const SENT_FLOOR: usize = 1_200;

#[test]
fn every_answer_is_json_of_its_shape_and_rejections_change_nothing() {
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let (sent, rejected) = (Cell::new(0usize), Cell::new(0usize));
    let strategy = (prop::collection::vec(call(), 1..8), prop::sample::select(Design::ALL.to_vec()));
    let result = TestRunner::new(config).run(&strategy, |(calls, strategy)| {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let app = app(strategy, free_catalog());
        // A customer to find, so that successes happen too.
        runtime.block_on(post(&app, "/v1/customers.get_or_create", json!({"customer_id": "ann"}), &[]));
        for call in &calls {
            if check_answer(&app, &runtime, call, Some(&digest))? {
                sent.set(sent.get() + 1);
            } else {
                rejected.set(rejected.get() + 1);
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!(
        "{} calls sent over {CASES} sequences ({} skipped: no client could send them)",
        sent.get(),
        rejected.get()
    );
    assert!(sent.get() >= SENT_FLOOR, "only {} calls were sent", sent.get());
}
