//! docs/benchmarks.md: each benchmark owns one section between its own
//! markers and rewrites only that, so benchmarks run separately.

use std::time::Duration;

/// Replaces the section between `<!-- {name}:start -->` and
/// `<!-- {name}:end -->` in the report at `path`, appending it when absent.
pub fn write_section(path: &str, name: &str, section: &str) -> anyhow::Result<()> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let block = format!("{start}\n{section}{end}");
    let updated = match (current.find(&start), current.find(&end)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{block}{}", &current[..s], &current[e + end.len()..])
        }
        _ => format!("{}\n\n{block}\n", current.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// Today's date, for "measured on" lines.
pub fn today() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%d")
        .to_string()
}

/// The `q` quantile (0..=1) of sorted samples, by the nearest-rank method;
/// zero when there are none.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn sections_are_replaced_in_place() {
        let path = std::env::temp_dir().join(format!("report-{}.md", std::process::id()));
        let path = path.to_str().expect("a UTF-8 temp path");
        std::fs::write(
            path,
            "# Benchmarks\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\nafter\n",
        )
        .expect("write");
        write_section(path, "a", "new\n").expect("replace");
        write_section(path, "b", "other\n").expect("append");
        let report = std::fs::read_to_string(path).expect("read");
        std::fs::remove_file(path).ok();
        assert_eq!(
            report,
            "# Benchmarks\n\n<!-- a:start -->\nnew\n<!-- a:end -->\n\nafter\n\n<!-- b:start -->\nother\n<!-- b:end -->\n"
        );
    }
}
