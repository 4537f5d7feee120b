//! The engine's middle floor: read + validate, plan, apply. It turns an HR export into the
//! smallest set of NERM writes and carries them out; wiring (CLI, Lambdas) sits above it, the
//! mapping config, report and NERM client below.

pub mod apply;
pub mod check;
pub mod plan;
pub mod read;
pub mod run;
pub mod snapshot;

pub use apply::{Applier, Ids, ItemError, Target};
pub use plan::{EmployeePlan, FileIndex, Op, PlanKind, Planner, RowPlan, ThresholdError};
pub use read::{Employee, EmployeeReader, ReadContext, Rejection, index_file};
pub use run::{RunError, run};
pub use snapshot::Snapshot;
