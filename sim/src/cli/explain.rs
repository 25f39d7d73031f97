//! `cusim explain`: invariants and races in words.

use std::process::ExitCode;

use cusim_sim::judge::races::Race;
use cusim_sim::judge::Invariant;
use cusim_sim::report::explain;

use crate::Usage;

pub(crate) fn run_explain(name: Option<&str>, json: bool) -> Result<ExitCode, Usage> {
    let Some(name) = name else {
        if json {
            let all: Vec<explain::Explanation> = Invariant::ALL
                .into_iter()
                .map(explain::Topic::Invariant)
                .chain(Race::ALL.into_iter().map(explain::Topic::Race))
                .map(explain::explain)
                .collect();
            println!("{}", serde_json::to_string_pretty(&all).expect("serializes"));
        } else {
            print!("{}", explain::list());
        }
        return Ok(ExitCode::SUCCESS);
    };
    if name.trim().is_empty() {
        return Err(Usage(
            "explain: the name is empty; `cusim explain` lists every invariant and race".into(),
        ));
    }
    let topic = explain::topic(name).ok_or_else(|| {
        let invariants: Vec<&str> = Invariant::ALL.iter().map(|i| i.as_str()).collect();
        Usage(format!(
            "explain {name}: not an invariant or a race; invariants: {}; races: R1 … R9",
            invariants.join(", ")
        ))
    })?;
    let explanation = explain::explain(topic);
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation).expect("serializes"));
    } else {
        print!("{}", explain::render(&explanation));
    }
    Ok(ExitCode::SUCCESS)
}
