//! Arbitrary bytes into the model loader: never a panic; tensors are copied
//! byte-wise, so unaligned data is fine.
#![no_main]

use densekit::mlp::Mlp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(net) = Mlp::from_safetensors(data) {
        assert!(net.sizes().len() >= 2);
        assert!(net.params().iter().count() > 0);
    }
});
