//! Read-only SPI look-ups. pgrx's `Spi::get_one` runs every query as an
//! update, which assigns a transaction id: on a standby that is an error, and
//! in the worker's idle loop it would write a commit record every poll.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The first column of the first row, or `None` (no row, NULL or error).
pub fn select_one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    Spi::connect(|client| client.select(query, Some(1), args).ok()?.first().get_one::<T>().ok()?)
}

/// The first two columns of the first row.
pub fn select_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid],
) -> Option<(Option<A>, Option<B>)> {
    Spi::connect(|client| client.select(query, Some(1), args).ok()?.first().get_two::<A, B>().ok())
}
