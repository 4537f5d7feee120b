//! What the benchmark runners share: the HR export generator and the result rows that
//! `nerm-bench report` renders. A library so that scenario 5's runner (`bench-e2e` in
//! `tests/lambdas`, which needs moto) writes the same rows from the same data without making
//! `nerm-bench` depend on moto or the AWS SDK.

pub mod generate;
pub mod util;
