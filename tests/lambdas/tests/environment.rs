//! The environment as a contract between the code and the deployment: the variables each
//! function reads (recorded while its `Config::from_vars` runs) are exactly the ones
//! `template.yaml` sets for it, and `infra/env.json` (for `sam local invoke` and the local
//! Runtime API test) sets the same ones with values the functions accept.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use shared::env::Env;

/// Set for each function but read by libraries, not by its `Config`: the Lambda runtime's log
/// subscriber reads `RUST_LOG`; the AWS SDK's config loader reads `AWS_ENDPOINT_URL` (set only
/// under sam local, see template.yaml).
const READ_BY_LIBRARIES: [&str; 2] = ["RUST_LOG", "AWS_ENDPOINT_URL"];

const FUNCTIONS: [&str; 2] = ["CsvIngestFunction", "NermProvisionerFunction"];

fn repo_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

/// The names in a template's `Environment.Variables` mapping (none if absent).
fn variable_names(node: &serde_norway::Value) -> BTreeSet<String> {
    match node.get("Environment").and_then(|e| e.get("Variables")).and_then(|v| v.as_mapping()) {
        Some(vars) => vars.keys().map(|k| k.as_str().expect("a variable name is a string").to_string()).collect(),
        None => BTreeSet::new(),
    }
}

/// What template.yaml sets for each function: the globals plus the function's own.
fn template_variables() -> BTreeMap<String, BTreeSet<String>> {
    let template: serde_norway::Value =
        serde_norway::from_str(&repo_file("template.yaml")).expect("template.yaml parses");
    let globals = variable_names(&template["Globals"]["Function"]);
    assert!(globals.contains("BUCKET_NAME"), "the globals are not where this test looks: {globals:?}");
    FUNCTIONS
        .iter()
        .map(|f| {
            let props = &template["Resources"][*f]["Properties"];
            assert!(props.is_mapping(), "template.yaml has no function {f}");
            let own = variable_names(props);
            let overlap: Vec<_> = own.intersection(&globals).collect();
            assert!(overlap.is_empty(), "{f} sets {overlap:?} again over the globals");
            (f.to_string(), globals.union(&own).cloned().collect())
        })
        .collect()
}

/// What infra/env.json sets for each function, with the values.
fn env_json() -> BTreeMap<String, BTreeMap<String, String>> {
    let v: Value = serde_json::from_str(&repo_file("infra/env.json")).expect("infra/env.json parses");
    FUNCTIONS
        .iter()
        .map(|f| {
            let vars = v[*f].as_object().unwrap_or_else(|| panic!("infra/env.json has no {f}"));
            let vars = vars.iter().map(|(k, v)| (k.clone(), v.as_str().expect("a string value").to_string())).collect();
            (f.to_string(), vars)
        })
        .collect()
}

/// Runs the function's `Config::from_vars` over `vars`, recording every name it asks for.
fn reads_of(function: &str, vars: &BTreeMap<String, String>) -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let env = Env::from_fn(|name| {
        asked.borrow_mut().insert(name.to_string());
        vars.get(name).cloned()
    });
    let result = match function {
        "CsvIngestFunction" => csv_ingest::config::Config::from_vars(&env).map(|_| ()),
        "NermProvisionerFunction" => nerm_provisioner::config::Config::from_vars(&env).map(|_| ()),
        other => panic!("unknown function {other}"),
    };
    if let Err(e) = result {
        panic!("{function} rejects infra/env.json: {e}");
    }
    drop(env);
    asked.into_inner()
}

#[test]
fn every_variable_a_function_reads_is_set_for_it_and_every_variable_set_is_read() {
    let template = template_variables();
    let local = env_json();
    for f in FUNCTIONS {
        let set = &template[f];
        let read: BTreeSet<String> =
            reads_of(f, &local[f]).into_iter().chain(READ_BY_LIBRARIES.iter().map(|s| s.to_string())).collect();
        let unset: Vec<_> = read.difference(set).collect();
        assert!(unset.is_empty(), "{f} reads {unset:?}, which template.yaml does not set");
        let unread: Vec<_> = set.difference(&read).collect();
        assert!(unread.is_empty(), "template.yaml sets {unread:?} for {f}, which it never reads");
    }
}

#[test]
fn infra_env_json_sets_exactly_the_variables_the_template_declares() {
    // sam local invoke --env-vars can set only declared variables, and one the file leaves out
    // would get the template's unresolved value.
    let template = template_variables();
    for (f, vars) in env_json() {
        let names: BTreeSet<String> = vars.keys().cloned().collect();
        assert_eq!(names, template[&f], "infra/env.json vs template.yaml for {f}");
    }
}

#[test]
fn the_local_values_point_both_functions_at_the_same_stack_and_pace() {
    let local = env_json();
    let (ingest, provisioner) = (&local["CsvIngestFunction"], &local["NermProvisionerFunction"]);
    for name in ["BUCKET_NAME", "QUEUE_URL", "SUMMARY_TOPIC_ARN", "NERM_SECRET_ID", "NERM_REQUESTS_PER_10S"] {
        assert_eq!(ingest[name], provisioner[name], "{name} differs between the two functions");
    }
    let env = |vars: &BTreeMap<String, String>| {
        let vars = vars.clone();
        Env::from_fn(move |n| vars.get(n).cloned())
    };
    // The provisioners together pace to the whole limit; the ingest to a share beside them.
    let limit: u32 = provisioner["NERM_REQUESTS_PER_10S"].parse().expect("a number");
    let workers: u32 = provisioner["PROVISIONER_MAX_CONCURRENCY"].parse().expect("a number");
    let share = nerm_provisioner::config::Config::from_vars(&env(provisioner)).expect("a config").requests_per_10s;
    assert_eq!(share * workers, limit, "the provisioners' shares add up to the limit");
    let ingest = csv_ingest::config::Config::from_vars(&env(ingest)).expect("a config").requests_per_10s;
    assert!(ingest > 0 && ingest < limit, "the ingest's share: {ingest}");
}
