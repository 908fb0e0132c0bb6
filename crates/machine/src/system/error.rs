//! Why a [`super::System`] could not be brought up.

use crate::machine::MachineError;
use crate::task::SpawnError;
use highpte_kernel::BootError;
use std::fmt;

/// Why a system could not be brought up.
#[derive(Debug)]
pub enum SystemError {
    /// The machine could not be built.
    Machine(MachineError),
    /// The kernel refused to boot.
    Boot(BootError),
    /// The boot task did not complete (a bug during boot).
    BootRun(String),
    /// A task could not be created.
    Spawn(SpawnError),
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemError::Machine(e) => write!(f, "machine: {e}"),
            SystemError::Boot(e) => write!(f, "boot: {e}"),
            SystemError::BootRun(e) => write!(f, "boot failed: {e}"),
            SystemError::Spawn(e) => write!(f, "spawn: {e}"),
        }
    }
}

impl std::error::Error for SystemError {}
