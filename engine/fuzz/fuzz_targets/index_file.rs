#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqlab_engine_fuzz::targets::index_file(data);
});
