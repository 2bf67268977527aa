//! The benchmark harness of the `rocket_kvsession` workspace: not published,
//! not part of any public API.
//!
//! * [`Side`], [`Samples`], [`sample`], [`measure`] and [`compare`]: timed
//!   store round trips (`put`, `get`, `create`) on one side or on two sides
//!   in alternating order, and [`StoreSide`], a [`Side`] over any
//!   [`KeyValueStore`](rocket_kvsession::KeyValueStore).
//! * [`record`], [`percentile`], [`micros`]: test data and statistics;
//!   [`print_comparison`]: the markdown tables of a comparison.
//! * [`Args`] and [`block_on`]: command-line handling and the `main` of a
//!   bench target (`harness = false`).
//! * [`sweep_files`]: directories of session files, for the sweep benchmark
//!   and the sweep tests of the object_store store.
//! * [`encode_record`], [`decode_record`], [`DecodedRecord`], [`generate_id`],
//!   [`parse_id`], [`CookieSealer`]: the core's own record encoding, ids and
//!   cookie cipher, through its hidden `__bench` module.
//!
//! Bench targets do nothing unless run with `--bench` (as `cargo bench`
//! does), so `cargo test --all-targets` only checks that they start.

#![forbid(unsafe_code)]

mod args;
mod report;
mod side;
mod stats;
pub mod sweep_files;

pub use args::{block_on, ArgError, Args, Runtime};
pub use report::{print_comparison, Labels};
pub use rocket_kvsession::__bench::{
    decode_record, encode_record, generate_id, parse_id, CookieSealer, DecodedRecord,
};
pub use side::{chain, compare, measure, sample, Samples, Side, StoreSide};
pub use stats::{micros, percentile, record};
