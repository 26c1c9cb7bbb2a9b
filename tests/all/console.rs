//! The console in a real browser: headless Chromium driven through chromedriver (WebDriver).
//! It opens the list, filters it, opens an instance and its rendered diagram, terminates one,
//! raises an event that completes a waiting one, shows an XSS payload as text, and offers no
//! action when read-only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{json, Value};
use workflow::http::RouterOptions;
use workflow::prelude::*;
use workflow::ListFilter;

use crate::support::{wait_for_value, wait_until};

#[workflow]
async fn console_approval(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    ctx.set_custom_status(&"waiting for approval");
    let approved: bool = ctx.wait_for_event("approve").await?;
    Ok(format!("{order}: {}", if approved { "approved" } else { "rejected" }))
}

#[activity]
async fn console_echo(_ctx: ActivityContext, text: String) -> Result<String, ActivityError> {
    Ok(text)
}

#[workflow]
async fn console_echoes(ctx: WorkflowContext, text: String) -> Result<String, WorkflowError> {
    console_echo::call(&ctx, text).await
}

/// chromedriver's path; `None` (said loudly) where it is missing, but a failure under CI, which
/// installs it (.ci/run).
fn chromedriver() -> Option<PathBuf> {
    let test = std::thread::current().name().unwrap_or("a browser test").to_owned();
    let found =
        ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].into_iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_some() {
        return found;
    }
    let in_ci = std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "0" && ci != "false");
    assert!(
        !in_ci,
        "{test}: chromedriver is missing, and CI is set: install chromium and chromium-driver (.ci/run does)"
    );
    eprintln!("SKIPPED: {test}: chromedriver is missing (apt-get install chromium chromium-driver)");
    None
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    process: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn start_driver(path: PathBuf) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until("chromedriver to answer", || async {
        let status = http.get(format!("{url}/status")).send().await;
        match status {
            Ok(response) => response.json::<Value>().await.is_ok_and(|body| body["value"]["ready"] == true),
            Err(_) => false,
        }
    })
    .await;
    Driver { process, url }
}

async fn open_browser(driver: &Driver) -> Browser {
    let mut capabilities = serde_json::Map::new();
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    capabilities.insert("goog:chromeOptions".to_owned(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// The console of a runtime on a memory store, mounted at `/ops`; returns its URL and runtime.
async fn serve_console(options: RouterOptions) -> (String, Runtime, tokio::task::JoinHandle<()>) {
    let runtime = Runtime::builder()
        .store(MemoryStore::new())
        .workflow(console_approval::Workflow)
        .workflow(console_echoes::Workflow)
        .activity(console_echo::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let app = axum::Router::new().nest("/ops", workflow::http::console_with(runtime.client(), options));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ops", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, runtime, task)
}

/// The text of the first element `css` finds, once there is one.
async fn text_of(browser: &Browser, css: &str) -> String {
    wait_for_value(&format!("an element {css}"), || async {
        match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        }
    })
    .await
}

/// Waits until the first element `css` finds has text `wanted`.
async fn wait_for_text(browser: &Browser, css: &str, wanted: &str) {
    wait_until(&format!("{css} to read {wanted:?}"), || async {
        match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.is_ok_and(|text| text == wanted),
            Err(_) => false,
        }
    })
    .await;
}

/// Clicks the first element `css` finds, once there is one. The page re-renders as what it
/// shows changes, so an element found may be gone by the click (a stale reference): then it is
/// found again, until the deadline.
async fn click(browser: &Browser, css: &str) {
    wait_until(&format!("{css} to click"), || async {
        match browser.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => true,
                Err(error) if error.to_string().contains("stale element") => false,
                Err(error) => panic!("clicking {css}: {error}"),
            },
            Err(_) => false,
        }
    })
    .await;
}

async fn type_into(browser: &Browser, css: &str, text: &str) {
    let element = browser.find(Locator::Css(css)).await.unwrap_or_else(|error| panic!("{css}: {error}"));
    element.clear().await.unwrap();
    element.send_keys(text).await.unwrap();
}

