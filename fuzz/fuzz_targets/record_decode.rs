//! Evidence records and files: never panic; a record that decodes
//! re-encodes to the same bytes; `audit` and `resume` of arbitrary bytes
//! never panic.
#![no_main]
use kernel_core::{AuditOptions, audit, decode_record, encode_record, resume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_record(data) {
        assert_eq!(
            encode_record(&record),
            data,
            "record encoding is not canonical"
        );
    }
    let _ = audit(data, &AuditOptions::default());
    let index = data.first().map_or(0, |b| u64::from(*b));
    let _ = resume(index, data.get(1..).unwrap_or_default());
});
