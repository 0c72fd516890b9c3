//! A simulated Croco-dial: a real HTTP server that speaks `inbound_cdr` as the platform does
//! (its quirks in `docs/counting.md`, *When the API misbehaves*), for `--demo`, `simulate` and
//! the tests.
//!
//! GET and POST, credentials checked with the platform's error shape, tenant/profile/user and
//! date filters honoured (dates compared as strings, as the platform does), PHP-style JSON.
//! Tests can replace the next answers with any status and body ([`SimHandle::set_answer`]) and
//! read back the requests it received.

pub mod php_json;
pub mod traffic;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::clock::{wall_secs, WallSecs};
use crate::http::{response, Body};
use traffic::{wall_to_datetime, CAMPAIGNS, QUEUES};
pub use traffic::{Fate, Phase, SimCall, Spike, Traffic};

/// Where the platform serves the API; every other path is a 404.
pub const API_PATH: &str = "/goAPIv2/goReports/goAPI.php";

/// Apache's answer for a path it does not have.
const NOT_FOUND: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n</body></html>\n";

/// A request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The query string of the URL, if any.
    pub query: Option<String>,
    pub params: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    pub fn params_named(&self, name: &str) -> Vec<&str> {
        params_named(&self.params, name)
    }
}

/// The first value of the parameter `name`.
fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Every value of the parameter `name`, in order.
fn params_named<'p>(params: &'p [(String, String)], name: &str) -> Vec<&'p str> {
    params
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A canned answer that replaces the generated one.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub body: Bytes,
}

