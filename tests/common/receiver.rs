//! A remote-write receiver that answers as it is told, and keeps what it was sent: the requests'
//! headers and the sizes of their bodies once snappy-decompressed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use crocodial_exporter::http::{serve, Body};
use crocodial_exporter::web::WebConfig;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: hyper::HeaderMap,
    /// The body, snappy-decompressed (a protobuf `WriteRequest`); `None` if it was not snappy.
    pub protobuf: Option<Vec<u8>>,
}

/// A status, maybe a header, and a body.
type Answer = (u16, Option<(&'static str, &'static str)>, &'static str);

pub struct Receiver {
    pub url: String,
    /// Status, extra header and body of the next answers; once they run out, 204.
    answers: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    /// Listens on loopback, behind `web`'s TLS when given (the URL is then https://localhost).
    pub async fn start(web: Option<Arc<WebConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let scheme = if web.is_some() {
            "https://localhost"
        } else {
            "http://127.0.0.1"
        };
        let answers: Arc<Mutex<VecDeque<_>>> = Arc::default();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = CancellationToken::new();
        let (a, r) = (answers.clone(), received.clone());
        let handler = move |req: Request<hyper::body::Incoming>| {
            let (a, r) = (a.clone(), r.clone());
            async move {
                let headers = req.headers().clone();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let protobuf = snap::raw::Decoder::new().decompress_vec(&body).ok();
                r.lock().expect("lock").push(Received { headers, protobuf });
                let (status, header, text) = a
                    .lock()
                    .expect("lock")
                    .pop_front()
                    .unwrap_or((204, None, ""));
                let mut answer = Response::builder().status(status);
                if let Some((name, value)) = header {
                    answer = answer.header(name, value);
                }
                answer
                    .body(Body::new(Bytes::from_static(text.as_bytes())))
                    .expect("response")
            }
        };
        tokio::spawn(serve(
            listener,
            handler,
            stop.clone().cancelled_owned(),
            web,
            16,
        ));
        Receiver {
            url: format!("{scheme}:{port}/api/v1/write"),
            answers,
            received,
            stop,
        }
    }

    /// The next answer: a status, maybe a header, a body.
    pub fn answer(
        &self,
        status: u16,
        header: Option<(&'static str, &'static str)>,
        body: &'static str,
    ) {
        self.answers
            .lock()
            .expect("lock")
            .push_back((status, header, body));
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}
