//! The domain: ids and their validation, customers, the catalog and
//! default selection, and the API error type. No I/O here.

pub mod catalog;
pub mod customer;
pub mod error;
pub mod generation;
pub mod id;

pub use catalog::{select_defaults, Catalog, Product, ProductKind};
pub use customer::{
    is_blank, Balance, CustomerData, CustomerProduct, CustomerRow, DefaultScope, Env, FullCustomer, Metadata,
    ProductStatus, Scope,
};
pub use error::{validation_error, ApiError, ErrorCode, FieldError};
pub use generation::{ApiVersion, FailedKey, Family, Generation, Route};
pub use id::{validate_customer_id, CustomerId, IdError};
