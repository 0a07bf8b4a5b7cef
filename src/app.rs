//! TEMPORARY STUB on branch `api`: the app builder, with the agreed signatures. Replaced by
//! the real module on merge.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::config::Settings;
use crate::store::Store;
use crate::tailnet::Tailnet;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub tailnet: Arc<Tailnet>,
    pub metrics: prometheus::Registry,
    pub rate_limits: crate::api::ratelimit::RateLimits,
}

pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub handle: actix_server::ServerHandle,
}

pub async fn start(settings: Settings) -> anyhow::Result<RunningApp> {
    let store = Store::connect(settings.database_url.expose()).await?;
    store.migrate().await?;
    let state = Arc::new(AppState {
        rate_limits: crate::api::ratelimit::RateLimits::new(settings.rate_limit),
        settings: Arc::new(settings),
        store,
        tailnet: Arc::new(Tailnet::default()),
        metrics: prometheus::Registry::new(),
    });
    let data = web::Data::from(state.clone());
    let listener = std::net::TcpListener::bind(state.settings.listen_addr)?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(crate::api::configure))
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(RunningApp { addr, state, handle })
}
