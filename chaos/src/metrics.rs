//! Reading Prometheus text back: an operator replica's counters, the
//! apiserver's request counts.

/// The samples of metric `name` in `text`: each one's labels (what is
/// between the braces, empty when it has none) and value. Another metric
/// whose name merely starts with `name` is not one of them.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.rsplit_once('}')?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.trim().parse::<f64>().ok()?))
    })
}

/// The value of label `name` in a sample's `labels`, empty when absent.
pub fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\""))
        .map_or("", |v| v.trim_end_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_one_metric_with_and_without_labels() {
        let text = "# HELP m x\n\
                    m{kind=\"a\",outcome=\"b\"} 2\n\
                    m 3\n\
                    m_total 5\n\
                    other{kind=\"a\"} 7\n";
        let found: Vec<_> = samples(text, "m").collect();
        assert_eq!(found, vec![("kind=\"a\",outcome=\"b\"", 2.0), ("", 3.0)]);
        assert_eq!(label(found[0].0, "outcome"), "b");
        assert_eq!(label(found[0].0, "missing"), "");
    }
}
