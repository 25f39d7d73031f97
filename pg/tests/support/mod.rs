//! What the Postgres tests share: the database URL, and customers and
//! answers in a form two backends can be compared in (internal ids
//! replaced by creation order).
#![allow(dead_code)]

use std::collections::BTreeMap;

use cusim::flow::Response;
use cusim::model::{ApiError, ErrorCode, FullCustomer};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a Postgres server (`cargo xtask test` starts a throwaway one)")
}

/// A customer with its internal id replaced by its creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    ordinal: usize,
    org: String,
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    products: Vec<(String, String, String)>,
    has_stripe: bool,
    balances: Vec<(String, i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Customer(Seen, Option<bool>),
    Error(ErrorCode, String),
}

pub fn seen(full: &FullCustomer, ordinals: &BTreeMap<String, usize>) -> Seen {
    Seen {
        ordinal: ordinals[&full.customer.internal_id],
        org: full.customer.org_id.clone(),
        id: full.customer.id.clone(),
        name: full.customer.name.clone(),
        email: full.customer.email.clone(),
        products: full
            .products
            .iter()
            .map(|p| (p.group.clone(), p.product_id.clone(), format!("{:?}", p.status)))
            .collect(),
        has_stripe: full.customer.processor.is_some(),
        balances: full.balances.iter().map(|(f, b)| (f.clone(), b.granted, b.usage)).collect(),
    }
}

pub fn answer(result: &Result<Response, ApiError>, ordinals: &BTreeMap<String, usize>) -> Answer {
    match result {
        Ok(response) => {
            let allowed = match response {
                Response::Check(check) => Some(check.allowed),
                _ => None,
            };
            Answer::Customer(seen(response.customer(), ordinals), allowed)
        }
        Err(error) => Answer::Error(error.code, error.message.clone()),
    }
}

pub fn ordinals(customers: &[FullCustomer]) -> BTreeMap<String, usize> {
    customers.iter().enumerate().map(|(i, c)| (c.customer.internal_id.clone(), i)).collect()
}
