//! `filter-agent run`: the daemon loop.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use filter_common::rules::{RuleSet, Settings};

use crate::dataplane::{AttachMode, Capacity, Dataplane};
use crate::report;

pub struct RunOptions {
    pub interfaces: Vec<String>,
    pub rules: PathBuf,
    pub mode: AttachMode,
    pub settings: Settings,
    pub metrics: SocketAddr,
    pub capacity: Capacity,
}

struct Shared {
    dataplane: Dataplane,
    rules: RuleSet,
}

type AppState = Arc<Mutex<Shared>>;

pub fn run(opts: RunOptions) -> Result<()> {
    let now = chrono::Utc::now();
    // Validate before touching the kernel: a bad rule set changes nothing.
    let (_orders, rules) = crate::ruleload::ruleset(&opts.rules, opts.settings.clone(), now)?;
    let mut dataplane = Dataplane::load(opts.capacity)?;
    let generation = dataplane.apply_rules(&rules)?;
    eprintln!(
        "loaded {} prefix rules and {} L4 rule slots from {} (generation {generation})",
        rules.prefixes.len(),
        rules.l4.len(),
        opts.rules.display()
    );
    for iface in &opts.interfaces {
        let mode = dataplane.attach(iface, opts.mode)?;
        eprintln!("attached to {iface} ({mode} mode)");
    }
    let state: AppState = Arc::new(Mutex::new(Shared { dataplane, rules }));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/status", get(status_text))
            .route("/status.json", get(status_json))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(opts.metrics)
            .await
            .with_context(|| format!("binding the metrics address {}", opts.metrics))?;
        eprintln!("metrics on http://{}/metrics, status on http://{}/status", opts.metrics, opts.metrics);
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        eprintln!("stopping: detaching from {}", opts.interfaces.join(", "));
        Ok::<_, anyhow::Error>(())
    })
    // Dropping the dataplane detaches the program and frees the maps.
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn snapshot(state: &AppState) -> Result<report::Snapshot> {
    let shared = state.lock().expect("state lock");
    report::snapshot(&shared.dataplane, &shared.rules)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match snapshot(&state).and_then(|s| report::render_metrics(&s)) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

async fn status_text(State(state): State<AppState>) -> impl IntoResponse {
    match snapshot(&state) {
        Ok(s) => report::render_status(&s).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

async fn status_json(State(state): State<AppState>) -> impl IntoResponse {
    match snapshot(&state) {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}
