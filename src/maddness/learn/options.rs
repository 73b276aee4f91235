//! The named choices of [`TrainConfig`](super::TrainConfig): which learner, which grouping of
//! the window dimensions, what the output-aware learner starts from.
//!
//! Each variant has one lowercase name, written once (in the `named_options!` macro below): it is the
//! command-line value (`clap::ValueEnum`, with the `cli` feature), the serde name, the
//! [`Display`](std::fmt::Display) text, what [`FromStr`](std::str::FromStr) reads (the
//! command line's and the examples' string arguments) and what the table metadata records
//! ([`TrainConfig::describe`](super::TrainConfig::describe)).

use crate::error::{Error, Result};

/// Defines an option enum whose variants are each named by one string literal, and derives
/// from it the serde and clap names, `ALL`, `name`, `Display` and `FromStr`.
macro_rules! named_options {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
        pub enum $ty {
            $(
                $(#[$vmeta])*
                #[serde(rename = $name)]
                #[cfg_attr(feature = "cli", value(name = $name))]
                $variant,
            )+
        }

        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name used on the command line, by serde and in the table metadata.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<$ty> {
                parse_name($what, s, $ty::ALL, |v| v.name())
            }
        }
    };
}

/// The variant of `all` named `s`, or an error naming `what` and every name.
fn parse_name<T: Copy>(what: &str, s: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T> {
    if let Some(&v) = all.iter().find(|&&v| name(v) == s) {
        return Ok(v);
    }
    let names: Vec<&str> = all.iter().map(|&v| name(v)).collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(Error::Argument(format!(
        "{what} {s:?}; expected {expected}"
    )))
}

named_options! {
    /// The tree learner of [`train`](super::train).
    #[derive(Default)]
    pub enum Learner ("learner") {
        /// Faithful MADDNESS (DESIGN.md §3): trees on the input sub-vectors of contiguous
        /// codebook ranges, bucket-mean prototypes refined by ridge regression.
        Maddness = "maddness",
        /// Output-aware boosted trees: each tree grown on the
        /// residual of the layer's output left by the previous ones, then one ridge refit of
        /// all tables in output space towards the boosted leaf values.
        #[default]
        Output = "output",
        /// Tied per-pixel encoding: trees on the pixels' channel vectors shared by every tap
        /// of the window, one table per tap (`C` rounded to a multiple of the kernel area),
        /// tables refit as MADDNESS's.
        Tied = "tied",
    }
}

named_options! {
    /// How the window dimensions are shared among the codebooks (see the module `grouping`).
    /// No default of its own: [`TrainConfig::grouping`](super::TrainConfig::grouping) picks the
    /// learner's.
    pub enum Grouping ("grouping") {
        /// `C` contiguous ranges (MADDNESS).
        Contiguous = "contiguous",
        /// Whole input channels (or contiguous pieces of one channel's window).
        Channels = "channels",
        /// Greedy clusters of correlated dimensions.
        Correlation = "correlation",
        /// Any dimension for every codebook (output-aware learner only).
        Free = "free",
    }
}

named_options! {
    /// What the output-aware learner starts from.
    #[derive(Default)]
    pub enum Start ("start") {
        /// No trees: grow every codebook forward on the residual of the previous ones
        /// (boosting), then backfit.
        Empty = "empty",
        /// MADDNESS's trees and ridge tables (over the grouping, or contiguous ranges for free
        /// trees), then backfit on the output residual.
        Maddness = "maddness",
        /// Both, keeping the one whose trees fit the output residual of the tree rows better
        /// (twice the tree time). On the real layers of the project's data this picks the
        /// better held-out start in 7 of 8 cases measured (BENCHMARKS.md).
        #[default]
        Best = "best",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One name per variant, the same for `name`, `Display`, `FromStr`, serde and clap.
    fn names_agree<T>(all: &[T], name: fn(&T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
        T: serde::Serialize + serde::de::DeserializeOwned,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for v in all {
            let n = name(v);
            assert_eq!(v.to_string(), n);
            assert_eq!(n.parse::<T>().unwrap(), *v, "{n}");
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{n}\""));
            assert_eq!(serde_json::from_str::<T>(&format!("\"{n}\"")).unwrap(), *v);
            assert_eq!(n, n.to_lowercase());
        }
        assert!("no-such-name".parse::<T>().is_err());
    }

    #[test]
    fn names_come_from_one_place() {
        names_agree(Learner::ALL, |v| v.name());
        names_agree(Grouping::ALL, |v| v.name());
        names_agree(Start::ALL, |v| v.name());
        assert_eq!(Learner::default(), Learner::Output);
        assert_eq!(Start::default(), Start::Best);
        let e = "random".parse::<Grouping>().unwrap_err().to_string();
        assert!(
            e.contains("grouping \"random\"; expected contiguous, channels, correlation or free"),
            "{e}"
        );
    }

    #[cfg(feature = "cli")]
    #[test]
    fn clap_values_are_the_names() {
        use clap::ValueEnum;
        fn check<T: ValueEnum>(all: &[T], name: fn(&T) -> &'static str) {
            for v in all {
                assert_eq!(v.to_possible_value().unwrap().get_name(), name(v));
            }
        }
        check(Learner::ALL, |v| v.name());
        check(Grouping::ALL, |v| v.name());
        check(Start::ALL, |v| v.name());
    }
}
