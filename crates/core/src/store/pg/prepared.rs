//! Statements prepared once per connection. `Client::execute(&str, …)`
//! prepares its statement anew at every call: a round trip of its own
//! (Parse and Describe) before the one that runs it, and a parse, analysis
//! and plan on the server each time. keyrot's statements are the constants
//! of `sql.rs`, so each connection's thread keeps the ones it has prepared,
//! by their text, for as long as its connection lives; the server keeps
//! them per session (a protocol-level prepared statement is not undone by
//! a rollback) and re-plans one by itself when a table it reads changes.
//! The cache is emptied whenever the connection is made again
//! (`pool::Worker::client`); on any other thread nothing is kept and every
//! call prepares, as before.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};

thread_local! {
    /// The statements prepared on this thread's connection (a connection
    /// thread's; `None` on every other thread).
    static PREPARED: RefCell<Option<HashMap<&'static str, Statement>>> =
        const { RefCell::new(None) };
}

/// Forgets the statements of this thread's connection; `connected`: a new
/// connection was made, whose statements are kept from now on.
pub(super) fn reset(connected: bool) {
    PREPARED.set(connected.then(HashMap::new));
}

/// `sql` prepared on `c`, this thread's connection: once per connection.
fn prepared(c: &mut impl GenericClient, sql: &'static str) -> Result<Statement, postgres::Error> {
    if let Some(st) = PREPARED.with_borrow(|m| m.as_ref().and_then(|m| m.get(sql).cloned())) {
        return Ok(st);
    }
    let st = c.prepare(sql)?;
    PREPARED.with_borrow_mut(|m| {
        if let Some(m) = m {
            m.insert(sql, st.clone());
        }
    });
    Ok(st)
}

/// Runs `sql`; the rows it affected.
pub(super) fn execute(
    c: &mut impl GenericClient,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, postgres::Error> {
    let st = prepared(c, sql)?;
    c.execute(&st, params)
}

/// The rows of `sql`.
pub(super) fn query(
    c: &mut impl GenericClient,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, postgres::Error> {
    let st = prepared(c, sql)?;
    c.query(&st, params)
}

/// The row of `sql`, if any (an error for more than one).
pub(super) fn query_opt(
    c: &mut impl GenericClient,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, postgres::Error> {
    let st = prepared(c, sql)?;
    c.query_opt(&st, params)
}

/// The one row of `sql`.
pub(super) fn query_one(
    c: &mut impl GenericClient,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, postgres::Error> {
    let st = prepared(c, sql)?;
    c.query_one(&st, params)
}
