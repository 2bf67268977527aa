//! Command-line handling and the `main` of a bench target.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// A command-line error: the bench target prints it with its usage and
/// exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// A flag was given without its value.
    #[error("{flag} needs a value")]
    MissingValue {
        /// The flag.
        flag: String,
    },
    /// A flag's value is not a number in range.
    #[error("{flag} needs a number >= {min}, got {value:?}")]
    Number {
        /// The flag.
        flag: String,
        /// The smallest value allowed.
        min: u64,
        /// What was given.
        value: String,
    },
    /// An argument the target does not know.
    #[error("unknown argument {0:?}")]
    Unknown(String),
    /// A required flag is missing.
    #[error("{0} is required")]
    Required(&'static str),
}

/// The arguments of a bench target, without cargo's `--bench`.
///
/// ```
/// use rocket_kvsession_bench::{ArgError, Args};
///
/// fn samples(mut args: Args) -> Result<u64, ArgError> {
///     let mut samples = 1000;
///     while let Some(arg) = args.next_arg() {
///         match arg.as_str() {
///             "--samples" => samples = args.number("--samples", 100)?,
///             _ => return Err(ArgError::Unknown(arg)),
///         }
///     }
///     Ok(samples)
/// }
///
/// let args = Args::from_iter("demo", ["--bench", "--samples", "500"]);
/// assert!(args.is_bench());
/// assert_eq!(samples(args).unwrap(), 500);
/// assert!(samples(Args::from_iter("demo", ["--samples", "5"])).is_err());
/// ```
#[derive(Debug)]
pub struct Args {
    name: &'static str,
    bench: bool,
    rest: std::vec::IntoIter<String>,
}

impl Args {
    /// The arguments of this process; `name` is the target's name, for
    /// messages.
    pub fn from_env(name: &'static str) -> Self {
        Self::from_iter(name, std::env::args().skip(1))
    }

    /// The arguments of this process when it was run with `--bench`, as
    /// `cargo bench` runs it. Otherwise (`cargo test --all-targets` runs
    /// bench targets without it) `None`, after saying on stderr that the
    /// benchmark was skipped.
    pub fn bench(name: &'static str) -> Option<Self> {
        let args = Self::from_env(name);
        if args.bench {
            Some(args)
        } else {
            eprintln!("{name}: benchmark skipped (run it with `cargo bench --bench {name}`)");
            None
        }
    }

    /// `args` (without the program name) as the arguments of target `name`.
    pub fn from_iter<I>(name: &'static str, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut bench = false;
        let rest: Vec<String> = args
            .into_iter()
            .map(Into::into)
            .filter(|a| {
                let is_bench = a == "--bench";
                bench |= is_bench;
                !is_bench
            })
            .collect();
        Args {
            name,
            bench,
            rest: rest.into_iter(),
        }
    }

    /// The target's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether `--bench` was given.
    pub fn is_bench(&self) -> bool {
        self.bench
    }

    /// Removes `word` from the arguments not read yet; whether it was there.
    pub fn take_word(&mut self, word: &str) -> bool {
        let rest: Vec<String> = std::mem::take(&mut self.rest).collect();
        let found = rest.iter().any(|a| a == word);
        self.rest = rest
            .into_iter()
            .filter(|a| a != word)
            .collect::<Vec<_>>()
            .into_iter();
        found
    }

    /// The next argument.
    pub fn next_arg(&mut self) -> Option<String> {
        self.rest.next()
    }

    /// The value of `flag`: the next argument.
    pub fn value(&mut self, flag: &str) -> Result<String, ArgError> {
        self.rest.next().ok_or_else(|| ArgError::MissingValue {
            flag: flag.to_string(),
        })
    }

    /// The value of `flag` as a number of at least `min`.
    pub fn number(&mut self, flag: &str, min: u64) -> Result<u64, ArgError> {
        let value = self.value(flag)?;
        match value.parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ArgError::Number {
                flag: flag.to_string(),
                min,
                value,
            }),
        }
    }

    /// Prints `error` and `usage` on stderr; exit status 2.
    pub fn usage_error(&self, error: &ArgError, usage: &str) -> ExitCode {
        eprintln!("{}: {error}\n{}: usage: {usage}", self.name, self.name);
        ExitCode::from(2)
    }
}

/// The runtime a bench target runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// A current-thread runtime: one thread, no hand-offs.
    CurrentThread,
    /// A multi-thread runtime with this many workers (`None`: one per core).
    MultiThread(Option<usize>),
}

/// Runs `future` on a new `runtime` and turns its outcome into the exit
/// status, printing an error on stderr prefixed by `name`.
pub fn block_on<F, E>(name: &str, runtime: Runtime, future: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    let built = match runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Runtime::MultiThread(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers);
            }
            builder.enable_all().build()
        }
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_flag_and_words_are_taken_out() {
        let mut args = Args::from_iter("t", ["serve", "--bench", "--port-file", "f"]);
        assert!(args.is_bench());
        assert!(args.take_word("serve"));
        assert!(!args.take_word("serve"));
        assert_eq!(args.next_arg().as_deref(), Some("--port-file"));
        assert_eq!(args.value("--port-file").unwrap(), "f");
        assert!(matches!(
            args.value("--workers"),
            Err(ArgError::MissingValue { .. })
        ));
    }

    #[test]
    fn numbers_are_checked_against_their_minimum() {
        let mut args = Args::from_iter("t", ["0", "x", "7"]);
        assert!(matches!(
            args.number("--n", 1),
            Err(ArgError::Number { .. })
        ));
        assert!(matches!(
            args.number("--n", 1),
            Err(ArgError::Number { .. })
        ));
        assert_eq!(args.number("--n", 1).unwrap(), 7);
        assert!(!Args::from_iter("t", ["--n"]).is_bench());
    }

    #[test]
    fn block_on_maps_the_outcome_to_the_exit_status() {
        let ok = block_on("t", Runtime::CurrentThread, async { Ok::<(), String>(()) });
        assert_eq!(ok, ExitCode::SUCCESS);
        let failed = block_on("t", Runtime::MultiThread(Some(1)), async { Err("boom") });
        assert_eq!(failed, ExitCode::FAILURE);
    }
}
