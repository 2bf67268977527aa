//! [`MigratingStore`]: moving sessions to another store (being written).

/// A store over two stores (being written).
#[derive(Debug)]
pub struct MigratingStore;
