//! The `router` section of docs/benchmarks.md: medians of the repetitions,
//! the router as ratios of nginx and of the bare backend, and the issue's
//! targets marked met or not.

use std::time::Duration;

use anyhow::Context;
use mcp_operator_chaos::report::today;

use crate::wrk::Sample;
use crate::{Allocator, Target};

/// The targets.
const THROUGHPUT_VS_NGINX: f64 = 0.8;
const ADDED_P50_VS_NGINX: f64 = 1.5;
const RSS_LIMIT_MIB: f64 = 50.0;

/// The medians of one target's repetitions, each taken separately.
#[derive(Clone, Copy)]
pub struct Summary {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Summary {
    pub fn median_of(samples: &[Sample]) -> Self {
        let rates: Vec<f64> = samples.iter().map(|s| s.rate).collect();
        let secs = |f: fn(&Sample) -> Duration| -> Duration {
            let values: Vec<f64> = samples.iter().map(|s| f(s).as_secs_f64()).collect();
            Duration::from_secs_f64(median(values))
        };
        Summary {
            rate: median(rates),
            p50: secs(|s| s.p50),
            p99: secs(|s| s.p99),
        }
    }
}

/// The middle value; the mean of the two middle ones for an even count;
/// zero for none.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Every target at one connection count.
pub struct Round {
    pub connections: usize,
    /// In the order of [`Target::ALL`], the order of the variants.
    pub summaries: Vec<Summary>,
}

impl Round {
    fn of(&self, target: Target) -> Summary {
        self.summaries[target as usize]
    }

    /// How much later than the bare backend `target`'s median answer came.
    fn added_p50(&self, target: Target) -> f64 {
        ms(self.of(target).p50) - ms(self.of(Target::Direct).p50)
    }
}

/// A process' resident memory now and at its peak, from /proc.
#[derive(Clone, Copy)]
pub struct Memory {
    rss: u64,
    peak: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line.split_whitespace().nth(1).context("a value")?.parse()?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }
}

/// One allocator's router after the same load.
pub struct AllocatorRun {
    pub allocator: Allocator,
    pub connections: usize,
    pub summary: Summary,
    pub memory: Memory,
}

/// How the run was set up, for the text.
pub struct Run<'a> {
    pub tools: usize,
    pub repetitions: usize,
    pub duration: Duration,
    pub load_average: &'a str,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

const ROUTERS: [Target; 2] = [Target::RouterSession, Target::RouterStateless];

pub fn render(
    run: &Run,
    rounds: &[Round],
    memory: Memory,
    allocators: Option<&[AllocatorRun]>,
) -> String {
    let counts: Vec<String> = rounds.iter().map(|r| r.connections.to_string()).collect();
    let mut out = format!(
        "## Router overhead\n\n\
         `make loadtest-router` (loadtest/router): tools/call of one tool of a {tools}-tool catalog through a \
         release `mcp-operator router` (single-node Redis), against the same JSON POST sent to the same backend \
         (an axum echo in the harness) directly and through nginx (Debian's nginx-light, 2 workers, upstream \
         keepalive 64). The load generator is wrk, a process of its own, with {counts} connections (one wrk thread \
         per 32 connections); its Lua script checks every answer (2xx, and `\"isError\":false` from the router), \
         any other answer or socket error fails the run. Through the router twice: 2025-11-25 with one session, \
         initialized before, shared by all connections, and 2026-07-28 stateless \
         requests; both answered as plain JSON (the router's direct path). All targets in the same run, interleaved (direct, nginx, router session, \
         router stateless, then again), {repetitions} × {secs} s each after a short warm-up; the tables show the \
         medians of the repetitions. To rerun after a router change: `make loadtest-router` (about 6 minutes once \
         built; `ROUTER_BENCH_FLAGS` takes `--repetitions`, `--duration`, `--connections 16,64` and \
         `--allocators false`). Client, proxies and backend share the 2 cores of the development machine \
         with other work, so single runs are noisy and only ratios measured side by side mean much; load average \
         after the run: {load}. Measured {today}.\n\n\
         | connections | target | req/s | p50 | p99 | req/s vs nginx | req/s vs direct | added p50 |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        tools = run.tools,
        counts = counts.join(" and "),
        repetitions = run.repetitions,
        secs = run.duration.as_secs(),
        load = run.load_average,
        today = today(),
    );
    for round in rounds {
        let (direct, nginx) = (round.of(Target::Direct), round.of(Target::Nginx));
        for target in Target::ALL {
            let s = round.of(target);
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} % | {:.0} % | {:.2} ms |\n",
                round.connections,
                target.label(),
                s.rate,
                ms(s.p50),
                ms(s.p99),
                s.rate / nginx.rate * 100.0,
                s.rate / direct.rate * 100.0,
                round.added_p50(target),
            ));
        }
    }

    out.push_str(&format!(
        "\nTargets (issue 18): router throughput ≥ {:.0} % of nginx's, router added p50 ≤ {ADDED_P50_VS_NGINX}× \
         nginx's added p50 (added p50 = p50 − the direct p50), at every connection count on both paths; router RSS \
         < {RSS_LIMIT_MIB:.0} MiB after the run with {} tools.\n\n\
         | target | connections | path | measured | result |\n| --- | --- | --- | --- | --- |\n",
        THROUGHPUT_VS_NGINX * 100.0,
        run.tools,
    ));
    for round in rounds {
        let nginx = round.of(Target::Nginx);
        for target in ROUTERS {
            let ratio = round.of(target).rate / nginx.rate;
            out.push_str(&format!(
                "| throughput ≥ {:.0} % of nginx | {} | {} | {:.0} % | {} |\n",
                THROUGHPUT_VS_NGINX * 100.0,
                round.connections,
                target.label(),
                ratio * 100.0,
                met(ratio >= THROUGHPUT_VS_NGINX),
            ));
        }
        let nginx_added = round.added_p50(Target::Nginx);
        let limit = ADDED_P50_VS_NGINX * nginx_added;
        for target in ROUTERS {
            let added = round.added_p50(target);
            out.push_str(&format!(
                "| added p50 ≤ {ADDED_P50_VS_NGINX}× nginx's | {} | {} | {added:.2} ms vs {limit:.2} ms \
                 ({ADDED_P50_VS_NGINX} × {nginx_added:.2} ms) | {} |\n",
                round.connections,
                target.label(),
                met(added <= limit),
            ));
        }
    }
    out.push_str(&format!(
        "| RSS < {RSS_LIMIT_MIB:.0} MiB after the run | | the router of the table above, {} tools | {:.1} MiB (peak {:.1} MiB) | {} |\n",
        run.tools,
        mib(memory.rss),
        mib(memory.peak),
        met(mib(memory.rss) < RSS_LIMIT_MIB),
    ));

    if let Some(allocators) = allocators {
        out.push_str(&allocator_table(allocators));
    }
    out
}

