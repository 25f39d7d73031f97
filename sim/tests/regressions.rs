//! The regression corpus (`fixtures/regressions/`): every saved minimal
//! case still breaks its invariant by the same race, its trace is unchanged (an insta
//! snapshot), and `safe` holds on the very same specimen.

mod support;

use cusim::flow::Strategy;
use cusim_sim::corpus::regression::Regression;
use cusim_sim::drive::stepper::Lenient;
use cusim_sim::drive::stepper::{execute_run, Prepared, Replay, RunOptions};
use cusim_sim::input::schedule::Schedule;
use cusim_sim::judge::races::Symptom;
use cusim_sim::report::text as trace;

fn corpus() -> Vec<(String, Regression)> {
    Regression::corpus()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(path, regression)| (path.file_stem().unwrap().to_string_lossy().into_owned(), regression))
        .collect()
}

#[test]
fn every_regression_still_breaks_its_invariant_with_the_same_trace() {
    let corpus = corpus();
    assert!(corpus.len() >= 9, "the corpus holds a case per race at least");
    for (name, regression) in corpus {
        assert_ne!(regression.strategy, Strategy::Safe, "{name}: safe's failures are bugs, not specimens");
        let prepared = Prepared::new(&regression.scenario, regression.strategy).unwrap();
        let schedule = Schedule::parse(&regression.schedule).unwrap();
        let options = RunOptions { record_trace: true, ..RunOptions::default() };
        let run = execute_run(&prepared, &mut Replay::new(&schedule), options).unwrap();
        let violations = cusim_sim::judge::judge(&prepared.scenario, &run.observation);
        // The same invariant, broken by the same race (matched by its
        // interleaving), or by none of the catalog's when the file names none.
        let expected = Symptom { invariant: regression.invariant, race: regression.race };
        let shown: Vec<Symptom> = violations.iter().map(|v| Symptom::of(&run.trace, v)).collect();
        assert!(
            shown.contains(&expected),
            "{name} no longer shows {expected}: {:?}",
            shown.iter().map(Symptom::to_string).collect::<Vec<_>>()
        );
        let text = format!(
            "{} under {}, schedule '{}'\n{}",
            regression.scenario.name,
            regression.strategy,
            regression.schedule,
            trace::render(&run.trace)
        );
        insta::assert_snapshot!(name.clone(), text);
    }
}

#[test]
fn safe_holds_on_every_specimen() {
    for (name, regression) in corpus() {
        let prepared = Prepared::new(&regression.scenario, Strategy::Safe).unwrap();
        let schedule = Schedule::parse(&regression.schedule).unwrap();
        let run = execute_run(&prepared, &mut Lenient::new(&schedule), RunOptions::default()).unwrap();
        let violations = cusim_sim::judge::judge(&prepared.scenario, &run.observation);
        assert!(
            violations.is_empty(),
            "{name}: {:?}",
            violations.iter().map(|v| &v.message).collect::<Vec<_>>()
        );
    }
}
