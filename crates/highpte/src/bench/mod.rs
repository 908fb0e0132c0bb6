//! The pieces of `highpte bench`: host measurements, the replay measurement and tables (the simulated loops are `highpte_workload::microbench`; plots are in `crate::plot`).

pub mod boot;
pub mod designs;
pub mod host_vs_sim;
pub mod native;
pub mod replay;
pub mod table;
