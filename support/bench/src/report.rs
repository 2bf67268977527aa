//! The markdown tables a store comparison prints.

use crate::side::Samples;
use crate::stats::{micros, percentile};

/// How the two sides and their ratio are named in the tables.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// The adapter side, e.g. `"RedisStore"`.
    pub adapter: &'a str,
    /// The direct side, e.g. `"redis crate, same commands"`.
    pub direct: &'a str,
    /// The heading of the ratio column, e.g. `"RedisStore / redis crate"`.
    pub ratio: &'a str,
}

/// Prints the two tables of a comparison ([`compare`](crate::compare)):
/// each side's median and p99 latency per operation, in microseconds with
/// `decimals` digits, then the adapter/direct ratios against `goal` (met
/// at the median when the ratio is at most `goal`).
pub fn print_comparison(
    labels: Labels<'_>,
    (a, d): (Samples, Samples),
    decimals: usize,
    goal: f64,
) {
    println!("| store | operation | median µs | p99 µs | samples |");
    println!("|---|---|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (op, mut av, mut dv) in [
        ("get", a.get, d.get),
        ("put (update, CAS)", a.put, d.put),
        ("create", a.create, d.create),
    ] {
        av.sort();
        dv.sort();
        for (who, v) in [(labels.adapter, &av), (labels.direct, &dv)] {
            println!(
                "| {who} | {op} | {:.*} | {:.*} | {} |",
                decimals,
                micros(percentile(v, 0.5)),
                decimals,
                micros(percentile(v, 0.99)),
                v.len()
            );
        }
        ratios.push((
            op,
            micros(percentile(&av, 0.5)) / micros(percentile(&dv, 0.5)),
            micros(percentile(&av, 0.99)) / micros(percentile(&dv, 0.99)),
        ));
    }
    println!();
    println!(
        "| {} | median ratio | p99 ratio | goal (median) |",
        labels.ratio
    );
    println!("|---|---:|---:|---|");
    for (op, median, p99) in ratios {
        let verdict = if median <= goal {
            format!("<= {goal:.2}: met")
        } else {
            format!(
                "<= {goal:.2}: **missed by {:.0}%**",
                (median - goal) / goal * 100.0
            )
        };
        println!("| {op} | {median:.3} | {p99:.3} | {verdict} |");
    }
    println!();
}
