//! The one clock of the library: [`Instant`] is `std::time::Instant` natively and
//! `web_time::Instant` (the browser's `performance.now()`) on wasm32-unknown-unknown, where
//! std's panics. The benchmarks and the learner's stage timings both read it.

#[cfg(not(target_arch = "wasm32"))]
pub use std::time::Instant;
#[cfg(target_arch = "wasm32")]
pub use web_time::Instant;
