//! `csv-ingest` Lambda: S3 ObjectCreated → validate, plan, fan out over SQS (wiring only).

use lambda_runtime::{LambdaEvent, service_fn};

use csv_ingest::{config, handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let cfg = config::Config::from_env().map_err(|e| {
        tracing::error!(error = %e, "configuration error");
        // As text: the process prints it on exit, and the message is what the operator needs.
        e.to_string()
    })?;
    let deps = handler::Deps::from_config(cfg).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<aws_lambda_events::event::s3::S3Event>| {
        // Lambda's retries of an invocation keep its request id; the ingest relies on that.
        async move { handler::handle_invocation(deps, event.payload, &event.context.request_id).await }
    }))
    .await
}
