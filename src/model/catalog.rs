//! The product catalog (read-only during a run) and default selection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a product is billed; decides default priority and whether attaching
/// it needs a Stripe customer first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    Free,
    Paid,
    Trial,
}

impl ProductKind {
    /// Default priority within a group: trial > paid > free.
    pub fn default_rank(self) -> u8 {
        match self {
            ProductKind::Trial => 0,
            ProductKind::Paid => 1,
            ProductKind::Free => 2,
        }
    }

    /// Paid and trial products are billed through Stripe: attaching one
    /// needs the customer's Stripe customer first.
    pub fn needs_stripe(self) -> bool {
        !matches!(self, ProductKind::Free)
    }

    pub fn attach_status(self) -> super::customer::ProductStatus {
        match self {
            ProductKind::Trial => super::customer::ProductStatus::Trialing,
            ProductKind::Free | ProductKind::Paid => super::customer::ProductStatus::Active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub group: String,
    #[serde(default)]
    pub is_default: bool,
    pub kind: ProductKind,
    /// Included usage per feature.
    #[serde(default)]
    pub features: BTreeMap<String, i64>,
}

/// The products of one `(org, env)`, plus the switch that lets paid
/// products count as defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub products: Vec<Product>,
    pub force_paid_default: bool,
}

impl Catalog {
    pub fn new(products: Vec<Product>, force_paid_default: bool) -> Catalog {
        Catalog { products, force_paid_default }
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    /// Products that may be chosen as a default: `is_default`, and for
    /// `paid` only when `force_paid_default` is set.
    pub fn default_candidates(&self) -> impl Iterator<Item = &Product> {
        self.products
            .iter()
            .filter(|p| p.is_default && (p.kind != ProductKind::Paid || self.force_paid_default))
    }
}

/// SPEC §3's default selection: per group, the candidate of best rank
/// (trial > paid > free), ties broken by product id ascending; limited to
/// `only_group` when given. Returned in group order.
///
/// The modelled server's comparator is not a total order; this one is, so
/// the choice never depends on catalog order.
pub fn select_defaults<'a>(
    candidates: impl IntoIterator<Item = &'a Product>,
    only_group: Option<&str>,
) -> Vec<&'a Product> {
    let mut best: BTreeMap<&str, &Product> = BTreeMap::new();
    for product in candidates {
        if only_group.is_some_and(|g| g != product.group) {
            continue;
        }
        let key = |p: &Product| (p.kind.default_rank(), p.id.clone());
        best.entry(product.group.as_str())
            .and_modify(|current| {
                if key(product) < key(current) {
                    *current = product;
                }
            })
            .or_insert(product);
    }
    best.into_values().collect()
}
