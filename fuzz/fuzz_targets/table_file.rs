//! Fuzzes the table-file loader: any bytes must give tables that pass validation or an error,
//! never a panic, an abort or an out-of-memory.
//!
//! Most mutations of a file with a checksum are refused by the checksum before the loader's
//! later checks run, so each input is loaded twice: as it is, and with the checksum it carries
//! (`sha256:` and 64 hex digits in the header) overwritten in place by the checksum of its
//! contents, which leaves every other byte as the fuzzer made it and reaches every check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maddconv::maddness::file::content_checksum;
use maddconv::maddness::Tables;

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(sum) = content_checksum(data) {
        if let Some(at) = data.windows(7).position(|w| w == b"sha256:") {
            if at + sum.len() <= data.len() && data[at..at + sum.len()] != *sum.as_bytes() {
                let mut resealed = data.to_vec();
                resealed[at..at + sum.len()].copy_from_slice(sum.as_bytes());
                check(&resealed);
            }
        }
    }
});

fn check(data: &[u8]) {
    if let Ok(t) = Tables::from_bytes(data, "fuzz") {
        // Whatever loads is consistent, and serialises back to bytes that load the same.
        t.validate().expect("loaded tables validate");
        let again = t.to_bytes().expect("loaded tables serialise");
        assert_eq!(Tables::from_bytes(&again, "again").expect("round trip"), t);
    }
}
