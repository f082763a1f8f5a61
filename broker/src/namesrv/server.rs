//! The name server on TCP: REGISTER_BROKER, UNREGISTER_BROKER,
//! GET_ROUTEINFO_BY_TOPIC, GET_BROKER_CLUSTER_INFO over the remoting
//! server; anything else is REQUEST_CODE_NOT_SUPPORTED. Brokers silent for
//! [`super::BROKER_EXPIRED_MS`] are dropped by a sweep every 10 s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mqlab_protocol::body::register::TopicConfigWrapper;
use mqlab_protocol::codes::{request, response};
use mqlab_protocol::headers::VERSION_V4_9_4;
use mqlab_protocol::{ExtFields, RemotingCommand};

use super::{Registration, RouteTable};
use crate::remoting::{Conn, Handler, RemotingServer, ServerConfig};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The name server's request handler over a shared [`RouteTable`].
#[derive(Debug, Default)]
pub struct NameServer {
    table: Mutex<RouteTable>,
}

impl NameServer {
    /// An empty name server.
    pub fn new() -> Self {
        NameServer::default()
    }

    /// Serves on `cfg.listen` until the returned server is shut down; a
    /// thread sweeps expired brokers every 10 s while it runs.
    pub fn serve(self: Arc<Self>, cfg: ServerConfig) -> std::io::Result<RemotingServer> {
        let server = RemotingServer::start(cfg, self.clone())?;
        let weak = Arc::downgrade(&self);
        std::thread::Builder::new()
            .name("mqlab-namesrv-expiry".into())
            .spawn(move || {
                // Ends once the name server is gone.
                while let Some(ns) = weak.upgrade() {
                    for addr in ns.table().expire(now_ms()) {
                        eprintln!("mqlab namesrv: broker {addr} expired (silent for 120 s)");
                    }
                    drop(ns);
                    std::thread::sleep(Duration::from_secs(10));
                }
            })?;
        Ok(server)
    }

    /// Registers a broker directly (an embedded name server learns its
    /// own broker without a round trip).
    pub fn register(&self, reg: &Registration) -> Option<(String, String)> {
        self.table().register(reg, now_ms())
    }

    fn table(&self) -> std::sync::MutexGuard<'_, RouteTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register_request(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let f = &req.ext_fields;
        let field = |k: &str| f.str_req(k).map(str::to_string).map_err(|e| e.to_string());
        let topics = if req.body.is_empty() {
            Vec::new()
        } else {
            TopicConfigWrapper::decode(&req.body)
                .map_err(|e| e.to_string())?
                .topics
                .into_values()
                .collect()
        };
        let reg = Registration {
            cluster: field("clusterName")?,
            broker_name: field("brokerName")?,
            broker_id: f.i64_req("brokerId").map_err(|e| e.to_string())?,
            broker_addr: field("brokerAddr")?,
            ha_addr: f.str_opt("haServerAddr").unwrap_or("").to_string(),
            topics,
        };
        let master = self.register(&reg);
        let mut resp = RemotingCommand::response_to(req, response::SUCCESS, None);
        if let Some((addr, ha)) = master {
            resp.ext_fields.insert("masterAddr".into(), addr);
            resp.ext_fields.insert("haServerAddr".into(), ha);
        }
        Ok(resp)
    }

    fn route(&self, req: &RemotingCommand) -> Result<RemotingCommand, String> {
        let topic = req.ext_fields.str_req("topic").map_err(|e| e.to_string())?;
        let standard = req.version >= VERSION_V4_9_4
            || req
                .ext_fields
                .bool_or_false("acceptStandardJsonOnly")
                .unwrap_or(false);
        Ok(match self.table().route(topic) {
            Some(r) => RemotingCommand::response_to(req, response::SUCCESS, None)
                .with_body(r.encode(standard)),
            None => RemotingCommand::response_to(
                req,
                response::TOPIC_NOT_EXIST,
                Some(format!(
                    "no route of topic {topic}: no live broker serves it"
                )),
            ),
        })
    }

    fn cluster_info(&self, req: &RemotingCommand) -> RemotingCommand {
        let clusters: serde_json::Map<String, serde_json::Value> = self
            .table()
            .clusters()
            .into_iter()
            .map(|(c, names)| {
                (
                    c,
                    serde_json::Value::from(names.into_iter().collect::<Vec<_>>()),
                )
            })
            .collect();
        let body = serde_json::json!({ "clusterAddrTable": clusters }).to_string();
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body.into_bytes())
    }
}

impl Handler for NameServer {
    fn handle(&self, req: RemotingCommand, _conn: &Conn) -> Option<RemotingCommand> {
        let result = match req.code {
            request::REGISTER_BROKER => self.register_request(&req),
            request::UNREGISTER_BROKER => match req.ext_fields.str_req("brokerAddr") {
                Ok(a) => {
                    self.table().unregister(a);
                    Ok(RemotingCommand::response_to(&req, response::SUCCESS, None))
                }
                Err(e) => Err(e.to_string()),
            },
            request::GET_ROUTEINFO_BY_TOPIC => self.route(&req),
            request::GET_BROKER_CLUSTER_INFO => Ok(self.cluster_info(&req)),
            code => Ok(RemotingCommand::response_to(
                &req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                Some(format!(
                    "request code {code} ({}) is not supported by the name server",
                    request::name(code)
                )),
            )),
        };
        Some(result.unwrap_or_else(|why| {
            RemotingCommand::response_to(&req, response::SYSTEM_ERROR, Some(why))
        }))
    }
}