fn allocator_table(runs: &[AllocatorRun]) -> String {
    let glibc = runs
        .iter()
        .find(|r| matches!(r.allocator, Allocator::Glibc))
        .map(|r| r.summary.rate);
    let connections = runs.first().map_or(0, |r| r.connections);
    let mut out = format!(
        "\nAllocators (`--allocators true`, the default): the same router binary started three more times, \
         fresh, with glibc's malloc, Debian's jemalloc (libjemalloc2) and mimalloc (libmimalloc2.0) through \
         `LD_PRELOAD` (checked in /proc/<pid>/maps). mimalloc 2.0.9 knows no `MIMALLOC_PURGE_DELAY` (that is \
         2.1's name); its `MIMALLOC_DECOMMIT_DELAY=0` returns freed pages at once. Each: stateless calls at \
         {connections} connections, measured interleaved with the others like the table above; memory read \
         from /proc after the last repetition.\n\n\
         | allocator | req/s | vs glibc | p50 | RSS after the run (VmRSS) | peak RSS (VmHWM) |\n\
         | --- | --- | --- | --- | --- | --- |\n"
    );
    for run in runs {
        let versus = glibc.map_or("?".to_owned(), |g| {
            format!("{:.0} %", run.summary.rate / g * 100.0)
        });
        out.push_str(&format!(
            "| {} | {:.0} | {versus} | {:.2} ms | {:.1} MiB | {:.1} MiB |\n",
            run.allocator.label(),
            run.summary.rate,
            ms(run.summary.p50),
            mib(run.memory.rss),
            mib(run.memory.peak),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(rate: f64, p50_ms: u64) -> Summary {
        Summary {
            rate,
            p50: Duration::from_millis(p50_ms),
            p99: Duration::from_millis(p50_ms * 4),
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        let samples = [(900.0, 3), (1000.0, 1), (1100.0, 2)].map(|(rate, p50)| Sample {
            rate,
            p50: Duration::from_millis(p50),
            p99: Duration::from_millis(p50 * 10),
        });
        let s = Summary::median_of(&samples);
        assert_eq!(s.rate, 1000.0);
        assert_eq!(s.p50, Duration::from_millis(2));
        assert_eq!(s.p99, Duration::from_millis(20));
    }

    #[test]
    fn targets_are_judged_against_nginx() {
        let round = Round {
            connections: 64,
            // direct, nginx, session (slow), stateless (within both targets)
            summaries: vec![
                summary(10000.0, 1),
                summary(8000.0, 3),
                summary(2000.0, 9),
                summary(7100.0, 4),
            ],
        };
        let memory = Memory {
            rss: 40 << 20,
            peak: 60 << 20,
        };
        let run = Run {
            tools: 1000,
            repetitions: 3,
            duration: Duration::from_secs(10),
            load_average: "1.0",
        };
        let text = render(&run, &[round], memory, None);
        assert!(
            text.contains("| throughput ≥ 80 % of nginx | 64 | router, 2025-11-25 session | 25 % | **not met** |"),
            "{text}"
        );
        assert!(
            text.contains("| throughput ≥ 80 % of nginx | 64 | router, 2026-07-28 stateless (JSON) | 89 % | met |"),
            "{text}"
        );
        assert!(
            text.contains("| 8.00 ms vs 3.00 ms (1.5 × 2.00 ms) | **not met** |"),
            "{text}"
        );
        assert!(
            text.contains("| 3.00 ms vs 3.00 ms (1.5 × 2.00 ms) | met |"),
            "{text}"
        );
        assert!(
            text.contains("| 40.0 MiB (peak 60.0 MiB) | met |"),
            "{text}"
        );
        assert!(!text.contains("Allocators"));
    }
}
