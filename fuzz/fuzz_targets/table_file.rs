//! Fuzzes the table-file loader: any bytes must give tables that pass validation or an error,
//! never a panic, an abort or an out-of-memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maddconv::maddness::Tables;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tables::from_bytes(data, "fuzz") {
        // Whatever loads is consistent, and serialises back to bytes that load the same.
        t.validate().expect("loaded tables validate");
        let again = t.to_bytes().expect("loaded tables serialise");
        assert_eq!(Tables::from_bytes(&again, "again").expect("round trip"), t);
    }
});
