//! Checkpoint notes: never panic; what parses prints back to the same
//! text.
#![no_main]
use kernel_core::note::{Checkpoint, SignedNote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(note) = SignedNote::parse(text) {
        assert_eq!(note.to_text(), text, "note text is not canonical");
        if let Ok(checkpoint) = Checkpoint::parse_body(&note.body) {
            assert_eq!(checkpoint.body(), note.body);
        }
    }
    if let Ok(checkpoint) = Checkpoint::parse_body(text) {
        assert_eq!(checkpoint.body(), text, "checkpoint body is not canonical");
    }
});
