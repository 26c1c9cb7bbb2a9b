//! Schedules: a digest every two seconds declared on the runtime builder, a reminder every three
//! seconds created through the client, and a delayed start. Each tick starts one instance (its
//! id is the schedule's and the tick's, so no tick runs twice, however many processes share the
//! database); then the reminder is described, paused, triggered by hand and deleted.
//!
//! Run: `cargo run --example schedules` (SQLite file in a temporary directory, no set-up).

use std::sync::OnceLock;
use std::time::Instant;

use workflow::prelude::*;
use workflow::Schedule;

/// Milliseconds since the example started.
fn at() -> u128 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis()
}

#[activity]
async fn send(ctx: ActivityContext, what: String) -> Result<(), ActivityError> {
    println!("  {:>5} ms  {what} ({})", at(), ctx.instance_id());
    Ok(())
}

#[workflow]
async fn digest(ctx: WorkflowContext, team: String) -> Result<(), WorkflowError> {
    send::call(&ctx, format!("digest for {team}")).await
}

#[workflow]
async fn reminder(ctx: WorkflowContext, note: String) -> Result<(), WorkflowError> {
    send::call(&ctx, format!("reminder: {note}")).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("workflow-schedules-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    at();
    let runtime = Runtime::builder()
        .store(SqliteStore::open(&url).await?)
        .workflow(digest::Workflow)
        .workflow(reminder::Workflow)
        .activity(send::Activity)
        .poll_interval(Duration::from_millis(100))
        // Declared in code: written when the runtime starts (every process may declare it).
        .schedule(Schedule::of::<digest::Workflow>("ops-digest", "*/2 * * * * *", &"ops".to_owned()))
        .build()
        .await?;
    let client = runtime.client();

    // Managed at run time: in a time zone, at most one run at a time (the default).
    let stretch = Schedule::of::<reminder::Workflow>("stretch", "*/3 * * * * *", &"stand up and stretch".to_owned())
        .time_zone("Europe/Paris");
    client.create_schedule(stretch).await?;
    // A delayed start: Pending now, run in 4 s.
    reminder::start(&client, "delayed by four seconds".to_owned()).delay(Duration::from_secs(4)).await?;

    println!("ticks for 7 seconds:");
    tokio::time::sleep(Duration::from_secs(7)).await;

    let stretch = client.schedule("stretch").await?;
    println!(
        "stretch: every 3 s in {}, next at {:?}",
        stretch.time_zone,
        stretch.next_runs.first().map(|t| workflow::rfc3339(*t))
    );
    for run in &stretch.recent_runs {
        println!("  ran {} as {}", workflow::rfc3339(run.tick), run.instance_id.as_deref().unwrap_or("-"));
    }
    client.pause_schedule("stretch").await?;
    let by_hand = client.trigger_schedule("stretch").await?;
    Handle::<()>::new(client.clone(), by_hand.as_str()).result().await?;
    client.delete_schedule("stretch").await?;
    println!("paused, triggered once by hand ({by_hand}) and deleted; the digest goes on");

    runtime.shutdown(Duration::from_secs(5)).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
