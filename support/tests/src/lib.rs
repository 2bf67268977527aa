//! The integration tests of `rocket_kvsession` (in `tests/`), in a package
//! of their own so that the published core's dev-dependencies hold only what
//! its unit tests and examples need. Not published; nothing here.
