//! Arbitrary bytes as a config blob: decoding must fail cleanly or yield a valid config that
//! round-trips and that a forwarder accepts.
#![no_main]

use control::config::Config;
use forwarder::Forwarder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::from_blob(data) {
        assert_eq!(Config::from_blob(&config.to_blob()).as_ref(), Ok(&config));
        let _ = Forwarder::new(&config, [2, 0, 0, 0, 0, 1], 1024);
    }
});
