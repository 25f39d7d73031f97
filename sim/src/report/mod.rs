//! What people read: a run's trace as text (and its hash), as one HTML
//! page, and `cusim explain`.

pub mod explain;
pub mod html;
pub mod text;
