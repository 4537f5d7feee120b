//! `nerm-provisioner` Lambda: SQS batches of employee plans → NERM, with partial batch
//! failures (wiring only).

use lambda_runtime::{LambdaEvent, service_fn};

use nerm_provisioner::{config, handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let cfg = config::Config::from_env().map_err(|e| {
        tracing::error!(error = %e, "configuration error");
        // As text: the process prints it on exit, and the message is what the operator needs.
        e.to_string()
    })?;
    let deps = handler::Deps::from_config(cfg).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
        handler::handle(&deps, event.payload)
    }))
    .await
}
