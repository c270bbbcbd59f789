//! Arbitrary bytes as a management connection, cut into pieces where the first byte says: the
//! parser must never panic, must give the same answer however the bytes are split, and whatever
//! it completes must route and render without panicking. The response parser of the boot-time
//! fetch gets the same bytes.
#![no_main]

use control::mgmt::{parse_response, route, Parse, RequestParser, Response, MAX_BODY};
use libfuzzer_sys::fuzz_target;

fn feed(data: &[u8], piece: usize) -> Parse {
    let mut parser = RequestParser::new();
    for chunk in data.chunks(piece.max(1)) {
        match parser.push(chunk) {
            Parse::NeedMore => {}
            Parse::Continue => match parser.push(&[]) {
                Parse::NeedMore | Parse::Continue => {}
                done => return done,
            },
            done => return done,
        }
    }
    Parse::NeedMore
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = feed(data, data.len());
    let pieces = feed(data, usize::from(split % 16) + 1);
    assert_eq!(whole, pieces);
    if let Parse::Done(request) = whole {
        assert!(request.body.len() <= MAX_BODY);
        let response = match route(&request.method, &request.path) {
            Ok(_) => Response::text(200, String::new()),
            Err(r) => r,
        };
        let _ = response.to_bytes();
    }
    let _ = parse_response(data);
});
