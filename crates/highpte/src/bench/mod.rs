//! The pieces of `highpte bench`: host measurements, simulated workloads, and tables (plots are in `crate::plot`).

pub mod native;
pub mod replay;
pub mod sim;
pub mod table;
