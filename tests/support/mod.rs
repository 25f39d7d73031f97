//! Runs requests one at a time on a fresh in-memory world.
#![allow(dead_code)]

use std::collections::BTreeMap;

use cusim::backend::mem::{run_alone, FaultAction, Finished, MemConn, RequestId, World};
use cusim::backend::Constraints;
use cusim::backend::Point;
use cusim::flow::{execute, Request, Response, Strategy};
use cusim::model::{ApiError, Catalog, CustomerData, FullCustomer, Product, ProductKind};

pub struct Sim {
    pub world: World,
    pub strategy: Strategy,
    next_request: RequestId,
}

impl Sim {
    pub fn new(strategy: Strategy, catalog: Catalog) -> Sim {
        Sim { world: World::new(catalog, strategy.constraints(), 42), strategy, next_request: 0 }
    }

    pub fn with_constraints(strategy: Strategy, catalog: Catalog, constraints: Constraints) -> Sim {
        Sim { world: World::new(catalog, constraints, 42), strategy, next_request: 0 }
    }

    /// Runs `request` to its end; no fault.
    pub fn run(&mut self, request: &Request) -> Result<Response, ApiError> {
        match self.run_with(request, |_| None) {
            Finished::Done(result) => result,
            Finished::Crashed { at } => panic!("crashed at {at} without a fault"),
        }
    }

    /// Runs `request`, asking `fault_at` before each named point.
    pub fn run_with(
        &mut self,
        request: &Request,
        fault_at: impl FnMut(Point) -> Option<FaultAction>,
    ) -> Finished<Result<Response, ApiError>> {
        let id = self.next_request;
        self.next_request += 1;
        let conn = MemConn::new(&self.world);
        let strategy = self.strategy;
        run_alone(&mut self.world, id, &conn, execute(&conn, strategy, request), fault_at)
    }

    /// Runs `request`, crashing it the first time it reaches `point`.
    pub fn run_crashing_at(
        &mut self,
        request: &Request,
        point: Point,
    ) -> Finished<Result<Response, ApiError>> {
        self.run_with(request, |p| (p == point).then_some(FaultAction::Crash))
    }

    pub fn customer(&mut self, request: &Request) -> FullCustomer {
        self.run(request).unwrap_or_else(|e| panic!("{} failed: {e}", request.op_name())).customer().clone()
    }

    /// Committed rows with this external id.
    pub fn rows_with_id(&self, id: &str) -> usize {
        self.world.committed_customers().iter().filter(|r| r.id.as_deref() == Some(id)).count()
    }
}

pub fn product(id: &str, group: &str, kind: ProductKind, features: &[(&str, i64)]) -> Product {
    Product {
        id: id.to_owned(),
        group: group.to_owned(),
        is_default: true,
        kind,
        features: features.iter().map(|(f, n)| (f.to_string(), *n)).collect::<BTreeMap<_, _>>(),
    }
}

pub fn free_catalog() -> Catalog {
    Catalog::new(vec![product("free", "main", ProductKind::Free, &[("words", 1000)])], false)
}

pub fn data(name: Option<&str>, email: Option<&str>) -> CustomerData {
    CustomerData { name: name.map(str::to_owned), email: email.map(str::to_owned), ..CustomerData::default() }
}

pub fn create(id: Option<&str>, name: Option<&str>, email: Option<&str>) -> Request {
    Request::create(id, data(name, email))
}

/// Product ids and groups attached, sorted.
pub fn attached(customer: &FullCustomer) -> Vec<(String, String)> {
    let mut out: Vec<_> = customer.products.iter().map(|p| (p.group.clone(), p.product_id.clone())).collect();
    out.sort();
    out
}

/// Runs `body` once per strategy, naming the strategy on failure.
pub fn for_each_strategy(mut body: impl FnMut(Strategy)) {
    for strategy in Strategy::ALL {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(strategy)));
        if let Err(panic) = result {
            eprintln!("failed under strategy `{strategy}`");
            std::panic::resume_unwind(panic);
        }
    }
}
