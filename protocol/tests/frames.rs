//! Frames round-trip in both serializations; headers as real clients send
//! them decode as Java's broker would read them.

use mqlab_protocol::codes::request;
use mqlab_protocol::{
    decode_frame, encode_frame, ExtFields, LanguageCode, Limits, ProtocolError, RemotingCommand,
    SerializeType,
};

fn frame(ser: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(((ser as u32) << 24) | header.len() as u32).to_be_bytes());
    b.extend_from_slice(header);
    b.extend_from_slice(body);
    b
}

#[test]
fn both_serializations_round_trip() {
    for ser in [SerializeType::Json, SerializeType::RocketMq] {
        let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2, 42)
            .with_field("a", "group")
            .with_field("b", "Topic")
            .with_field("e", 3)
            .with_body(b"hello".to_vec());
        cmd.serialize_type = ser;
        cmd.remark = Some("r".into());
        let bytes = encode_frame(&cmd).unwrap();
        let (back, used) = decode_frame(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, cmd, "{ser:?}");
        // Every prefix asks for more bytes; nothing is consumed.
        for cut in 0..bytes.len() {
            assert!(decode_frame(&bytes[..cut], &Limits::default())
                .unwrap()
                .is_none());
        }
    }
}

#[test]
fn a_cpp_client_header_reads_as_java_reads_it() {
    // As PyPI rocketmq 0.4.4 (librocketmq) sends SEND_MESSAGE: no
    // serializeTypeCurrentRPC, numbers for ext fields, a trailing newline.
    let header = br#"{"code":10,"language":"CPP","version":0,"opaque":7,"flag":0,"remark":"","extFields":{"producerGroup":"pg","topic":"T","defaultTopic":"TBW102","defaultTopicQueueNums":4,"queueId":0,"sysFlag":0,"bornTimestamp":1733000000000,"flag":0,"properties":"KEYS\u0001k1\u0002","reconsumeTimes":0,"unitMode":false,"batch":"0"}}
"#;
    let bytes = frame(0, header, b"body");
    let (cmd, _) = decode_frame(&bytes, &Limits::default()).unwrap().unwrap();
    assert_eq!(cmd.code, request::SEND_MESSAGE);
    assert_eq!(cmd.language, LanguageCode::CPP);
    assert_eq!(cmd.opaque, 7);
    assert_eq!(cmd.ext_fields.i32_opt("queueId").unwrap(), Some(0));
    assert_eq!(
        cmd.ext_fields.i64_req("bornTimestamp").unwrap(),
        1_733_000_000_000
    );
    assert!(!cmd.ext_fields.bool_or_false("unitMode").unwrap());
    assert!(!cmd.ext_fields.bool_or_false("batch").unwrap());
    assert_eq!(
        cmd.ext_fields.str_req("properties").unwrap(),
        "KEYS\u{1}k1\u{2}"
    );
    assert_eq!(cmd.body, b"body");
    // The answer goes back in JSON with the request's opaque.
    let resp = RemotingCommand::response_to(&cmd, 0, None);
    let out = encode_frame(&resp).unwrap();
    let (r, _) = decode_frame(&out, &Limits::default()).unwrap().unwrap();
    assert!(r.is_response());
    assert_eq!(r.opaque, 7);
    assert_eq!(r.serialize_type, SerializeType::Json);
    let text = String::from_utf8_lossy(&out[8..]);
    assert!(
        text.contains(r#""serializeTypeCurrentRPC":"JSON""#),
        "{text}"
    );
}

#[test]
fn ordinals_and_strings_for_numbers() {
    let header = br#"{"code":"34","language":13,"opaque":"9","flag":"2","extFields":null}"#;
    let (cmd, _) = decode_frame(&frame(0, header, b""), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(cmd.code, request::HEART_BEAT);
    assert_eq!(cmd.language.name(), "NODE_JS");
    assert!(cmd.is_oneway());
    assert!(cmd.ext_fields.is_empty());
}

#[test]
fn bad_frames_are_refused_with_a_reason() {
    let limits = Limits {
        max_frame_bytes: 1024,
    };
    let err = |b: &[u8]| decode_frame(b, &limits).unwrap_err();
    // Negative, too short, oversized lengths: refused from the first 4 bytes.
    assert!(matches!(
        err(&(-1i32).to_be_bytes()),
        ProtocolError::FrameLength { .. }
    ));
    assert!(matches!(
        err(&3i32.to_be_bytes()),
        ProtocolError::FrameLength { .. }
    ));
    assert!(matches!(
        err(&1025i32.to_be_bytes()),
        ProtocolError::FrameLength { .. }
    ));
    // Header longer than the frame.
    let mut b = frame(0, b"{}", b"");
    b[4..8].copy_from_slice(&100u32.to_be_bytes());
    assert!(matches!(err(&b), ProtocolError::HeaderLength { .. }));
    // Unknown serialization, malformed JSON, not an object.
    assert!(matches!(
        err(&frame(7, b"{}", b"")),
        ProtocolError::SerializeType(7)
    ));
    assert!(matches!(
        err(&frame(0, b"{\"code\":", b"")),
        ProtocolError::Json(_)
    ));
    assert!(matches!(
        err(&frame(0, b"[1,2]", b"")),
        ProtocolError::Json(_)
    ));
    assert!(matches!(
        err(&frame(0, br#"{"code":"x"}"#, b"")),
        ProtocolError::Field { .. }
    ));
    // Binary header with a remark length past its end.
    let mut h = vec![0, 10, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    h.extend_from_slice(&1000i32.to_be_bytes());
    assert!(matches!(err(&frame(1, &h, b"")), ProtocolError::Binary(_)));
    // Deep nesting is refused by the JSON parser's depth limit, not the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let limits_big = Limits::default();
    assert!(decode_frame(&frame(0, deep.as_bytes(), b""), &limits_big).is_err());
}

#[test]
fn a_captured_cpp_client_route_request_decodes() {
    // Captured on loopback from PyPI `rocketmq` 0.4.4 (librocketmq) asking
    // a name server for a topic's route (see tests/captures/README.md).
    let bytes = include_bytes!("captures/cpp-0.4.4-get-route.bin");
    let (cmd, used) = decode_frame(bytes, &Limits::default()).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(cmd.code, request::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(cmd.language, LanguageCode::CPP);
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert_eq!(cmd.ext_fields.str_req("topic").unwrap(), "CaptureTopic");
    // An old client: route data must go back in fastjson's legacy form.
    assert!(cmd.version < mqlab_protocol::headers::VERSION_V4_9_4);
    assert!(cmd.ext_fields.contains_key("Signature"));
}
