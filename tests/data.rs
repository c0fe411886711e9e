//! The IDX reader on crafted files: every failure is a clean `Err` naming the problem.

use std::io::Write;

use densekit::data::idx::{DataErrorKind, IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_idx};
use densekit::data::{Dataset, MNIST_FILES, load_mnist, strip_order};

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn raw_and_gzip_parse_the_same() {
    let mut bytes = header(IMAGES_MAGIC, &[2, 2, 3]);
    bytes.extend(0..12u8);
    let raw = parse_idx(&bytes[..], IMAGES_MAGIC).unwrap();
    let gz = parse_idx(&gzip(&bytes)[..], IMAGES_MAGIC).unwrap();
    assert_eq!(raw, gz);
    assert_eq!(raw.dims, [2, 2, 3]);
    assert_eq!(raw.data, (0..12).collect::<Vec<u8>>());
}

#[test]
fn wrong_magic_is_named() {
    let bytes = header(LABELS_MAGIC, &[0]);
    match parse_idx(&bytes[..], IMAGES_MAGIC) {
        Err(DataErrorKind::BadMagic { expected, found }) => {
            assert_eq!((expected, found), (IMAGES_MAGIC, LABELS_MAGIC))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_header_and_data_are_reported() {
    assert!(matches!(
        parse_idx(&[0u8, 0, 8][..], LABELS_MAGIC),
        Err(DataErrorKind::Truncated { .. })
    ));
    let mut bytes = header(IMAGES_MAGIC, &[2, 28]);
    assert!(matches!(
        parse_idx(&bytes[..], IMAGES_MAGIC),
        Err(DataErrorKind::Truncated { .. })
    ));
    bytes = header(LABELS_MAGIC, &[5]);
    bytes.extend([1, 2, 3]);
    match parse_idx(&bytes[..], LABELS_MAGIC) {
        Err(DataErrorKind::Truncated { expected, found }) => {
            assert_eq!((expected, found), (13, 11))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn trailing_bytes_are_reported() {
    let mut bytes = header(LABELS_MAGIC, &[2]);
    bytes.extend([1, 2, 3]);
    assert!(matches!(
        parse_idx(&bytes[..], LABELS_MAGIC),
        Err(DataErrorKind::TrailingBytes { expected: 10 })
    ));
}

/// A header claiming ~4 billion 65535×65535 images must fail on the missing
/// data, not try to allocate what it claims.
#[test]
fn absurd_header_does_not_allocate_its_claim() {
    let bytes = header(IMAGES_MAGIC, &[u32::MAX, 65535, 65535]);
    let result = parse_idx(&bytes[..], IMAGES_MAGIC);
    assert!(
        matches!(
            result,
            Err(DataErrorKind::Truncated { .. } | DataErrorKind::Overflow)
        ),
        "{result:?}"
    );
    let bytes = header(IMAGES_MAGIC, &[4_000_000_000, 28, 28]);
    assert!(matches!(
        parse_idx(&gzip(&bytes)[..], IMAGES_MAGIC),
        Err(DataErrorKind::Truncated { .. })
    ));
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut bytes = gzip(&header(LABELS_MAGIC, &[3]));
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    bytes.truncate(n - 3);
    assert!(parse_idx(&bytes[..], LABELS_MAGIC).is_err());
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("densekit-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken-labels");
    std::fs::write(&path, header(IMAGES_MAGIC, &[1, 1, 1])).unwrap();
    let err = read_idx(&path, LABELS_MAGIC).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("broken-labels") && msg.contains("magic"),
        "{msg}"
    );
    let missing = load_mnist(&dir).unwrap_err().to_string();
    assert!(
        missing.contains(MNIST_FILES[0])
            && missing.contains("not found")
            && missing.contains("--data-dir"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A data set in MNIST's layout (any content) loads; counts and labels are checked.
#[test]
fn mnist_layout_loads_and_is_validated() {
    let dir = std::env::temp_dir().join(format!("densekit-mnist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let images = |n: u32| {
        let mut b = header(IMAGES_MAGIC, &[n, 2, 2]);
        b.extend((0..4 * n).map(|i| (i * 37 % 256) as u8));
        b
    };
    let labels = |values: &[u8]| {
        let mut b = header(LABELS_MAGIC, &[values.len() as u32]);
        b.extend(values);
        b
    };
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&images(3))).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels(&[1, 2, 3])).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images(2)).unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gzip(&labels(&[9, 0])),
    )
    .unwrap();
    let mnist = load_mnist(&dir).unwrap();
    assert_eq!(
        (
            mnist.train.len(),
            mnist.test.len(),
            mnist.train.feature_count()
        ),
        (3, 2, 4)
    );
    assert_eq!(mnist.train.pixels().unwrap()[..4], [0, 37, 74, 111]);
    assert_eq!(mnist.train.image_shape(), Some((2, 2)));

    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gzip(&labels(&[9, 10])),
    )
    .unwrap();
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(msg.contains("label 10 of sample 1"), "{msg}");
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&labels(&[9]))).unwrap();
    let msg = load_mnist(&dir).unwrap_err().to_string();
    assert!(msg.contains("2 images but 1 labels"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The repository's MNIST: the real files, with their known first labels.
#[test]
fn repository_mnist_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let mnist = load_mnist(&dir).unwrap();
    assert_eq!(
        (
            mnist.train.len(),
            mnist.test.len(),
            mnist.train.feature_count()
        ),
        (60_000, 10_000, 784)
    );
    assert_eq!(mnist.train.labels().unwrap()[..5], [5, 0, 4, 1, 9]);
    assert_eq!(mnist.test.labels().unwrap()[..5], [7, 2, 1, 0, 4]);
}

/// Regression (fuzzing, `idx_parse`): gzip input legitimately decompresses to
/// more bytes than it holds; the reader accepts it and bounds nothing by the
/// compressed size.
#[test]
fn gzip_data_may_exceed_its_compressed_size() {
    let mut bytes = header(LABELS_MAGIC, &[10_000]);
    bytes.extend(std::iter::repeat_n(7u8, 10_000));
    let compressed = gzip(&bytes);
    assert!(compressed.len() < 1_000);
    let idx = parse_idx(&compressed[..], LABELS_MAGIC).unwrap();
    assert_eq!(idx.data.len(), 10_000);
}

#[test]
fn features_are_exactly_pixel_over_255() {
    use densekit::data::Dataset;
    // gather and gather_range append (after existing contents) in row order.
    let data = Dataset::from_pixels((0..=255u8).collect::<Vec<u8>>(), 64, vec![0; 4]).unwrap();
    let mut x = vec![-1.0];
    data.gather(&[3, 0], &mut x);
    data.gather_range(1..2, &mut x);
    let expect: Vec<f32> = [-1.0]
        .into_iter()
        .chain(
            (192..256)
                .chain(0..64)
                .chain(64..128)
                .map(|p| p as f32 / 255.0),
        )
        .collect();
    assert_eq!(x, expect);
    // Rows whose length is not a multiple of the vector width (8) end in a
    // scalar tail; every value must still be the exact quotient.
    let data = Dataset::from_pixels(
        (0..=255u8).rev().chain(0..=2).collect::<Vec<u8>>(),
        37,
        vec![0; 7],
    )
    .unwrap();
    let mut x = Vec::new();
    data.gather(&[6, 0, 3], &mut x);
    let expect: Vec<f32> = [6usize, 0, 3]
        .iter()
        .flat_map(|&r| data.pixels().unwrap()[r * 37..][..37].iter())
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    assert_eq!(
        x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        expect.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn gather_into_matches_gather_on_any_thread_count() {
    use densekit::Par;
    use densekit::data::Dataset;
    // 300 rows of 37 pixels (not a multiple of the vector width), every byte value.
    let data = Dataset::from_pixels(
        (0..300 * 37)
            .map(|i| (i * 7 % 256) as u8)
            .collect::<Vec<u8>>(),
        37,
        vec![0; 300],
    )
    .unwrap();
    // Enough rows for the threaded path (and an odd count, so bands differ).
    let rows: Vec<usize> = (0..8001).map(|i| i * 13 % 300).collect();
    let mut expect = Vec::new();
    data.gather(&rows, &mut expect);
    for par in [Par::Seq, Par::Threads(2), Par::Threads(3), Par::Auto] {
        let mut x = vec![f32::NAN; rows.len() * 37];
        data.gather_into(&rows, &mut x, par);
        assert!(
            x.iter()
                .zip(&expect)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "gather_into with {par:?} differs from gather"
        );
    }
}

#[test]
#[should_panic(expected = "2 rows of 37 features need 74 slots, got 73")]
fn gather_into_rejects_a_wrong_output_length() {
    use densekit::Par;
    use densekit::data::Dataset;
    let data = Dataset::from_pixels(vec![0; 2 * 37], 37, vec![0; 2]).unwrap();
    data.gather_into(&[0, 1], &mut [0.0; 73], Par::Seq);
}

/// Strip orders are permutations for any shape and band, cover each strip
/// column by column, and reorder every sample's features the same way.
#[test]
fn strip_orders_permute_the_pixels() {
    for (rows, cols) in [(1, 1), (3, 5), (7, 6), (28, 28), (5, 1)] {
        for band in 1..=6 {
            let order = strip_order(rows, cols, band);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..rows * cols).collect::<Vec<_>>(),
                "{rows}×{cols} band {band}"
            );
        }
    }
    // 4 × 3 tiles of a 28-wide image: pixels (0..4, 0..3), row-major indices.
    assert_eq!(
        strip_order(28, 28, 4)[..12],
        [0, 28, 56, 84, 1, 29, 57, 85, 2, 30, 58, 86]
    );
    assert_eq!(strip_order(4, 4, 1), (0..16).collect::<Vec<_>>());

    let data = Dataset::images((0..24).collect::<Vec<u8>>(), (3, 4), vec![0, 1]).unwrap();
    let order = strip_order(3, 4, 2);
    let tiled = data.with_feature_order(&order);
    assert_eq!(tiled.image_shape(), None);
    assert_eq!(tiled.labels(), data.labels());
    for (s, row) in tiled.pixels().unwrap().chunks(12).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert_eq!(v as usize, s * 12 + order[j]);
        }
    }
}

#[test]
#[should_panic(expected = "permutation")]
fn feature_order_must_be_a_permutation() {
    let data = Dataset::from_pixels(vec![0; 6], 3, vec![0, 0]).unwrap();
    data.with_feature_order(&[0, 1, 1]);
}
