//! Arbitrary bytes never panic the decoder, and whatever decodes
//! re-encodes to a frame that decodes to the same command.

use mqlab_protocol::{decode_frame, encode_frame, Limits};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes, &Limits { max_frame_bytes: 4096 });
    }

    #[test]
    fn framed_random_headers_never_panic(
        ser in 0u8..3,
        header in proptest::collection::vec(any::<u8>(), 0..256),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(((ser as u32) << 24) | header.len() as u32).to_be_bytes());
        b.extend_from_slice(&header);
        b.extend_from_slice(&body);
        if let Ok(Some((cmd, used))) = decode_frame(&b, &Limits::default()) {
            prop_assert_eq!(used, b.len());
            if let Ok(again) = encode_frame(&cmd) {
                let (back, _) = decode_frame(&again, &Limits::default()).unwrap().unwrap();
                prop_assert_eq!(back, cmd);
            }
        }
    }
}
