//! A static, self-contained HTML report of a run: one grid per step (rows: the first
//! dimension's values; columns: the other dimensions' combinations), each cell coloured by
//! state, with its duration, attempts and a link to its log. No external assets.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::definition::Pipeline;
use super::results::{RunResult, TaskResult, TaskState};

/// The report of `result` as one HTML document.
pub fn html(pipeline: &Pipeline, result: &RunResult) -> String {
    let mut h = String::new();
    let ok = if result.ok { "succeeded" } else { "failed" };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{name}: {ok}</title><style>{CSS}</style></head><body>\
         <h1>{name} <span class=\"{ok}\">{ok}</span></h1>\
         <p class=\"meta\">mode {mode} &middot; {total} tasks: {s} succeeded, {f} failed, {k} skipped &middot; \
         {took} &middot; {w} workers, {hc} health checks ({hs} started a worker)</p>",
        name = esc(&result.pipeline),
        mode = serde_json::to_value(result.mode).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        total = result.tasks().count(),
        s = result.count(TaskState::Succeeded),
        f = result.count(TaskState::Failed),
        k = result.count(TaskState::Skipped),
        took = duration(result.elapsed_ms),
        w = result.workers.len(),
        hc = result.health_checks.runs,
        hs = result.health_checks.workers_started,
    );
    if !result.failures.is_empty() {
        h.push_str("<h2>Failures</h2><pre class=\"summary\">");
        h.push_str(&esc(&result.failure_summary()));
        h.push_str("</pre>");
    }
    for step in &result.steps {
        let dims: Vec<&str> = pipeline
            .step(&step.step)
            .map(|s| s.matrix().iter().map(String::as_str).collect())
            .unwrap_or_default();
        let _ = write!(
            h,
            "<h2>{} <small>{} &middot; {}</small></h2><table data-step=\"{}\">",
            esc(&step.step),
            esc(&step.kind),
            esc(step.worker.as_deref().unwrap_or("in process")),
            esc(&step.step)
        );
        let row_key = |t: &TaskResult| {
            dims.first()
                .and_then(|d| t.cell.get(d))
                .unwrap_or("")
                .to_owned()
        };
        let col_key = |t: &TaskResult| {
            dims.iter()
                .skip(1)
                .filter_map(|d| t.cell.get(d))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        // Rows and columns in first-seen order; cells found by (row, column) in one map,
        // so a step of thousands of cells renders in linear time.
        let (mut rows, mut cols) = (Vec::new(), Vec::new());
        let (mut row_seen, mut col_seen) = (HashSet::new(), HashSet::new());
        let mut at: HashMap<(String, String), &TaskResult> = HashMap::new();
        for t in &step.cells {
            let (r, c) = (row_key(t), col_key(t));
            if row_seen.insert(r.clone()) {
                rows.push(r.clone());
            }
            if col_seen.insert(c.clone()) {
                cols.push(c.clone());
            }
            at.insert((r, c), t);
        }
        let _ = write!(
            h,
            "<tr><th>{}</th>",
            esc(dims.first().copied().unwrap_or(""))
        );
        for c in &cols {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr>");
        for r in &rows {
            let _ = write!(h, "<tr><th>{}</th>", esc(r));
            for c in &cols {
                match at.get(&(r.clone(), c.clone())) {
                    Some(t) => cell(&mut h, t),
                    None => h.push_str("<td class=\"none\"></td>"),
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    if !result.workers.is_empty() {
        h.push_str("<h2>Workers</h2><table><tr><th>machine</th><th>kind</th><th>tasks</th><th>last name</th><th>ended</th></tr>");
        for w in &result.workers {
            let _ = write!(
                h,
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(&log_link(&w.log)),
                esc(&w.machine),
                esc(&w.kind),
                w.tasks,
                esc(&w.label),
                esc(&w.ended),
                if w.from_health_check { " (health check)" } else { "" }
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

fn cell(h: &mut String, t: &TaskResult) {
    let state = match t.state {
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Skipped => "skipped",
    };
    let detail = t.error.as_deref().or(t.reason.as_deref()).unwrap_or("");
    let _ = write!(
        h,
        "<td class=\"{state}\" data-task=\"{task}\" data-state=\"{state}\" title=\"{detail}\">\
         <b>{state}</b><br>{took} &middot; {n} attempt{plural}",
        task = esc(&t.task),
        detail = esc(detail),
        took = duration(t.elapsed_ms),
        n = t.attempts,
        plural = if t.attempts == 1 { "" } else { "s" },
    );
    if let Some(m) = &t.machine {
        let _ = write!(h, "<br>{}", esc(m));
    }
    if let Some(log) = &t.log {
        let _ = write!(h, " <a href=\"{}\">log</a>", esc(&log_link(log)));
    }
    if !detail.is_empty() {
        let _ = write!(h, "<div class=\"detail\">{}</div>", esc(detail));
    }
    h.push_str("</td>");
}

/// Logs live in `logs/` beside the report: link them relatively, so the output directory
/// can be moved or served as a whole.
fn log_link(log: &std::path::Path) -> String {
    match log.file_name() {
        Some(name) => format!("logs/{}", name.to_string_lossy()),
        None => log.display().to_string(),
    }
}

/// `850 ms`, `12.3 s`, `4 min 05 s`.
fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
h1 span{font-size:60%;padding:.2em .5em;border-radius:4px;color:#fff}\
h1 .succeeded{background:#2e7d32}h1 .failed{background:#c62828}\
table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.4em .6em;vertical-align:top}\
td.succeeded{background:#c8e6c9}td.failed{background:#ffcdd2}td.skipped{background:#eeeeee;color:#555}\
td.none{background:#fff}.detail{font-size:85%;max-width:28em;white-space:pre-wrap}\
.meta{color:#555}pre.summary{background:#fff3f3;padding:1em;white-space:pre-wrap}small{color:#777;font-weight:normal}";

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            super::esc("<a href=\"x\">'&'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;"
        );
    }
}
