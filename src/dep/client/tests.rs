use super::*;

#[test]
fn urls_keep_the_base_path_prefix() {
    assert_eq!(
        join_url("https://a.example", "/account"),
        "https://a.example/account"
    );
    assert_eq!(
        join_url("http://h:1/prefix/", "/session"),
        "http://h:1/prefix/session"
    );
    assert_eq!(
        join_url("http://h:1/prefix", "x?y=1"),
        "http://h:1/prefix/x?y=1"
    );
}

fn chunks(
    parts: &[&'static str],
    fail: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin {
    let mut items: Vec<Result<Bytes, awc::error::PayloadError>> = parts
        .iter()
        .map(|p| Ok(Bytes::from_static(p.as_bytes())))
        .collect();
    if fail {
        items.push(Err(awc::error::PayloadError::Incomplete(None)));
    }
    futures_util::stream::iter(items)
}

#[actix_web::test]
async fn bodies_are_read_whole_and_bounded() {
    let got = collect_body(chunks(&["{\"a\"", ":1}"], false), Some(7), 7)
        .await
        .expect("body");
    assert_eq!(&got[..], b"{\"a\":1}");
    // Without a length, or with a wrong one, the chunks still decide.
    let got = collect_body(chunks(&["ab", "cd"], false), None, 10)
        .await
        .expect("body");
    assert_eq!(&got[..], b"abcd");
    let got = collect_body(chunks(&["ab", "cd"], false), Some(2), 10)
        .await
        .expect("body");
    assert_eq!(&got[..], b"abcd");
    // Over the limit: refused as announced, or as it arrives.
    for announced in [Some(11), None, Some(3)] {
        let e = collect_body(chunks(&["abcdef", "ghijk"], false), announced, 10)
            .await
            .expect_err("too large");
        assert!(
            matches!(&e, DepError::Decode(m) if m.contains("larger than 10 bytes")),
            "{e:?}"
        );
    }
    // A connection that breaks mid-body is a network error.
    let e = collect_body(chunks(&["ab"], true), Some(4), 10)
        .await
        .expect_err("broken");
    assert!(matches!(e, DepError::Network(_)), "{e:?}");
}

#[test]
fn session_rejections() {
    assert!(is_session_rejection(StatusCode::UNAUTHORIZED, b""));
    assert!(is_session_rejection(StatusCode::FORBIDDEN, b"FORBIDDEN"));
    assert!(!is_session_rejection(
        StatusCode::FORBIDDEN,
        b"T_C_NOT_SIGNED"
    ));
    assert!(!is_session_rejection(StatusCode::BAD_REQUEST, b"FORBIDDEN"));
}
