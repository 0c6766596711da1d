//! Durations and windows as the spec and the command line write them.

/// `500ms`, `90s`, `30m`, `36h`, `7d`, `2w` → seconds.
pub fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        let n: f64 = ms.trim().parse().ok()?;
        return (n.is_finite() && n >= 0.0).then_some(n / 1000.0);
    }
    let unit = text.chars().last()?;
    let seconds = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86_400.0,
        'w' => 604_800.0,
        _ => return None,
    };
    let n: f64 = text[..text.len() - 1].trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n * seconds)
}

/// How a monitored dataset is cut into windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// Windows of this many seconds of a time column, aligned to the Unix epoch (UTC).
    Seconds(f64),
    /// Every `n` rows, in order.
    Rows(u64),
}

impl Window {
    /// `hour`, `day`, `week`, a duration (`30m`, `6h`, `2d`), or `10000rows`.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Some(n) = t.strip_suffix("rows") {
            return n.trim().parse().ok().filter(|n| *n > 0).map(Window::Rows);
        }
        let seconds = match t {
            "hour" => 3600.0,
            "day" => 86_400.0,
            "week" => 604_800.0,
            _ => parse_duration(t).filter(|s| *s > 0.0)?,
        };
        Some(Window::Seconds(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_windows_parse() {
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("2h"), Some(7200.0));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(Window::parse("day"), Some(Window::Seconds(86_400.0)));
        assert_eq!(Window::parse("6h"), Some(Window::Seconds(21_600.0)));
        assert_eq!(Window::parse("5000rows"), Some(Window::Rows(5000)));
        assert_eq!(Window::parse("0rows"), None);
        assert_eq!(Window::parse("0s"), None);
        assert_eq!(Window::parse("fortnight"), None);
    }
}
