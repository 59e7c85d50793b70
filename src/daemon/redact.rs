//! URLs as they may appear in logs, errors and `Debug` output: without
//! userinfo (`user:password@`) and without query or fragment, which is
//! where webhook receivers and test doubles put credentials.

/// `url` with its userinfo replaced by `***@` and its query and fragment
/// dropped. Text that is not a URL is shown as `<not a URL>`.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".into();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// A list of URLs for `Debug` output.
pub fn urls(urls: &[String]) -> Vec<String> {
    urls.iter().map(|u| url(u)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_and_queries_are_removed() {
        for (raw, shown) in [
            ("https://h.example/hook", "https://h.example/hook"),
            (
                "https://u:p@h.example:8443/hook?sig=s#f",
                "https://***@h.example:8443/hook",
            ),
            ("http://token@127.0.0.1:9", "http://***@127.0.0.1:9"),
            ("http://h/p?a=b@c", "http://h/p"),
            ("no url", "<not a URL>"),
        ] {
            assert_eq!(super::url(raw), shown, "{raw}");
        }
    }
}
