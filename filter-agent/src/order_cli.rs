//! `filter-agent order ...` and `filter-agent api token`: the client side of
//! the order API, and the tools an authority needs to sign orders.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::orders::wire;

#[derive(Subcommand)]
pub enum OrderCommand {
    /// Push an order (a signed-order JSON file: {"order": {...}, "signature": "..."}).
    Push {
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke a pushed order.
    Revoke {
        id: String,
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List orders with their state and counters.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One order with its enforcement status and counters.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Sign an order (a JSON file holding the order object) with an
    /// authority's key; prints the signed order to push.
    Sign {
        #[arg(long)]
        key: PathBuf,
        order: PathBuf,
    },
    /// Make an authority key pair: writes the private seed to FILE (mode
    /// 0600) and prints the public key for the agent's [[authority]].
    Keygen { out: PathBuf },
}

#[derive(Args)]
pub struct ApiArgs {
    /// The agent's API.
    #[arg(long, default_value = "https://127.0.0.1:9961")]
    api: String,
    /// File holding the bearer token (or set EDGEFILTER_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the agent's API certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
}

fn agent(api: &ApiArgs) -> Result<(ureq::Agent, String)> {
    let token = match &api.token_file {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?.trim().to_string(),
        None => std::env::var("EDGEFILTER_TOKEN").context("give --token-file or set EDGEFILTER_TOKEN")?,
    };
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(ca) = &api.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            bail!("{}: no certificate in it", ca.display());
        }
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
        config = config.tls_config(tls);
    }
    Ok((config.build().into(), format!("Bearer {token}")))
}

fn show(mut response: ureq::http::Response<ureq::Body>) -> Result<()> {
    let status = response.status();
    let body = response.body_mut().read_to_string()?;
    let pretty = serde_json::from_str::<Value>(&body).map(|v| serde_json::to_string_pretty(&v).unwrap_or(body.clone())).unwrap_or(body);
    println!("{pretty}");
    if !status.is_success() {
        bail!("the agent answered {status}");
    }
    Ok(())
}

/// An order id as one URL path segment (ids may contain `/` and `:`).
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub fn run(command: OrderCommand) -> Result<()> {
    match command {
        OrderCommand::Push { file, api } => {
            let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (agent, auth) = agent(&api)?;
            show(agent.post(format!("{}/v1/orders", api.api)).header("Authorization", &auth).content_type("application/json").send(&body[..])?)
        }
        OrderCommand::Revoke { id, reason, api } => {
            let (agent, auth) = agent(&api)?;
            let body = serde_json::json!({ "reason": reason }).to_string();
            show(agent.delete(format!("{}/v1/orders/{}", api.api, segment(&id))).header("Authorization", &auth).force_send_body().send(body.as_bytes())?)
        }
        OrderCommand::List { api } => {
            let (agent, auth) = agent(&api)?;
            show(agent.get(format!("{}/v1/orders", api.api)).header("Authorization", &auth).call()?)
        }
        OrderCommand::Show { id, api } => {
            let (agent, auth) = agent(&api)?;
            show(agent.get(format!("{}/v1/orders/{}", api.api, segment(&id))).header("Authorization", &auth).call()?)
        }
        OrderCommand::Sign { key, order } => {
            let key = wire::load_signing_key(&key)?;
            let text = std::fs::read_to_string(&order).with_context(|| format!("reading {}", order.display()))?;
            let order: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", order.display()))?;
            let signature = wire::sign(&order, &key);
            println!("{}", serde_json::to_string_pretty(&wire::SignedOrder { order, signature })?);
            Ok(())
        }
        OrderCommand::Keygen { out } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let (seed, public) = wire::generate_key()?;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&out).with_context(|| format!("creating {}", out.display()))?;
            writeln!(f, "{seed}")?;
            println!("private key written to {} (keep it with the authority)", out.display());
            println!("public key for the agent's config:\n[[authority]]\nname = \"<authority name>\"\npublic_key = \"{public}\"");
            Ok(())
        }
    }
}

/// A fresh random API token and the hash to put in the agent's config.
pub fn token() -> Result<()> {
    use sha2::{Digest, Sha256};
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).context("reading /dev/urandom")?;
    let token = hex::encode(bytes);
    println!("token (give it to the client; it is not stored): {token}");
    println!("token_sha256 = \"{}\"   # for [[api.client]]", hex::encode(Sha256::digest(token.as_bytes())));
    Ok(())
}