/// The instance ids the list shows, in order.
async fn listed(browser: &Browser) -> Vec<String> {
    let script = "return [...document.querySelectorAll('tr[data-instance]')].map(row => row.dataset.instance)";
    let ids = browser.execute(script, vec![]).await.unwrap();
    ids.as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_console_in_a_real_browser() {
    let Some(path) = chromedriver() else { return };
    let driver = start_driver(path).await;
    let (url, runtime, _server) = serve_console(RouterOptions::default()).await;
    let client = runtime.client();
    let xss = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">";
    console_echoes::start(&client, "first".to_owned()).id("done-1").await.unwrap();
    client.wait_for_completion("done-1", Some(Duration::from_secs(20))).await.unwrap();
    console_approval::start(&client, "lamp".to_owned()).id("wait-1").await.unwrap();
    console_approval::start(&client, "desk".to_owned()).id("doomed-1").await.unwrap();
    console_echoes::start(&client, xss.to_owned()).id("xss-1").await.unwrap();
    client.wait_for_completion("xss-1", Some(Duration::from_secs(20))).await.unwrap();
    for id in ["wait-1", "doomed-1"] {
        wait_until(&format!("{id} to wait for its event"), || async {
            client.status(id).await.unwrap().custom_status.is_some()
        })
        .await;
    }

    let browser = open_browser(&driver).await;
    // The list, newest first, with counts per status.
    browser.goto(&url).await.unwrap();
    wait_until("the list to show all four", || async { listed(&browser).await.len() == 4 }).await;
    // Newest first, as the store lists them (two started in one millisecond sort by id).
    let filter = ListFilter { newest_first: true, ..ListFilter::default() };
    let page = client.list(&filter, 10, None).await.unwrap();
    let newest: Vec<String> = page.instances.iter().map(|status| status.instance_id.clone()).collect();
    assert_eq!(listed(&browser).await, newest);
    assert_eq!((newest[0].as_str(), newest[3].as_str()), ("xss-1", "done-1"));
    wait_for_text(&browser, "[data-count=RUNNING] b", "2").await;
    wait_for_text(&browser, "[data-count=COMPLETED] b", "2").await;

    // Filtered by status: the choice goes into the address and the list follows it.
    click(&browser, "#filter-status option[value=COMPLETED]").await;
    wait_until("the list to show the completed ones", || async { listed(&browser).await == ["xss-1", "done-1"] }).await;
    assert!(browser.current_url().await.unwrap().as_str().contains("status=COMPLETED"));
    click(&browser, "[data-count=COMPLETED]").await; // clears the filter again
    wait_until("the whole list again", || async { listed(&browser).await.len() == 4 }).await;

    // An instance: its status, its diagram drawn as a picture, its history.
    click(&browser, "tr[data-instance=wait-1] a").await;
    wait_for_text(&browser, "#instance-status", "RUNNING").await;
    let loaded = "const img = document.getElementById('diagram'); return !!img && img.complete && img.naturalWidth > 0";
    wait_until("the diagram to load", || async { browser.execute(loaded, vec![]).await.unwrap() == json!(true) }).await;
    assert!(text_of(&browser, "#payload-custom-status").await.contains("waiting for approval"));

    // Raise an event from its dialog: a payload that is not JSON cannot be sent.
    click(&browser, "#action-raise").await;
    type_into(&browser, "#event-name", "approve").await;
    type_into(&browser, "#event-payload", "{tru").await;
    let disabled = "return document.getElementById('dialog-confirm').disabled";
    assert_eq!(browser.execute(disabled, vec![]).await.unwrap(), json!(true), "invalid JSON is not sent");
    assert!(text_of(&browser, "#event-payload-hint").await.starts_with("Not JSON"));
    type_into(&browser, "#event-payload", "true").await;
    assert_eq!(browser.execute(disabled, vec![]).await.unwrap(), json!(false));
    click(&browser, "#dialog-confirm").await;
    wait_for_text(&browser, "#instance-status", "COMPLETED").await;
    assert_eq!(text_of(&browser, "#payload-output").await, "\"lamp: approved\"");
    assert_eq!(client.status("wait-1").await.unwrap().output.as_deref(), Some("\"lamp: approved\""));

    // Terminate another, with a reason, after confirming.
    browser.goto(&format!("{url}#/instance/doomed-1")).await.unwrap();
    wait_for_text(&browser, "#instance-status", "RUNNING").await;
    click(&browser, "#action-terminate").await;
    type_into(&browser, "#terminate-reason", "out of stock").await;
    click(&browser, "#dialog-confirm").await;
    wait_for_text(&browser, "#instance-status", "TERMINATED").await;
    let ended = client.status("doomed-1").await.unwrap();
    assert_eq!(ended.status, RuntimeStatus::Terminated);
    assert_eq!(ended.failure.map(|failure| failure.message).as_deref(), Some("out of stock"));

    // What an instance holds is shown as text, never run as markup.
    browser.goto(&format!("{url}#/instance/xss-1")).await.unwrap();
    wait_for_text(&browser, "#instance-status", "COMPLETED").await;
    assert_eq!(text_of(&browser, "#payload-input").await, serde_json::to_string(xss).unwrap());
    let ran =
        "return [window.__xss === undefined, document.querySelectorAll('main script, main img:not(#diagram)').length]";
    assert_eq!(browser.execute(ran, vec![]).await.unwrap(), json!([true, 0]));
    wait_until("the diagram to load", || async { browser.execute(loaded, vec![]).await.unwrap() == json!(true) }).await;

    // Queues and schedules pages load.
    browser.goto(&format!("{url}#/queues")).await.unwrap();
    assert!(text_of(&browser, "#queues").await.contains("Nothing is queued"));
    browser.goto(&format!("{url}#/schedules")).await.unwrap();
    assert_eq!(text_of(&browser, "#schedules").await, "No schedules.");
    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_read_only_console_offers_no_actions() {
    let Some(path) = chromedriver() else { return };
    let driver = start_driver(path).await;
    let (url, runtime, _server) = serve_console(RouterOptions::default().read_only(true)).await;
    console_approval::start(&runtime.client(), "chair".to_owned()).id("ro-1").await.unwrap();
    let browser = open_browser(&driver).await;
    browser.goto(&format!("{url}#/instance/ro-1")).await.unwrap();
    wait_for_text(&browser, "#instance-status", "RUNNING").await;
    let actions = "return document.querySelectorAll('#actions button').length";
    assert_eq!(browser.execute(actions, vec![]).await.unwrap(), json!(0));
    // Nor does the API it mounts take any.
    let response =
        reqwest::Client::new().post(format!("{url}/api/v1.0/workflows/dapr/ro-1/terminate")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    browser.close().await.unwrap();
}

/// The page names its script, style and API under the path it is mounted at, and under a
/// reverse proxy's `X-Forwarded-Prefix` in front of that; it is served with its security headers.
#[tokio::test]
async fn the_page_is_based_where_it_is_mounted() {
    let (url, _runtime, _server) = serve_console(RouterOptions::default()).await;
    let http = reqwest::Client::new();
    let page = |prefix: Option<&'static str>| {
        let request = http.get(&url);
        match prefix {
            Some(prefix) => request.header("x-forwarded-prefix", prefix),
            None => request,
        }
        .send()
    };
    let response = page(None).await.unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"data-base="/ops/""#) && html.contains(r#"src="/ops/console.js""#), "{html}");
    let proxied = page(Some("/edge/")).await.unwrap().text().await.unwrap();
    assert!(proxied.contains(r#"data-base="/edge/ops/""#) && proxied.contains(r#"href="/edge/ops/console.css""#));
    let odd = page(Some(r#"/x"onload="alert(1)"#)).await.unwrap().text().await.unwrap();
    assert!(odd.contains(r#"data-base="/ops/""#), "a prefix that is not a plain path is ignored: {odd}");
    for (asset, kind) in [("console.js", "text/javascript"), ("console.css", "text/css")] {
        let response = http.get(format!("{url}/{asset}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(kind));
    }
    assert_eq!(http.get(format!("{url}/api/v1.0/queues")).send().await.unwrap().text().await.unwrap(), "[]");
}
