//! Each command, written once against [`Backend`]: arguments checked first (nothing is opened or
//! sent for a payload that is not JSON), then the backend opened, then the calls; the text for
//! stdout is returned.

use serde_json::{json, Value};

use crate::backend::{Backend, DiagramFormat, ListQuery, Rerun, Target};
use crate::cli::{Cli, Command, ListArgs, ScheduleCommand};
use crate::error::CliError;
use crate::model::Page;
use crate::output;

/// The environment variables that choose a backend when no option does.
const DATABASE_ENV: &str = "WORKFLOW_DATABASE_URL";
const HTTP_ENV: &str = "WORKFLOW_HTTP";

/// The backend the options (first) or the environment choose.
fn target(cli: &Cli) -> Result<Target, CliError> {
    match (&cli.database_url, &cli.http) {
        (Some(url), None) => return Ok(Target::Database(url.clone())),
        (None, Some(url)) => return Ok(Target::Http(url.clone())),
        (Some(_), Some(_)) => return Err(CliError::usage("give one of --database-url and --http, not both")),
        (None, None) => {}
    }
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    match (env(DATABASE_ENV), env(HTTP_ENV)) {
        (Some(url), None) => Ok(Target::Database(url)),
        (None, Some(url)) => Ok(Target::Http(url)),
        (Some(_), Some(_)) => Err(CliError::usage(format!(
            "both {DATABASE_ENV} and {HTTP_ENV} are set: choose one with --database-url or --http"
        ))),
        (None, None) => Err(CliError::usage(format!(
            "no backend: give --database-url URL or --http URL (or set {DATABASE_ENV} or {HTTP_ENV})"
        ))),
    }
}

/// A JSON argument checked locally (`-` reads it from stdin), as text to send.
fn json_argument(text: &str, what: &str) -> Result<String, CliError> {
    let text = if text == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|error| CliError::usage(format!("cannot read {what} from stdin: {error}")))?
    } else {
        text.to_owned()
    };
    let text = text.trim().to_owned();
    serde_json::from_str::<Value>(&text)
        .map_err(|error| CliError::usage(format!("{what} is not valid JSON ({error}); nothing was sent")))?;
    Ok(text)
}

/// A finished action, for people and for `--json`.
fn done(json_output: bool, said: String, json: Value) -> String {
    if json_output {
        output::json(&json)
    } else {
        format!("{said}\n")
    }
}

/// Runs the command; what to print on stdout.
pub(crate) async fn run(cli: Cli) -> Result<String, CliError> {
    let target = target(&cli)?;
    let as_json = cli.json;
    // The JSON arguments are checked before anything is opened or sent.
    let (payload, rerun_input) = match &cli.command {
        Command::Raise { payload, .. } => (Some(json_argument(payload, "the payload")?), None),
        Command::Rerun { input: Some(input), .. } => (None, Some(json_argument(input, "the input")?)),
        _ => (None, None),
    };
    let backend = Backend::open(&target).await?;
    match cli.command {
        Command::List(args) => list(&backend, &args, as_json).await,
        Command::Show { id, no_diagram, mermaid } => {
            let diagram = match (no_diagram, mermaid || as_json) {
                (true, _) => None,
                (false, true) => Some(DiagramFormat::Mermaid),
                (false, false) => Some(DiagramFormat::Text),
            };
            show(&backend, &id, diagram, as_json).await
        }
        Command::Terminate { id, reason, non_recursive } => {
            backend.terminate(&id, reason.as_deref(), !non_recursive).await?;
            Ok(done(as_json, format!("terminated {id}"), json!({ "instanceID": id, "action": "terminate" })))
        }
        Command::Suspend { id, reason } => {
            backend.suspend(&id, reason.as_deref()).await?;
            Ok(done(as_json, format!("suspended {id}"), json!({ "instanceID": id, "action": "suspend" })))
        }
        Command::Resume { id, reason } => {
            backend.resume(&id, reason.as_deref()).await?;
            Ok(done(as_json, format!("resumed {id}"), json!({ "instanceID": id, "action": "resume" })))
        }
        Command::Raise { id, event, .. } => {
            let payload = payload.unwrap_or_else(|| "null".to_owned());
            backend.raise(&id, &event, &payload).await?;
            let json = json!({ "instanceID": id, "action": "raise", "event": event });
            Ok(done(as_json, format!("raised {event} on {id}"), json))
        }
        Command::Purge { id, non_recursive } => {
            backend.purge(&id, !non_recursive).await?;
            Ok(done(as_json, format!("purged {id}"), json!({ "instanceID": id, "action": "purge" })))
        }
        Command::Rerun { id, from_step, new_id, .. } => {
            let rerun = Rerun { source: &id, from_step, input: rerun_input.as_deref(), new_id: new_id.as_deref() };
            let started = backend.rerun(&rerun).await?;
            let json = json!({ "instanceID": started, "sourceInstanceID": id, "action": "rerun" });
            Ok(done(as_json, started.clone(), json))
        }
        Command::Queues => {
            let queues = backend.queues().await?;
            if as_json {
                let all: Vec<Value> = queues.into_iter().map(|queue| queue.json).collect();
                return Ok(output::json(&Value::Array(all)));
            }
            Ok(output::queues(&queues))
        }
        Command::Schedules { action } => schedules(&backend, action.unwrap_or(ScheduleCommand::List), as_json).await,
    }
}

