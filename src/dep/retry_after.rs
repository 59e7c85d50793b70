//! `Retry-After` (RFC 9110 §10.2.3): a number of seconds or an HTTP date.

use std::time::Duration;
use time::OffsetDateTime;
use time::macros::format_description;

/// How long to wait, measured from `now`. A date in the past means "now"
/// (zero); an unparseable value is `None` (the caller's own backoff applies).
pub fn parse(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = parse_http_date(value)?;
    let wait = date - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        wait.unsigned_abs()
    })
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`). The obsolete RFC 850 form with its
/// two-digit year is not accepted; the caller's own backoff applies then.
fn parse_http_date(value: &str) -> Option<OffsetDateTime> {
    let imf = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    if let Ok(t) = time::PrimitiveDateTime::parse(value, imf) {
        return Some(t.assume_utc());
    }
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    let asctime = format_description!(
        "[weekday repr:short] [month repr:short] [day padding:none] [hour]:[minute]:[second] [year]"
    );
    time::PrimitiveDateTime::parse(&collapsed, asctime)
        .ok()
        .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn seconds_and_dates() {
        let now = datetime!(1994-11-06 08:49:00 UTC);
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", now), Some(Duration::ZERO));
        for date in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(parse(date, now), Some(Duration::from_secs(37)), "{date}");
        }
        let later = datetime!(1994-11-07 00:00 UTC);
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_is_none() {
        let now = datetime!(2026-01-01 0:00 UTC);
        for bad in [
            "",
            "soon",
            "-5",
            "1.5",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
        ] {
            assert_eq!(parse(bad, now), None, "{bad}");
        }
    }
}
