//! The HTTP resources of the simulator.

pub mod charges;
pub mod refunds;
