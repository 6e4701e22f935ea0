//! Receipt verification on arbitrary bytes: never panics, never verifies a
//! body the key did not sign, and any body that decodes re-encodes to the
//! same bytes.
#![no_main]
use kernel_core::{SignedReceipt, SigningKey, decode_receipt_body_unverified, sign_receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]);
    let (signature, body) = data.split_at(data.len().min(64));
    let mut sig = [0u8; 64];
    sig[..signature.len()].copy_from_slice(signature);
    let receipt = SignedReceipt {
        body: body.to_vec(),
        signature: sig,
    };
    if let Ok(decoded) = decode_receipt_body_unverified(body) {
        let signed = sign_receipt(&key, &decoded);
        assert_eq!(signed.body, body, "receipt encoding is not canonical");
        if kernel_core::verify_receipt_signature(&receipt, &key.verifying_key()).is_ok() {
            assert_eq!(signed.signature, sig, "a forged signature verified");
        }
    } else {
        assert!(kernel_core::verify_receipt_signature(&receipt, &key.verifying_key()).is_err());
    }
});
