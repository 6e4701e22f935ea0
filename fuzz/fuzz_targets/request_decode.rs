//! Request decoding: never panics; whatever decodes re-encodes to the same
//! bytes (the format is canonical).
#![no_main]
use kernel_core::EncodedRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = EncodedRequest::decode(data) {
        let again = EncodedRequest::new(decoded.request().clone());
        assert_eq!(again.bytes(), data, "request encoding is not canonical");
        assert_eq!(again.digest(), decoded.digest());
    }
});
