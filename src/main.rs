//! The `tenscale` command: `serve`, `migrate`, and the organization / API key admin commands
//! that work on the same database while the server runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use tenscale::config::Settings;
use tenscale::domain::BrowserKeySettings;
use tenscale::domain::OrgId;
use tenscale::domain::OrgName;
use tenscale::state::store::audit::AuditLine;
use tenscale::state::store::{ApiKey, Organization, Store};
use tenscale::state::{Actor, Audit, Bus, Describe, Writer};

#[derive(Parser)]
#[command(name = "tenscale", version, about = "Multi-tenant, Tailscale-compatible coordination server")]
struct Cli {
    /// TOML configuration file; TENSCALE_* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage an organization's API keys.
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// An organization's browser-key settings (what `GET`/`PUT /v1/settings/browser-keys` do).
    BrowserKeys {
        #[command(subcommand)]
        command: BrowserKeysCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum BrowserKeysCommand {
    /// Print the settings (never the secrets).
    Show {
        #[arg(long)]
        org: String,
    },
    /// Replace the settings with a JSON document shaped like the PUT body (`-` reads stdin).
    Set {
        #[arg(long)]
        org: String,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization and its first API key (shown only this once).
    Create { name: String },
    /// List organizations.
    List,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key (shown only this once).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List an organization's API keys (never the secrets).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke an API key.
    Revoke {
        #[arg(long)]
        org: String,
        id: tenscale::domain::ApiKeyId,
    },
}

fn main() -> anyhow::Result<()> {
    tenscale::telemetry::init();
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    let system = actix_rt::System::new();
    system.block_on(run(cli.command.unwrap_or(Command::Serve), settings))
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Openapi => {
            println!("{}", tenscale::api::openapi_json());
            Ok(())
        }
        Command::Migrate => {
            open_store(&settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Org { command } => org(command, &open_store(&settings).await?).await,
        Command::Apikey { command } => apikey(command, &open_store(&settings).await?).await,
        Command::BrowserKeys { command } => browser_keys(command, &settings, &open_store(&settings).await?).await,
    }
}

/// The store, behind the one writer. The CLI's changes carry no events (organizations, API
/// keys, browser-key settings), so a local bus is enough.
async fn open_store(settings: &Settings) -> anyhow::Result<Writer> {
    let store = Store::connect(settings.database_url.expose()).await.context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(Writer::new(store, Bus::local()))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before the listener answers anything: a SIGTERM that arrives once it does is a drain.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let app = tenscale::app::start(settings).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    app.drain().await;
    Ok(())
}

async fn org(command: OrgCommand, writer: &Writer) -> anyhow::Result<()> {
    let store = writer.store();
    match command {
        OrgCommand::Create { name } => {
            let name = OrgName::parse(&name)?;
            let describe = |org: &Organization| cli_line("org.create", "organization", org.id);
            let org = writer.create_org(&name, Some((&Actor::Cli, &describe))).await?;
            let key_created = |key: &ApiKey| cli_line("api_key.create", "api_key", key.id);
            let (key, secret) = writer
                .create_api_key(org.id, "created with the organization", Some(&by_cli(org.id, &key_created)))
                .await?;
            let out = json!({
                "org": {"id": org.id, "name": org.name, "created_at": org.created_at},
                "api_key": secret,
                "api_key_id": key.id,
            });
            println!("{out}");
        }
        OrgCommand::List => {
            let orgs: Vec<_> = store
                .list_orgs()
                .await?
                .into_iter()
                .map(|o| json!({"id": o.id, "name": o.name, "created_at": o.created_at}))
                .collect();
            println!("{}", json!({ "orgs": orgs }));
        }
    }
    Ok(())
}

async fn browser_keys(command: BrowserKeysCommand, settings: &Settings, writer: &Writer) -> anyhow::Result<()> {
    let store = writer.store();
    use tenscale::api::browser_keys::settings::{BrowserKeyConfig, BrowserKeySettingsBody};
    let secrets = tenscale::secrets::SecretsKey::load(
        settings.secrets_key.as_ref().map(|k| k.expose()),
        settings.database_url.expose(),
    )?;
    match command {
        BrowserKeysCommand::Show { org } => {
            let org = store.org_by_name(&org).await?;
            let row = store
                .browser_key_settings(org.id)
                .await?
                .with_context(|| format!("browser keys are not configured for {}", org.name))?;
            let config = BrowserKeyConfig::from_row(&row, &secrets)?;
            println!("{}", serde_json::to_string(&config.view(row.updated_at))?);
        }
        BrowserKeysCommand::Set { org, file } => {
            let org = store.org_by_name(&org).await?;
            let text = match file.to_str() {
                Some("-") => std::io::read_to_string(std::io::stdin())?,
                _ => std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
            };
            let body: BrowserKeySettingsBody = serde_json::from_str(&text).context("the settings document")?;
            let config = BrowserKeyConfig::from_body(body)?;
            let describe = |_: &BrowserKeySettings| cli_line("browser_keys.settings", "organization", org.id);
            let audit = by_cli(org.id, &describe);
            let saved = writer.put_browser_key_settings(org.id, config.to_row(&secrets)?, Some(&audit)).await?;
            println!("{}", serde_json::to_string(&config.view(saved.updated_at))?);
        }
    }
    Ok(())
}

async fn apikey(command: ApiKeyCommand, writer: &Writer) -> anyhow::Result<()> {
    let store = writer.store();
    match command {
        ApiKeyCommand::Create { org, description } => {
            let org = store.org_by_name(&org).await?;
            let describe = |key: &ApiKey| cli_line("api_key.create", "api_key", key.id);
            let (key, secret) = writer.create_api_key(org.id, &description, Some(&by_cli(org.id, &describe))).await?;
            println!("{}", json!({"id": key.id, "prefix": key.prefix, "api_key": secret}));
        }
        ApiKeyCommand::List { org } => {
            let org = store.org_by_name(&org).await?;
            let keys: Vec<_> = store
                .list_api_keys(org.id)
                .await?
                .into_iter()
                .map(|k| {
                    json!({"id": k.id, "prefix": k.prefix, "description": k.description,
                                "created_at": k.created_at, "revoked_at": k.revoked_at, "expires_at": k.expires_at})
                })
                .collect();
            println!("{}", json!({ "api_keys": keys }));
        }
        ApiKeyCommand::Revoke { org, id } => {
            let org = store.org_by_name(&org).await?;
            let describe = |key: &ApiKey| cli_line("api_key.revoke", "api_key", key.id);
            let key = writer.revoke_api_key(org.id, id, Some(&by_cli(org.id, &describe))).await?;
            println!("{}", json!({"id": key.id, "revoked_at": key.revoked_at}));
        }
    }
    Ok(())
}

/// A change made from the command line, in organization `org_id`.
fn by_cli<'a, T>(org_id: OrgId, describe: Describe<'a, T>) -> Audit<'a, T> {
    Audit { org_id, by: Actor::Cli, describe }
}

fn cli_line(action: &'static str, object_type: &'static str, id: impl ToString) -> AuditLine {
    AuditLine { action, object_type, object_id: id.to_string(), detail: json!({}) }
}
