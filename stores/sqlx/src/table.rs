//! [`TableName`]: a validated, quoted SQL table name.

use std::fmt;
use std::str::FromStr;

/// The table the stores use unless told otherwise
/// ([`with_table_name`](crate::SqlStore::with_table_name)).
pub const DEFAULT_TABLE_NAME: &str = "kvsession";

/// The longest identifier PostgreSQL keeps (63 bytes); SQLite has no limit,
/// but the same rule holds for both stores.
const MAX_IDENTIFIER_LEN: usize = 63;

/// A table name that is safe to put into SQL: `table` or `schema.table`,
/// each part an ASCII letter or `_` followed by at most 62 ASCII letters,
/// digits or `_`.
///
/// Table names cannot be bound as statement parameters, so this is the only
/// text the stores ever put into SQL themselves; it is validated here and
/// written double-quoted. Quoted identifiers keep their case: `Sessions` and
/// `sessions` are two tables (PostgreSQL folds unquoted names to lower case,
/// so use lower case to reach the table from `psql` without quotes). With
/// SQLite, the schema is the name of an attached database (`main`, `temp`,
/// ...).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    /// Validates `name` (`table` or `schema.table`).
    pub fn new(name: &str) -> Result<Self, InvalidTableName> {
        let invalid = |reason| InvalidTableName {
            name: name.to_owned(),
            reason,
        };
        let mut parts = name.split('.');
        let first = parts.next().unwrap_or_default();
        let (schema, table) = match (parts.next(), parts.next()) {
            (None, _) => (None, first),
            (Some(table), None) => (Some(first), table),
            (Some(_), Some(_)) => return Err(invalid("more than one `.`")),
        };
        for part in schema.iter().chain([&table]) {
            check_identifier(part).map_err(invalid)?;
        }
        Ok(TableName {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The schema (SQLite: the attached database), if the name has one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table's own name, without the schema.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The name as SQL: `"table"` or `"schema"."table"`.
    pub(crate) fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.table),
            None => format!("\"{}\"", self.table),
        }
    }

    /// The table's own name as SQL, without the schema (SQLite's index
    /// statement names the schema on the index).
    #[cfg(feature = "sqlite")]
    pub(crate) fn quoted_table(&self) -> String {
        format!("\"{}\"", self.table)
    }

    /// The quoted schema followed by a dot, or nothing.
    #[cfg(feature = "sqlite")]
    pub(crate) fn quoted_schema_dot(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\"."),
            None => String::new(),
        }
    }

    /// The name of the index on the expiry column, quoted, without schema:
    /// `"{table}_expires_at_idx"`, cut to 63 bytes (what PostgreSQL keeps).
    pub(crate) fn quoted_expiry_index(&self) -> String {
        let mut name = format!("{}_expires_at_idx", self.table);
        // ASCII only (validated), so any byte length is a char boundary.
        name.truncate(MAX_IDENTIFIER_LEN);
        format!("\"{name}\"")
    }
}

fn check_identifier(part: &str) -> Result<(), &'static str> {
    let mut bytes = part.bytes();
    match bytes.next() {
        None => return Err("an empty name part"),
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        Some(_) => return Err("a name part must start with an ASCII letter or `_`"),
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("only ASCII letters, digits and `_` are allowed");
    }
    if part.len() > MAX_IDENTIFIER_LEN {
        return Err("a name part is longer than 63 bytes");
    }
    Ok(())
}

impl Default for TableName {
    /// [`DEFAULT_TABLE_NAME`].
    fn default() -> Self {
        TableName {
            schema: None,
            table: DEFAULT_TABLE_NAME.to_owned(),
        }
    }
}

impl FromStr for TableName {
    type Err = InvalidTableName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TableName::new(name)
    }
}

impl TryFrom<&str> for TableName {
    type Error = InvalidTableName;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        TableName::new(name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({self})")
    }
}

/// A table name was refused by [`TableName::new`] (and so by
/// `with_table_name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table name {name:?}: {reason}")]
pub struct InvalidTableName {
    name: String,
    reason: &'static str,
}

impl InvalidTableName {
    /// The refused name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why it was refused.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_schema_qualified_names() {
        let t = TableName::new("sessions").unwrap();
        assert_eq!((t.schema(), t.table()), (None, "sessions"));
        assert_eq!(t.quoted(), "\"sessions\"");
        let t = TableName::new("app_1.Sessions_2").unwrap();
        assert_eq!((t.schema(), t.table()), (Some("app_1"), "Sessions_2"));
        assert_eq!(t.quoted(), "\"app_1\".\"Sessions_2\"");
        assert_eq!(t.to_string(), "app_1.Sessions_2");
        assert!(TableName::new(&"a".repeat(63)).is_ok());
        assert!(TableName::new("_x").is_ok());
    }

    #[test]
    fn refuses_anything_that_could_escape_the_quotes() {
        for name in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "1abc",
            "a b",
            "a\"b",
            "a\";DROP TABLE x;--",
            "a'b",
            "a-b",
            "a;b",
            "sessions\0",
            "séssions",
            "a\\b",
        ] {
            let err = TableName::new(name).expect_err(name);
            assert_eq!(err.name(), name);
        }
        assert!(TableName::new(&"a".repeat(64)).is_err());
    }

    #[test]
    fn index_name_fits_postgres() {
        let t = TableName::new(&"t".repeat(63)).unwrap();
        let index = t.quoted_expiry_index();
        assert_eq!(index.len(), 63 + 2);
        assert_eq!(
            TableName::new("s.sessions").unwrap().quoted_expiry_index(),
            "\"sessions_expires_at_idx\""
        );
    }
}
