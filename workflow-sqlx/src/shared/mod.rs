//! What both backends use: the statement of a list query ([`list`]), the regrouping of a write
//! batch into layers of multi-row statements ([`plan`]), and reading rows back into records
//! ([`rows`]).

pub(crate) mod list;
pub(crate) mod plan;
pub(crate) mod rows;
