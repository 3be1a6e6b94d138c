//! `moat connections key|list|revoke`: the operator's view of callers'
//! upstream credentials. Secrets are never printed.

use super::ConnectionsCommand;
use crate::capabilities::identity::LOCAL_ISSUER;
use crate::config::Config;
use crate::credentials::store::{Owner, Store};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs one `moat connections` command.
pub(super) async fn run(command: ConnectionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectionsCommand::Key => {
            println!("{}", crate::credentials::store::new_key());
            Ok(ExitCode::SUCCESS)
        }
        ConnectionsCommand::List { config } => {
            let config = Config::load(&config)?;
            list(&*store(&config)?)
        }
        ConnectionsCommand::Revoke {
            config,
            tenant,
            subject,
            local,
            connection,
        } => {
            let config = Config::load(&config)?;
            let store = store(&config)?;
            let Some(endpoint) = config.endpoint(tenant.as_deref()) else {
                anyhow::bail!(
                    "the config has no {}",
                    tenant.map_or("top-level endpoint".into(), |t| format!("tenant `{t}`"))
                );
            };
            // Over stdio the one local user owns credentials; over HTTP a
            // token's subject at the endpoint's issuer does.
            let (issuer, subject) = match (local, endpoint.auth, subject) {
                (true, _, _) => (LOCAL_ISSUER.to_string(), "local".to_string()),
                (false, Some(auth), Some(subject)) => (auth.token.issuer.clone(), subject),
                (false, None, _) => anyhow::bail!(
                    "that endpoint has no [auth]: only its local user (--local, over stdio) has credentials"
                ),
                (false, Some(_), None) => anyhow::bail!("name the caller with --subject"),
            };
            let names: Vec<&String> = match &connection {
                Some(name) if config.connections.contains_key(name) => vec![name],
                Some(name) => anyhow::bail!("connection `{name}` is not declared"),
                None => config.connections.keys().collect(),
            };
            let mut removed = 0;
            for name in names {
                let owner = Owner {
                    tenant: tenant.clone(),
                    issuer: issuer.clone(),
                    subject: subject.clone(),
                    connection: name.clone(),
                };
                let connection = config.connections.get(name).map(|c| &**c);
                // The provider is asked to revoke the tokens too.
                if crate::credentials::revoke(&store, connection, &owner, false).await? {
                    println!("revoked: {name} of {subject}");
                    removed += 1;
                }
            }
            if removed == 0 {
                println!("nothing to revoke: {subject} has no such credential");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn store(config: &Config) -> anyhow::Result<Arc<Store>> {
    config
        .credentials
        .as_ref()
        .map(|c| c.store.clone())
        .ok_or_else(|| anyhow::anyhow!("the config has no [credentials]: no credentials are kept"))
}

/// One line per credential: whose, for what, since and until when.
fn list(store: &Store) -> anyhow::Result<ExitCode> {
    let mut unreadable = false;
    for entry in store.list()? {
        match entry {
            // Subjects are the token issuer's words: shown escaped, so
            // that none can fake a row or move the terminal's cursor.
            Ok((owner, credential)) => println!(
                "{}\t{}\t{}\tstored {}\t{}",
                owner.tenant.as_deref().unwrap_or("-"),
                owner.subject.escape_debug(),
                owner.connection,
                time(credential.stored_at),
                match credential.expires_at {
                    Some(at) if credential.expired() => format!("expired {}", time(at)),
                    Some(at) => format!("expires {}", time(at)),
                    None => "does not expire".into(),
                }
            ),
            Err(why) => {
                eprintln!("unreadable: {why}");
                unreadable = true;
            }
        }
    }
    Ok(match unreadable {
        true => ExitCode::from(1),
        false => ExitCode::SUCCESS,
    })
}

fn time(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(seconds as i64, 0)
        .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}