struct Inner {
    traffic: Traffic,
    user: String,
    password: String,
    clock: SharedClock,
    canned: Mutex<Option<Canned>>,
    delay: Mutex<std::time::Duration>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// A handle on a running (or runnable) simulator.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

/// Connections the simulated API keeps open at once, as a dialer's web server would allow.
const SIM_MAX_CONNECTIONS: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimHandle {
    pub fn new(traffic: Traffic, user: &str, password: &str, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                traffic,
                user: user.to_string(),
                password: password.to_string(),
                clock,
                canned: Mutex::new(None),
                delay: Mutex::new(std::time::Duration::ZERO),
                requests: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Answers every request with `status` and `body` until [`SimHandle::clear_answer`].
    pub fn set_answer(&self, status: u16, body: impl Into<Bytes>) {
        *lock(&self.inner.canned) = Some(Canned {
            status,
            body: body.into(),
        });
    }

    pub fn clear_answer(&self) {
        *lock(&self.inner.canned) = None;
    }

    /// Holds every answer back this long (for timeouts).
    pub fn set_delay(&self, delay: std::time::Duration) {
        *lock(&self.inner.delay) = delay;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    pub fn traffic(&self) -> &Traffic {
        &self.inner.traffic
    }

    /// Serves the API on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.serve_with(listener, shutdown, None).await;
    }

    /// Serves the API, over TLS (and the rest of a web config) if given one.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
        web: Option<Arc<crate::web::WebConfig>>,
    ) {
        let handler = move |req: Request<Incoming>| {
            let sim = self.clone();
            async move { sim.handle(req).await }
        };
        crate::http::serve(listener, handler, shutdown, web, SIM_MAX_CONNECTIONS).await;
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        // The platform's web server has nothing else there: a wrong path is a 404, as it is
        // on a real domain.
        if req.uri().path() != API_PATH {
            return response(404, "text/html; charset=iso-8859-1", NOT_FOUND);
        }
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_string);
        let mut params: Vec<(String, String)> = query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        if method == Method::POST {
            match Limited::new(req.into_body(), 1 << 20).collect().await {
                Ok(body) => {
                    params.extend(url::form_urlencoded::parse(&body.to_bytes()).into_owned())
                }
                Err(_) => return response(413, "text/plain", "request too large"),
            }
        }
        lock(&self.inner.requests).push(RecordedRequest {
            method: method.to_string(),
            query,
            params: params.clone(),
        });
        let delay = *lock(&self.inner.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(canned) = lock(&self.inner.canned).clone() {
            return response(canned.status, "text/html; charset=UTF-8", canned.body);
        }
        let (status, body) = self.answer(&params);
        // Like the platform: no useful content type.
        response(status, "text/html; charset=UTF-8", body)
    }

    /// The platform's answer to a set of parameters.
    pub fn answer(&self, params: &[(String, String)]) -> (u16, Vec<u8>) {
        match self.refusal(params) {
            Some(body) => (200, body.to_vec()),
            None => self.inbound_cdr(params),
        }
    }

    /// The platform's error body for a request it does not serve: parameters missing, a
    /// response type other than JSON, wrong credentials, or another action.
    fn refusal(&self, params: &[(String, String)]) -> Option<&'static [u8]> {
        let (Some(action), Some(user), Some(pass)) = (
            param(params, "goAction"),
            param(params, "goUser"),
            param(params, "goPass"),
        ) else {
            return Some(br#"{"code":"40001","message":"Error: Missing required parameters"}"#);
        };
        if param(params, "responsetype") != Some("json") {
            return Some(
                b"result=error;message=This API function only accepts XML or JSON value on responsetype;",
            );
        }
        if user != self.inner.user || pass != self.inner.password {
            return Some(br#"{"result":"error","message":"Invalid Username/Password"}"#);
        }
        if action != "inbound_cdr" {
            return Some(br#"{"result":"error","message":"Command Not Found"}"#);
        }
        None
    }

    /// The `inbound_cdr` report: the calls of the requested days that pass its filters.
    fn inbound_cdr(&self, params: &[(String, String)]) -> (u16, Vec<u8>) {
        let traffic = &self.inner.traffic;
        let now = wall_secs(
            self.inner
                .clock
                .now()
                .to_zoned(traffic.tz.clone())
                .datetime(),
        );
        let (from_s, to_s) = (param(params, "fromDate"), param(params, "toDate"));
        // No dates: the last 24 hours.
        let from_wall = from_s.and_then(parse_day).unwrap_or(now - 86_400);
        // toDate is compared as a bare string: '2025-05-29 10:00' > '2025-05-29', so the day
        // itself is excluded. Generating up to its midnight reproduces that.
        let to_wall = to_s.and_then(parse_day).unwrap_or(now + 1);
        let calls = traffic.calls(from_wall, to_wall, now);
        let rows = filtered(&calls, params, now);
        if rows.is_empty() {
            let body = format!(
                r#"{{"result":"No records retrieved from: {} - {}"}}"#,
                from_s.unwrap_or(""),
                to_s.unwrap_or("")
            );
            return (200, body.into_bytes());
        }
        match php_json::to_vec(&Envelope::new(&rows, now)) {
            Ok(body) => (200, body),
            Err(_) => (
                500,
                b"<html><body>Internal Server Error</body></html>".to_vec(),
            ),
        }
    }
}

/// The calls of the requested tenants, profiles and agents (each filter, when absent, passes
/// all); the agent is the one the row shows at `now`.
fn filtered<'c>(
    calls: &'c [SimCall],
    params: &[(String, String)],
    now: WallSecs,
) -> Vec<&'c SimCall> {
    let tenants = params_named(params, "tenant[]");
    let profiles = params_named(params, "profile[]");
    let agents = params_named(params, "user[]");
    calls
        .iter()
        .filter(|c| {
            let (_, tenant, profile) = CAMPAIGNS[c.campaign];
            (tenants.is_empty() || tenants.contains(&tenant))
                && (profiles.is_empty() || profiles.contains(&profile))
                && (agents.is_empty() || agents.contains(&c.agent_shown(c.phase(now)).as_str()))
        })
        .collect()
}

fn parse_day(s: &str) -> Option<WallSecs> {
    let d: jiff::civil::Date = s.trim().parse().ok()?;
    Some(wall_secs(d.to_datetime(jiff::civil::Time::midnight())))
}

fn fmt_wall(w: WallSecs) -> String {
    wall_to_datetime(w)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[derive(Serialize)]
struct Envelope<'a> {
    result: &'static str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    rows: Vec<RowOut<'a>>,
    headers: Vec<Header>,
    summary_headers: Vec<Header>,
    summary_rows: Vec<SummaryOut>,
}

#[derive(Serialize)]
struct Header {
    title: &'static str,
    field: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    formatter: Option<&'static str>,
}

#[derive(Serialize)]
struct RowOut<'a> {
    call_date: String,
    enter_on_queue: String,
    src: &'a str,
    dst: &'a str,
    carrier: &'a str,
    uniq1: &'a str,
    queue: &'static str,
    agent: String,
    campaign: &'static str,
    disposition: &'static str,
    term_reason: &'static str,
    queue_time: String,
    call_duration: String,
    queue_position: String,
    portfolio: &'static str,
    lead_id: String,
    list_id: String,
    vendor_lead_code: &'static str,
}

