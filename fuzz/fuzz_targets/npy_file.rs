//! Fuzzes the `.npy` reader: any bytes must give a tensor or an error, never a panic, an abort
//! or an out-of-memory (a header may claim any shape; the data must be there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use maddconv::Tensor;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tensor::from_npy_bytes(data, "fuzz") {
        let count: usize = t.shape().iter().product();
        assert_eq!(
            count,
            t.len(),
            "shape {:?} but {} values",
            t.shape(),
            t.len()
        );
        // What was read writes back and reads again the same, bit for bit (NaNs included).
        let again = Tensor::from_npy_bytes(&t.to_npy_bytes(), "again").expect("round trip");
        assert_eq!(again.shape(), t.shape());
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&again), bits(&t));
    }
});
