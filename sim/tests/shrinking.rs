//! Every race of the catalog shrinks to a small case: at most 3
//! preemptions, and no more requests than the race needs; the shrunk case
//! shows the same race, matched by its interleaving.

mod support;

use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::RunOptions;
use cusim_sim::explore::shrink::{shrink, Case};
use cusim_sim::input::schedule::Schedule;
use cusim_sim::judge::races::Symptom;
use support::*;

#[test]
fn each_race_shrinks_to_at_most_three_preemptions_and_the_requests_it_needs() {
    for builtin in BUILTINS.iter().filter(|b| !b.races.is_empty()) {
        let scenario = builtin.scenario().unwrap();
        for &(strategy, race) in builtin.races {
            let report = pct(&scenario, strategy, 1_000);
            let found = report.violations.iter().find(|f| f.race == Some(race)).expect("pct finds it");
            let symptom = found.symptom();
            let case = Case {
                scenario: scenario.clone(),
                strategy,
                schedule: Schedule::parse(&found.schedule).unwrap(),
            };
            let shrunk = shrink(&case, symptom, 20_000).expect("the witness reproduces");
            let size = shrunk.size;
            assert!(size.preemptions <= 3, "{}: {size:?}", builtin.name());
            // Every race of the catalog needs two requests at most (R3 one, plus its crash).
            assert!(size.requests <= 2, "{}: {size:?}", builtin.name());
            assert!(size.requests <= scenario.requests.len());
            assert!(size.faults <= scenario.faults.len(), "{}: shrinking added a fault", builtin.name());
            // And the shrunk case replays strictly to the same race.
            let prepared = cusim_sim::drive::stepper::Prepared::new(&shrunk.case.scenario, strategy).unwrap();
            let options = RunOptions { record_trace: true, ..RunOptions::default() };
            let run = cusim_sim::drive::stepper::execute_run(
                &prepared,
                &mut cusim_sim::drive::stepper::Replay::new(&shrunk.case.schedule),
                options,
            )
            .unwrap();
            let shown: Vec<Symptom> = cusim_sim::judge::judge(&prepared.scenario, &run.observation)
                .iter()
                .map(|v| Symptom::of(&run.trace, v))
                .collect();
            assert!(shown.contains(&symptom), "{}: shrunk to {shown:?}", builtin.name());
            assert_eq!(shrunk.race, Some(race));
        }
    }
}
