//! The HTTP routes over the read models, one module per resource.

pub mod orders;
pub mod products;