async fn list(backend: &Backend, args: &ListArgs, as_json: bool) -> Result<String, CliError> {
    let mut query = ListQuery {
        statuses: args.status.clone(),
        workflow: args.workflow.clone(),
        parent: args.parent.clone(),
        created_after: args.created_after,
        created_before: args.created_before,
        page_size: usize::try_from(args.limit).unwrap_or(1000),
        page_token: args.page_token.clone(),
        payloads: args.payloads,
        newest_first: args.newest,
    };
    let mut page = backend.list(&query).await?;
    if args.all {
        while let Some(token) = page.continuation.take() {
            query.page_token = Some(token);
            let next = backend.list(&query).await?;
            page = Page { instances: [page.instances, next.instances].concat(), continuation: next.continuation };
        }
    }
    if as_json {
        let instances: Vec<Value> = page.instances.iter().map(|instance| instance.json.clone()).collect();
        return Ok(output::json(&json!({ "instances": instances, "continuationToken": page.continuation })));
    }
    let mut text = output::instances(&page.instances);
    if let Some(token) = page.continuation {
        text.push_str(&format!("more: --page-token {token}\n"));
    }
    Ok(text)
}

async fn show(backend: &Backend, id: &str, diagram: Option<DiagramFormat>, as_json: bool) -> Result<String, CliError> {
    let instance = backend.status(id).await?;
    let history = backend.history(id).await?;
    let diagram = match diagram {
        Some(format) => Some((format, backend.diagram(id, format).await?)),
        None => None,
    };
    if as_json {
        let history = history.map(|items| items.into_iter().map(|item| item.json).collect::<Vec<_>>());
        let diagram = diagram.map(|(_, text)| text);
        return Ok(output::json(&json!({ "status": instance.json, "history": history, "diagram": diagram })));
    }
    let mut text = output::instance(&instance);
    match &history {
        Some(items) => {
            text.push_str("\nHistory:\n");
            text.push_str(&output::history(items));
        }
        None => text.push_str("\nHistory: not available (the router has no history route)\n"),
    }
    if let Some((format, diagram)) = diagram {
        text.push_str(match format {
            DiagramFormat::Mermaid => "\nDiagram (Mermaid):\n",
            DiagramFormat::Text => "\nDiagram:\n",
        });
        text.push_str(diagram.trim_end());
        text.push('\n');
    }
    Ok(text)
}

async fn schedules(backend: &Backend, command: ScheduleCommand, as_json: bool) -> Result<String, CliError> {
    let acted = |id: String, action: &str, said: &str| {
        done(as_json, format!("{said} schedule {id}"), json!({ "scheduleID": id, "action": action }))
    };
    match command {
        ScheduleCommand::List => {
            let schedules = backend.schedules().await?;
            if as_json {
                let all: Vec<Value> = schedules.into_iter().map(|schedule| schedule.json).collect();
                return Ok(output::json(&Value::Array(all)));
            }
            Ok(output::schedules(&schedules))
        }
        ScheduleCommand::Show { id } => {
            let schedule = backend.schedule(&id).await?;
            Ok(if as_json { output::json(&schedule.json) } else { output::schedule(&schedule) })
        }
        ScheduleCommand::Pause { id } => {
            backend.pause_schedule(&id).await?;
            Ok(acted(id, "pause", "paused"))
        }
        ScheduleCommand::Resume { id } => {
            backend.resume_schedule(&id).await?;
            Ok(acted(id, "resume", "resumed"))
        }
        ScheduleCommand::Trigger { id } => {
            let started = backend.trigger_schedule(&id).await?;
            let json = json!({ "scheduleID": id, "action": "trigger", "instanceID": started });
            Ok(done(as_json, started.clone(), json))
        }
        ScheduleCommand::Delete { id } => {
            backend.delete_schedule(&id).await?;
            Ok(acted(id, "delete", "deleted"))
        }
    }
}
