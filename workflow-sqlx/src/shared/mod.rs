//! What both backends use: the statement of a list query ([`list`]), the regrouping of a write
//! batch into layers of multi-row statements ([`plan`]), reading rows back into records ([`rows`]),
//! with the column lists those read, and the orders records are returned in ([`order`]).

pub(crate) mod list;
pub(crate) mod order;
pub(crate) mod plan;
pub(crate) mod rows;

/// `value` as a SQL integer: `i64::MAX` if it is larger.
pub(crate) fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
