//! Arbitrary requests to the router, in process: every answer is JSON in
//! a documented shape, bad input is never a 5xx, and a rejected request
//! changes nothing in the store.

mod support;

use cusim::flow::Strategy as Design;
use proptest::prelude::*;
use serde_json::json;
use support::fuzz::{call, check_answer};
use support::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_is_json_of_its_shape_and_rejections_change_nothing(
        calls in prop::collection::vec(call(), 1..8),
        strategy in prop::sample::select(Design::ALL.to_vec()),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let app = app(strategy, free_catalog());
        // A customer to find, so that successes happen too.
        runtime.block_on(post(&app, "/v1/customers.get_or_create", json!({"customer_id": "ann"}), &[]));
        for call in &calls {
            check_answer(&app, &runtime, call, Some(&digest))?;
        }
    }
}
