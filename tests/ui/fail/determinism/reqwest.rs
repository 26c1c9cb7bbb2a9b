use workflow::prelude::*;

/// A stand-in for the `reqwest` crate, which this test does not depend on.
mod reqwest {
    pub async fn get(_url: &str) -> Result<String, ()> {
        Ok(String::new())
    }
}

#[workflow]
async fn fetch_page(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let page = reqwest::get("https://example.com").await;
    let _ = page;
    let _ = ctx;
    Ok(())
}

fn main() {}
