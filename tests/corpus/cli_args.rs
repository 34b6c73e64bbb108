//! placeholder
use crate::{Case, Fixtures};
pub fn cases(_fx: &Fixtures) -> Vec<Case> {
    Vec::new()
}
