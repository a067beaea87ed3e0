//! The apiserver's request counters, by verb and resource, so a run can say
//! where its requests went and not only how many there were.

use std::collections::BTreeMap;

use anyhow::Context;
use kube::Client;
use mcp_operator_chaos::metrics;

/// Requests served since the apiserver started, keyed by `VERB
/// resource[/subresource]` (all groups and response codes summed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests(BTreeMap<String, f64>);

impl Requests {
    /// Reads the apiserver's `/metrics`.
    pub async fn scrape(client: &Client) -> anyhow::Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = client
            .request_text(request)
            .await
            .context("reading the apiserver's /metrics")?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut counts = BTreeMap::new();
        for (labels, value) in metrics::samples(text, "apiserver_request_total") {
            let mut key = format!(
                "{} {}",
                metrics::label(labels, "verb"),
                metrics::label(labels, "resource")
            );
            let subresource = metrics::label(labels, "subresource");
            if !subresource.is_empty() {
                key = format!("{key}/{subresource}");
            }
            *counts.entry(key).or_insert(0.0) += value;
        }
        Self(counts)
    }

    /// The requests served after `earlier` was scraped.
    pub fn since(&self, earlier: &Requests) -> Requests {
        Self(
            self.0
                .iter()
                .map(|(key, n)| (key.clone(), n - earlier.0.get(key).copied().unwrap_or(0.0)))
                .filter(|(_, n)| *n > 0.0)
                .collect(),
        )
    }

    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }

    /// The `n` largest counts, largest first.
    pub fn top(&self, n: usize) -> Vec<(&str, f64)> {
        let mut counts: Vec<(&str, f64)> = self.0.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        counts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        counts.truncate(n);
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::Requests;

    #[test]
    fn counts_are_summed_by_verb_and_resource_and_diffed() {
        let before = Requests::parse(
            "# HELP apiserver_request_total x\n\
             apiserver_request_total{code=\"200\",component=\"apiserver\",group=\"kubemcp.io\",resource=\"mcptools\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 10\n\
             apiserver_request_total{code=\"201\",component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"POST\",version=\"v1\"} 3\n",
        );
        let after = Requests::parse(
            "apiserver_request_total{code=\"200\",component=\"apiserver\",group=\"kubemcp.io\",resource=\"mcptools\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 25\n\
             apiserver_request_total{code=\"409\",component=\"apiserver\",group=\"kubemcp.io\",resource=\"mcptools\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 2\n\
             apiserver_request_total{code=\"201\",component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"\",verb=\"POST\",version=\"v1\"} 3\n\
             apiserver_request_total{code=\"200\",component=\"apiserver\",group=\"apps\",resource=\"deployments\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 4\n",
        );
        let run = after.since(&before);
        assert_eq!(run.total(), 21.0);
        assert_eq!(
            run.top(5),
            vec![("PATCH mcptools/status", 17.0), ("APPLY deployments", 4.0)]
        );
    }
}
