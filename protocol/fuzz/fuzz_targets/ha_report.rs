#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqlab_protocol_fuzz::targets::ha_report(data);
});
