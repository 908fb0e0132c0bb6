//! The pieces of `highpte bench`: host measurements, simulated workloads, tables and plots.

pub mod native;
pub mod plots;
pub mod sim;
pub mod table;
