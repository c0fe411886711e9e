//! Arbitrary bytes, raw and gzip-wrapped, into the IDX reader: never a panic,
//! never an allocation beyond what the input holds; `Ok` or a clean `Err`.
#![no_main]

use std::io::Write;

use densekit::data::idx::{IMAGES_MAGIC, LABELS_MAGIC, parse_idx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for magic in [LABELS_MAGIC, IMAGES_MAGIC] {
        if let Ok(idx) = parse_idx(data, magic) {
            assert_eq!(idx.dims.iter().product::<usize>(), idx.data.len());
            // Raw input: the data is part of the input. Gzip input: at most
            // deflate's maximum expansion (1032:1) of it.
            let gzip = data.starts_with(&[0x1f, 0x8b]);
            assert!(idx.data.len() <= if gzip { data.len() * 1032 } else { data.len() });
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        let gz = gz.finish().unwrap();
        if let Ok(idx) = parse_idx(&gz[..], magic) {
            assert_eq!(idx.dims.iter().product::<usize>(), idx.data.len());
        }
    }
});