/// PHP leaves numbers from MySQL as strings, except in the summary, which it computes.
#[derive(Serialize)]
struct SummaryOut {
    campaign_name: &'static str,
    #[serde(flatten)]
    values: BTreeMap<&'static str, u64>,
}

impl<'a> Envelope<'a> {
    /// The report of `calls` as they are at `now`, with the campaign summary of their counts.
    fn new(calls: &[&'a SimCall], now: WallSecs) -> Self {
        // Calls and handled calls of each campaign.
        let mut per_campaign = [(0u64, 0u64); CAMPAIGNS.len()];
        let rows = calls
            .iter()
            .map(|c| {
                let phase = c.phase(now);
                per_campaign[c.campaign].0 += 1;
                if phase == Phase::Final && c.fate == Fate::Answered {
                    per_campaign[c.campaign].1 += 1;
                }
                RowOut::new(c, phase)
            })
            .collect();
        let h = |title, field| Header {
            title,
            field,
            formatter: Some("html"),
        };
        Envelope {
            result: "success",
            data: Data {
                rows,
                headers: vec![
                    h("Call Date", "call_date"),
                    h("Source", "src"),
                    h("Queue", "queue"),
                    h("Agent", "agent"),
                ],
                summary_headers: vec![Header {
                    title: "Campaign",
                    field: "campaign_name",
                    formatter: None,
                }],
                summary_rows: summary_rows(per_campaign),
            },
        }
    }
}

impl<'a> RowOut<'a> {
    fn new(c: &'a SimCall, phase: Phase) -> Self {
        let campaign = CAMPAIGNS[c.campaign].0;
        let (agent, disposition, term, wait, duration) = columns_in_phase(c, phase);
        RowOut {
            call_date: if c.bad_date {
                "0000-00-00 00:00:00".to_string()
            } else {
                fmt_wall(c.call_date)
            },
            enter_on_queue: fmt_wall(c.enter_on_queue),
            src: &c.src,
            dst: &c.dst,
            carrier: &c.carrier,
            uniq1: &c.uniq1,
            queue: QUEUES[c.queue],
            agent,
            campaign,
            disposition,
            term_reason: term,
            // queue_seconds is DECIMAL(7,2) in the closer log.
            queue_time: format!("{wait:.2}"),
            call_duration: format!("{duration:.0}"),
            queue_position: c.queue_position.to_string(),
            portfolio: CAMPAIGNS[c.campaign].1,
            lead_id: c.lead_id.to_string(),
            list_id: format!("{campaign} list"),
            vendor_lead_code: c.vendor_lead_code,
        }
    }
}

/// The agent, disposition, term reason, queue time and call duration a row shows while its
/// leg is in `phase`: the platform inserts a row at queue entry and rewrites it as the call
/// goes on (`docs/counting.md`, *When a row counts*).
fn columns_in_phase(c: &SimCall, phase: Phase) -> (String, &'static str, &'static str, f64, f64) {
    let agent = c.agent_shown(phase);
    let waiting_term = if c.none_marker { "NONE" } else { "" };
    match phase {
        // The pseudo-user VDCL until the call is routed; no queue time written yet.
        Phase::Queue => (agent, "QUEUE", waiting_term, 0.0, 0.0),
        // Routed: the agent's name while the status is still QUEUE; queue_seconds written.
        Phase::Ringing => (agent, "QUEUE", waiting_term, c.routed_queue_time, 0.0),
        Phase::InCall => (agent, "INCALL", "NONE", c.routed_queue_time, 0.0),
        // Hung up: the hang-up logger writes the term reason and the length; the agent then
        // chooses the disposition.
        Phase::HungUp => (
            agent,
            "INCALL",
            c.term_reason,
            c.routed_queue_time,
            c.call_duration,
        ),
        Phase::Dispo => (
            agent,
            "DISPO",
            c.term_reason,
            c.routed_queue_time,
            c.call_duration,
        ),
        Phase::Final => (
            agent,
            c.disposition,
            c.term_reason,
            c.queue_time,
            c.call_duration,
        ),
    }
}

/// The campaign summary, from the calls and handled calls of each campaign (the leads are
/// made up).
fn summary_rows(per_campaign: [(u64, u64); CAMPAIGNS.len()]) -> Vec<SummaryOut> {
    CAMPAIGNS
        .iter()
        .zip(per_campaign)
        .enumerate()
        .map(|(i, ((name, _, _), (calls, handled)))| {
            let leads = 1_000 + 250 * i as u64;
            let values = BTreeMap::from([
                ("total_leads", leads),
                ("dialable", leads.saturating_sub(handled)),
                ("pending", leads.saturating_sub(calls)),
                ("total_calls", calls),
                ("dialer", 0),
                ("dialed", calls),
                ("manual_calls", 0),
                ("handled_calls", handled),
                ("total_removed", 0),
                ("removed", 0),
                ("remove_all_period", 0),
            ]);
            SummaryOut {
                campaign_name: name,
                values,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{decode_whole, RowEntry};
    use crate::clock::ManualClock;
    use jiff::tz::TimeZone;

    fn sim() -> SimHandle {
        let clock = ManualClock::new("2025-05-29T15:10:00Z".parse().unwrap());
        SimHandle::new(Traffic::new(9, TimeZone::UTC), "u", "p", Arc::new(clock))
    }

    fn params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        [
            ("goAction", "inbound_cdr"),
            ("goUser", "u"),
            ("goPass", "p"),
            ("responsetype", "json"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn rows(body: &[u8]) -> Vec<crate::api::Row<'static>> {
        decode_whole(body)
            .unwrap()
            .0
            .into_iter()
            .filter_map(|r| match r {
                RowEntry::Row(r) => Some(r),
                RowEntry::NotAnObject => None,
            })
            .collect()
    }

    #[test]
    fn speaks_the_platforms_errors() {
        let s = sim();
        let mut bad = params(&[]);
        bad[2].1 = "wrong".into();
        assert_eq!(
            s.answer(&bad).1,
            br#"{"result":"error","message":"Invalid Username/Password"}"#
        );
        assert_eq!(
            s.answer(&params(&[])[1..]).1,
            br#"{"code":"40001","message":"Error: Missing required parameters"}"#
        );
        let mut xml = params(&[]);
        xml.pop();
        assert!(s
            .answer(&xml)
            .1
            .starts_with(b"result=error;message=This API function"));
        let mut other = params(&[]);
        other[0].1 = "outbound_cdr".into();
        assert_eq!(
            s.answer(&other).1,
            br#"{"result":"error","message":"Command Not Found"}"#
        );
    }

    #[test]
    fn honours_dates_and_filters_with_php_json() {
        let s = sim();
        let (status, body) = s.answer(&params(&[
            ("fromDate", "2025-05-29"),
            ("toDate", "2025-05-30"),
        ]));
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body).to_string();
        assert!(text.contains(r#""carrier":"SIP\/TRUNK"#), "slashes escaped");
        assert!(!text.contains("SIP/"));
        let all = rows(&body);
        assert!(all.len() > 100);
        assert!(all
            .iter()
            .all(|r| r.call_date.as_deref().unwrap_or("") >= "2025-05-29"));
        assert!(all
            .iter()
            .all(|r| r.call_date.as_deref().unwrap_or("") <= "2025-05-29 15:10:00"));
        // toDate as a bare string excludes that day itself.
        let (_, body) = s.answer(&params(&[
            ("fromDate", "2025-05-29"),
            ("toDate", "2025-05-29"),
        ]));
        assert_eq!(
            body,
            br#"{"result":"No records retrieved from: 2025-05-29 - 2025-05-29"}"#
        );
        // Tenant BBB has one campaign.
        let (_, body) = s.answer(&params(&[
            ("fromDate", "2025-05-29"),
            ("toDate", "2025-05-30"),
            ("tenant[]", "BBB"),
        ]));
        let bbb = rows(&body);
        assert!(!bbb.is_empty() && bbb.len() < all.len() / 2);
        assert!(bbb
            .iter()
            .all(|r| r.campaign.as_deref() == Some("LOANS_IN")));
        let (_, body) = s.answer(&params(&[
            ("fromDate", "2025-05-29"),
            ("toDate", "2025-05-30"),
            ("profile[]", "SALES"),
            ("profile[]", "LOANS"),
        ]));
        let two: std::collections::HashSet<String> = rows(&body)
            .iter()
            .filter_map(|r| r.campaign.as_deref().map(str::to_string))
            .collect();
        assert_eq!(two.len(), 2);
        // No dates: the last 24 hours.
        let (_, body) = s.answer(&params(&[]));
        assert!(rows(&body)
            .iter()
            .all(|r| r.call_date.as_deref().unwrap_or("") >= "2025-05-28 15:10:00"));
    }

    /// The columns a row shows at `t`: agent, disposition, term reason, queue time, duration.
    fn shown(c: &SimCall, t: WallSecs) -> (String, &'static str, &'static str, String, String) {
        let r = RowOut::new(c, c.phase(t));
        (
            r.agent,
            r.disposition,
            r.term_reason,
            r.queue_time,
            r.call_duration,
        )
    }

    fn text(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn rows_show_each_phase_as_the_platform_writes_it() {
        use traffic::{SYSTEM_AGENT, VIP_QUEUE};
        let s = sim();
        let day = wall_secs("2025-05-29T00:00".parse().unwrap());
        let calls = s.traffic().calls(day, day + 86_400, i64::MAX);
        let find = |what: &str, f: &dyn Fn(&SimCall) -> bool| {
            calls
                .iter()
                .find(|c| f(c))
                .unwrap_or_else(|| panic!("no {what}"))
                .clone()
        };
        let marker = |c: &SimCall| if c.none_marker { "NONE" } else { "" };
        let secs = |x: f64| format!("{x:.0}");
        let wait = |x: f64| format!("{x:.2}");

        // Answered, its whole life: VDCL in queue, the agent from the ringing on, INCALL, then
        // INCALL with the term reason and DISPO, then final.
        let c = find("answered leg", &|c| {
            c.fate == Fate::Answered
                && c.queue != VIP_QUEUE
                && c.disposition == "Answered"
                && c.term_reason == "CALLER"
                && c.rung_at.is_some_and(|r| r > c.call_date)
                && c.dispo_at > c.hung_up_at
        });
        let agent = c.agent_name().unwrap();
        let (q, d) = (wait(c.queue_time), secs(c.call_duration));
        assert_eq!(
            shown(&c, c.call_date),
            (
                text(SYSTEM_AGENT),
                "QUEUE",
                marker(&c),
                text("0.00"),
                text("0")
            )
        );
        let ringing = (agent.clone(), "QUEUE", marker(&c), q.clone(), text("0"));
        assert_eq!(shown(&c, c.rung_at.unwrap()), ringing);
        assert_eq!(shown(&c, c.answered_at - 1), ringing);
        let talking = (agent.clone(), "INCALL", "NONE", q.clone(), text("0"));
        assert_eq!(shown(&c, c.answered_at), talking);
        let hung_up = (agent.clone(), "INCALL", "CALLER", q.clone(), d.clone());
        assert_eq!(shown(&c, c.hung_up_at), hung_up);
        let dispo = (agent.clone(), "DISPO", "CALLER", q.clone(), d.clone());
        assert_eq!(shown(&c, c.dispo_at), dispo);
        assert_eq!(shown(&c, c.final_at - 1), dispo);
        let last = (agent.clone(), "Answered", "CALLER", q.clone(), d.clone());
        assert_eq!(shown(&c, c.final_at), last);
        // call_duration runs from queue entry: the wait and the ringing included.
        assert_eq!(
            c.call_duration,
            (c.hung_up_at - c.call_date) as f64,
            "{c:?}"
        );

        // A caller who hangs up while the agent's phone rings: DROP/CALLER, the agent named.
        let c = find("drop while ringing", &|c| {
            c.fate == Fate::Abandoned && c.rung_at.is_some() && c.term_reason == "CALLER"
        });
        let agent = c.agent_name().unwrap();
        assert_eq!(shown(&c, c.rung_at.unwrap()).0, agent);
        assert_eq!(shown(&c, c.rung_at.unwrap()).1, "QUEUE");
        let held = (wait(c.queue_time), secs(c.call_duration));
        assert_eq!(
            shown(&c, c.final_at),
            (agent, "DROP", "CALLER", held.0, held.1)
        );

        // A caller who hangs up in queue: DROP/ABANDON, VDCL.
        let c = find("drop in queue", &|c| {
            c.fate == Fate::Abandoned && c.rung_at.is_none() && c.queue != VIP_QUEUE
        });
        let end = shown(&c, c.final_at);
        assert_eq!(
            (end.0.as_str(), end.1, end.2),
            (SYSTEM_AGENT, "DROP", "ABANDON")
        );

        // After hours: written final at once, 1 s, no wait.
        let c = find("after hours", &|c| {
            c.disposition == "AFTHRS" && c.queue != VIP_QUEUE
        });
        assert_eq!(c.phase(c.call_date), Phase::Final);
        assert_eq!(
            shown(&c, c.call_date),
            (
                text(SYSTEM_AGENT),
                "AFTHRS",
                "AFTERHOURS",
                text("0.00"),
                text("1")
            )
        );

        // A queue timeout: VDCL.
        let c = find("timeout", &|c| {
            c.disposition == "TIMEOT" && c.queue != VIP_QUEUE
        });
        let end = shown(&c, c.final_at);
        assert_eq!((end.0.as_str(), end.2), (SYSTEM_AGENT, "QUEUETIMEOUT"));

        // The agent-direct queue names its agent on every row in every phase.
        for c in calls.iter().filter(|c| c.queue == VIP_QUEUE) {
            for t in [
                c.call_date,
                c.answered_at,
                c.hung_up_at,
                c.dispo_at,
                c.final_at,
            ] {
                assert_eq!(shown(c, t).0, "agent120", "{c:?}");
            }
        }

        // A missed hang-up: DISPO and the final row keep NONE.
        let c = find("missed hang-up", &|c| {
            c.fate == Fate::Answered && c.term_reason == "NONE" && c.disposition != "XFER"
        });
        assert_eq!(shown(&c, c.hung_up_at).1, "DISPO");
        assert_eq!(shown(&c, c.hung_up_at).2, "NONE");
        assert_eq!(shown(&c, c.final_at).2, "NONE");

        // A transfer: the first row ends XFER/AGENT; the second, same uniq1, starts in queue.
        let first = find("transfer", &|c| {
            c.disposition == "XFER" && c.term_reason == "AGENT"
        });
        assert_eq!(shown(&first, first.final_at).1, "XFER");
        let second = find("second leg", &|c| c.uniq1 == first.uniq1 && c.leg == 2);
        assert_eq!(second.call_date, first.hung_up_at);
        assert_eq!(shown(&second, second.call_date).1, "QUEUE");
    }

    /// The report, end to end: rows in progress and final as the platform shows them.
    #[test]
    fn the_report_shows_rows_in_progress_and_final_alike() {
        let s = sim();
        let (_, body) = s.answer(&params(&[
            ("fromDate", "2025-05-29"),
            ("toDate", "2025-05-30"),
        ]));
        let all = rows(&body);
        let f = |v: &Option<std::borrow::Cow<'static, str>>| v.as_deref().unwrap_or("").to_string();
        let seen: std::collections::HashSet<(String, String, bool)> = all
            .iter()
            .map(|r| {
                let agent = f(&r.agent);
                let named = agent.starts_with("agent");
                assert!(named || agent == "VDCL", "{r:?}");
                let (disposition, term) = (f(&r.disposition), f(&r.term_reason));
                // While queued the term reason is NONE or empty, row by row.
                let term = if disposition == "QUEUE" && term.is_empty() {
                    text("NONE")
                } else {
                    term
                };
                (disposition, term, named)
            })
            .collect();
        for (disposition, term, named) in [
            // In queue, ringing, talking, hung up, choosing the disposition.
            ("QUEUE", "NONE", false),
            ("QUEUE", "NONE", true),
            ("INCALL", "NONE", true),
            ("INCALL", "CALLER", true),
            ("DISPO", "CALLER", true),
            ("DROP", "ABANDON", false),
            ("DROP", "CALLER", true),
            ("TIMEOT", "QUEUETIMEOUT", false),
            ("AFTHRS", "AFTERHOURS", false),
            ("XFER", "AGENT", true),
            ("Answered", "NONE", true),
        ] {
            assert!(
                seen.contains(&(text(disposition), text(term), named)),
                "{disposition}/{term} named {named}"
            );
        }
        // The VIP agent's rows are VIP's only.
        let (_, body) = s.answer(&params(&[
            ("fromDate", "2025-05-29"),
            ("toDate", "2025-05-30"),
            ("user[]", "agent120"),
        ]));
        let vip = rows(&body);
        assert!(!vip.is_empty());
        assert!(vip.iter().all(|r| f(&r.queue) == "VIP"));
    }
}
