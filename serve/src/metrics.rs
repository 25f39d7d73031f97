//! Request metrics in the Prometheus text format (`GET /metrics`):
//! requests answered by route, method and status, the time to answer
//! them by route as a histogram, and the requests in flight. A route is
//! the matched path (`/v1/customers/{id}`), or `(no route)`, so the
//! series stay few whatever the clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The histogram's upper bounds, in seconds.
pub const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What the server counted.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Counted>,
}

#[derive(Default)]
struct Counted {
    /// (route, method, status) → requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// route → its latencies.
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
struct Histogram {
    /// Per bound of `BUCKETS`: the requests answered within it (not
    /// cumulative; summed when written).
    buckets: [u64; BUCKETS.len()],
    sum_s: f64,
    count: u64,
}

impl Metrics {
    /// Counts a request of `route` and `method` answered `status` in `took`.
    pub fn record(&self, route: &str, method: &str, status: u16, took: Duration) {
        let mut counted = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counted.requests.entry((route.to_owned(), method.to_owned(), status)).or_default() += 1;
        let histogram = counted.latency.entry(route.to_owned()).or_default();
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            histogram.buckets[bucket] += 1;
        }
        histogram.sum_s += seconds;
        histogram.count += 1;
    }

    /// The metrics in the Prometheus text format (version 0.0.4), with
    /// `in_flight` requests being answered now.
    pub fn render(&self, in_flight: usize) -> String {
        let counted = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        out += "# HELP cusim_http_requests_total Requests answered, by route, method and status.\n";
        out += "# TYPE cusim_http_requests_total counter\n";
        for ((route, method, status), n) in &counted.requests {
            let _ = writeln!(
                out,
                "cusim_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out += "# HELP cusim_http_request_duration_seconds Time to answer a request, by route.\n";
        out += "# TYPE cusim_http_request_duration_seconds histogram\n";
        for (route, histogram) in &counted.latency {
            let route = escape(route);
            let mut within = 0;
            for (bound, n) in BUCKETS.iter().zip(histogram.buckets) {
                within += n;
                let _ = writeln!(
                    out,
                    "cusim_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {within}"
                );
            }
            let count = histogram.count;
            let _ = writeln!(
                out,
                "cusim_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "cusim_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum_s
            );
            let _ = writeln!(out, "cusim_http_request_duration_seconds_count{{route=\"{route}\"}} {count}");
        }
        out += "# HELP cusim_http_requests_in_flight API requests being answered now.\n";
        out += "# TYPE cusim_http_requests_in_flight gauge\n";
        let _ = writeln!(out, "cusim_http_requests_in_flight {in_flight}");
        out
    }
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latencies_are_written_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.record("/v1/check", "POST", 200, Duration::from_micros(800));
        metrics.record("/v1/check", "POST", 200, Duration::from_millis(30));
        metrics.record("/v1/check", "POST", 401, Duration::from_secs(9));
        metrics.record("say \"hi\"", "GET", 404, Duration::from_millis(2));
        let text = metrics.render(3);
        assert!(text
            .contains("cusim_http_requests_total{route=\"/v1/check\",method=\"POST\",status=\"200\"} 2\n"));
        assert!(text
            .contains("cusim_http_requests_total{route=\"/v1/check\",method=\"POST\",status=\"401\"} 1\n"));
        assert!(text.contains("route=\"say \\\"hi\\\"\""), "{text}");
        // Cumulative buckets: 1 within 1 ms, 2 within 50 ms, 2 within 5 s
        // (the third took 9 s), 3 in all.
        assert!(text.contains("_bucket{route=\"/v1/check\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{route=\"/v1/check\",le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("_bucket{route=\"/v1/check\",le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("_bucket{route=\"/v1/check\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("_count{route=\"/v1/check\"} 3\n"), "{text}");
        assert!(text.contains("cusim_http_requests_in_flight 3\n"));
    }
}
